/* Leak checks while the program runs: /debug/pprof/leaks (handlers.c),
 * heapprof_leak_check() (the API), HEAPPROF_SIGNAL snapshots with
 * HEAPPROF_SIGNAL_LEAKS, and periodic checks with HEAPPROF_LEAK_INTERVAL
 * (agent.c), whose lost bytes the timeline shows as a series.
 *
 * Each is the exit's check (report/reach.c) in a clone of the process,
 * started with hp_reach_start(live): the program's threads are held only
 * while the clone is made, and the clone, at the lowest priority on one CPU,
 * takes the snapshot with verdicts as the process stood at that moment.
 * One check at a time (hp_leakcheck_claim): a check's clone is a copy of
 * the whole address space, and two would double what it may cost.
 *
 * A delta (?seconds=N) is two checks: what is lost at the end and was not
 * at the start, per bucket (stack and labels) and verdict. An object once
 * lost stays lost (nothing can point to it again), so the growth of each
 * bucket's lost count is the objects that became lost in the window.
 */
#define _GNU_SOURCE
#include "leakcheck.h"
#include "iface.h"
#include "leaks.h"
#include "profile.h"
#include "reach.h"
#include "symbols.h"
#include "timeline.h"
#include "text.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int claimed;

bool hp_leakcheck_claim(void)
{
    return !__atomic_exchange_n(&claimed, 1, __ATOMIC_ACQ_REL);
}

void hp_leakcheck_release(void)
{
    __atomic_store_n(&claimed, 0, __ATOMIC_RELEASE);
}

static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;

void hp_leakcheck_child(void)
{
    claimed = 0; /* the parent's check is not this process's */
    pthread_mutex_init(&last_mu, NULL);
    hp_reach_child();
}

/* ---- the last check, for the index page and the timeline ---- */

static struct hp_leak_totals last;
static struct hp_reach_stats last_stats;
static int64_t last_time_ns;
static uint64_t nchecks;

void hp_leak_totals(const struct hp_snapshot *s, struct hp_leak_totals *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < s->nbuckets; i++) {
        const struct hp_snap_bucket *b = &s->buckets[i];
        int v = b->verdict == HP_V_DEFINITE ? 0 : b->verdict == HP_V_INDIRECT ? 1 : 2;
        t->objects[v] += (uint64_t)(b->est[HP_INUSE_OBJECTS] > 0 ? b->est[HP_INUSE_OBJECTS] : 0);
        t->bytes[v] += (uint64_t)(b->est[HP_INUSE_SPACE] > 0 ? b->est[HP_INUSE_SPACE] : 0);
    }
}

void hp_leakcheck_note(const struct hp_snapshot *s, const struct hp_reach_stats *st)
{
    struct hp_leak_totals t;
    hp_leak_totals(s, &t);
    hp_mutex_lock(&last_mu);
    last = t;
    last_stats = *st;
    last_time_ns = s->time_ns;
    nchecks++;
    pthread_mutex_unlock(&last_mu);
    hp_timeline_lost(s->time_ns, (double)t.bytes[0], (double)t.bytes[1]);
}

bool hp_leakcheck_last(struct hp_leak_totals *t, struct hp_reach_stats *st, int64_t *time_ns,
                       uint64_t *count)
{
    hp_mutex_lock(&last_mu);
    bool any = nchecks > 0;
    *t = last;
    *st = last_stats;
    *time_ns = last_time_ns;
    *count = nchecks;
    pthread_mutex_unlock(&last_mu);
    return any;
}

/* ---- one check, start to end ---- */

void hp_leakcheck_why(char *out, size_t len, int err, const struct hp_reach *rc)
{
    if (err == -EBUSY)
        snprintf(out, len, "a leak check is already running");
    else if (rc && rc->why[0])
        snprintf(out, len, "%s", rc->why);
    else if (err == -ETIMEDOUT)
        snprintf(out, len, "it took longer than its time limit");
    else
        snprintf(out, len, "%s", strerror(-err));
}

int hp_leakcheck_run(struct hp_snapshot *out, struct hp_reach_stats *st, char *why, size_t len)
{
    memset(out, 0, sizeof *out);
    memset(st, 0, sizeof *st);
    if (!hp_leakcheck_claim()) {
        hp_leakcheck_why(why, len, -EBUSY, NULL);
        return -EBUSY;
    }
    bool was = hp_busy_begin();
    struct hp_reach rc;
    int r = hp_reach_start(&rc, true);
    if (r == 0)
        r = hp_reach_finish(&rc, st, out);
    if (r)
        hp_leakcheck_why(why, len, r, &rc);
    else
        hp_leakcheck_note(out, st);
    hp_busy_end(was);
    hp_leakcheck_release();
    return r;
}

/* ---- a window's change ---- */

static inline uint64_t entry_key(const struct hp_snap_bucket *b)
{
    return (uint64_t)b->bucket << 2 | b->verdict;
}

static int by_key(const void *x, const void *y)
{
    uint64_t a = entry_key(x), b = entry_key(y);
    return a < b ? -1 : a > b;
}

int hp_leak_delta(struct hp_snapshot *end, const struct hp_snapshot *start)
{
    /* The start's lost entries, sorted by key, to look each end entry up. */
    size_t n = 0;
    for (size_t i = 0; i < start->nbuckets; i++)
        n += start->buckets[i].verdict == HP_V_DEFINITE ||
             start->buckets[i].verdict == HP_V_INDIRECT;
    struct hp_snap_bucket *sorted = hp_arena_alloc(&end->arena, (n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return -ENOMEM;
    n = 0;
    for (size_t i = 0; i < start->nbuckets; i++)
        if (start->buckets[i].verdict == HP_V_DEFINITE ||
            start->buckets[i].verdict == HP_V_INDIRECT)
            sorted[n++] = start->buckets[i];
    qsort(sorted, n, sizeof *sorted, by_key);
    size_t out = 0;
    for (size_t i = 0; i < end->nbuckets; i++) {
        struct hp_snap_bucket b = end->buckets[i];
        if (b.verdict != HP_V_DEFINITE && b.verdict != HP_V_INDIRECT)
            continue; /* reachable: not the question */
        const struct hp_snap_bucket *s = bsearch(&b, sorted, n, sizeof *sorted, by_key);
        if (s) {
            b.live -= s->live;
            b.var_inuse -= s->var_inuse;
            for (int k = HP_INUSE_OBJECTS; k <= HP_INUSE_SPACE; k++) {
                b.w[k] -= s->w[k];
                b.est[k] -= s->est[k];
            }
        }
        if (b.live <= 0 || b.est[HP_INUSE_SPACE] <= 0)
            continue;
        if (b.var_inuse < 0)
            b.var_inuse = 0;
        /* Allocations are not the question either: the window's profile
         * holds what became lost, as in-use values. */
        b.allocs = b.live;
        b.w[HP_ALLOC_OBJECTS] = b.w[HP_INUSE_OBJECTS];
        b.w[HP_ALLOC_SPACE] = b.w[HP_INUSE_SPACE];
        b.est[HP_ALLOC_OBJECTS] = b.est[HP_INUSE_OBJECTS];
        b.est[HP_ALLOC_SPACE] = b.est[HP_INUSE_SPACE];
        end->buckets[out++] = b;
    }
    end->nbuckets = out;
    end->since_ns = start->time_ns;
    return 0;
}

/* ---- what a check answers ---- */

void hp_leakcheck_text(struct hp_text *t, struct hp_snapshot *s, const struct hp_reach_stats *st,
                       long window_s)
{
    if (window_s)
        hp_text_put(t,
                    "heapprof: live leak check, what became lost over %ld s: two checks, the "
                    "second %.1f ms long, the program held for %.2f ms\n",
                    window_s, (double)st->ns / 1e6, (double)st->pause_ns / 1e6);
    else
        hp_text_put(t,
                    "heapprof: live leak check: %llu objects checked in %.1f ms, the program held "
                    "for %.2f ms; %.1f MiB of memory of the check's own\n",
                    (unsigned long long)st->objects, (double)st->ns / 1e6,
                    (double)st->pause_ns / 1e6, (double)st->child_bytes / 1048576.0);
    struct hp_symbolizer *sym = hp_sym_open(t->a);
    hp_leaks_render(s, sym, t);
    hp_sym_close(sym);
    if (st->retried)
        hp_text_put(t, "heapprof: the process was copied twice: a thread woke during the first "
                       "copy, and every thread was held by a signal for the second\n");
}

int hp_leakcheck_encode(struct hp_snapshot *s, long window_s, uint8_t **gz, size_t *len)
{
    char comment[160];
    if (window_s) {
        snprintf(comment, sizeof comment,
                 "heapprof leak delta over %ld s: the objects that became lost in the window, "
                 "as in-use (and alloc) values, labelled leak=definite or indirect",
                 window_s);
    } else {
        snprintf(comment, sizeof comment,
                 "heapprof live leak check: in-use samples labelled leak=definite, indirect or "
                 "reachable");
    }
    s->comment = comment;
    struct hp_symbolizer *sym = hp_sym_open(&s->arena);
    int r = hp_profile_encode(s, sym, hp_start_ns(), NULL, gz, len);
    hp_sym_close(sym);
    s->comment = NULL;
    return r;
}

/* ---- heapprof_leak_check() ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int hp_leakcheck_api(const char *path, struct heapprof_leak_counts *counts)
{
    struct hp_snapshot s;
    struct hp_reach_stats st;
    char why[256] = {0}; /* zeroed: the check reads this stack (see record/api.c) */
    int r = hp_leakcheck_run(&s, &st, why, sizeof why);
    if (r && r != -EBUSY)
        hp_log("heapprof: heapprof_leak_check: the leak check could not be made: %s", why);
    if (r == 0 && counts) {
        struct hp_leak_totals t;
        hp_leak_totals(&s, &t);
        memset(counts, 0, sizeof *counts);
        counts->definite_objects = t.objects[0];
        counts->definite_bytes = t.bytes[0];
        counts->indirect_objects = t.objects[1];
        counts->indirect_bytes = t.bytes[1];
        counts->reachable_objects = t.objects[2];
        counts->reachable_bytes = t.bytes[2];
        counts->estimated = s.rate > 1;
    }
    if (r == 0 && path) {
        if (ends_with(path, ".txt")) {
            struct hp_text t = {.a = &s.arena};
            hp_leakcheck_text(&t, &s, &st, 0);
            r = t.oom ? -ENOMEM : hp_write_file_atomic(path, t.p ? t.p : "", t.len);
        } else {
            uint8_t *gz;
            size_t len;
            r = hp_leakcheck_encode(&s, 0, &gz, &len);
            if (r == 0)
                r = hp_write_file_atomic(path, gz, len);
        }
    }
    hp_snapshot_release(&s);
    return r;
}
