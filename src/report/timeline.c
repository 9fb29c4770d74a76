/* The heap over time, its data: a time series of the estimated in-use
 * bytes, in total and for the stacks that hold the most, kept by the
 * background thread (agent.c); shown by report/timeline_render.c as a
 * stacked area chart (HTML with inline SVG) or as JSON, on the endpoint at
 * /debug/pprof/timeline and at exit with HEAPPROF_TIMELINE=1. On whenever
 * the endpoint or HEAPPROF_TIMELINE is.
 *
 * A tick (every HEAPPROF_TIMELINE_MS, 100 ms) sums the in-use bytes of each
 * bucket from the live set (hp_table_inuse: one pass over its slots, no
 * snapshot: no bucket array, no pass over the nodes or the count stripes),
 * adds them up per stack and finds the TOP stacks that hold the most. A
 * stack that enters the top, with at least MIN_SHARE of the total, gets a
 * series of its own and keeps it, up to MAX_SERIES; its bytes before that, and those of every stack
 * without a series, are in "other". So a point's series and its other always add up to its total.
 *
 * Memory is bounded however long the program runs: at most MAX_POINTS
 * points. A point is the mean of per_point ticks; when the buffer fills,
 * adjacent points are merged pairwise into their mean (times and values)
 * and per_point doubles, so points stay evenly spaced and each is the mean
 * over its span. The mean keeps the area under every curve (byte-seconds)
 * and keeps the series adding up to the total; what it loses is a peak
 * shorter than a point's span (the peak profile, HEAPPROF_PEAK, keeps the
 * peak).
 *
 * Cost: each tick's CPU time is measured, and the next tick comes no sooner
 * than COST_FACTOR times that after it, so the timeline takes at most about
 * 1% of one CPU however many samples are live (exact mode on a big heap),
 * at the price of coarser points. The mean and largest tick cost are in the
 * JSON.
 */
#define _GNU_SOURCE
#include "timeline.h"
#include "iface.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    TOP = HP_TIMELINE_TOP,
    MAX_SERIES = HP_TIMELINE_SERIES,
    MAX_POINTS = HP_TIMELINE_POINTS,
    COST_FACTOR = 100
};
#define MIN_SHARE 0.01

struct stack_bytes {
    uint32_t stack;
    double bytes;
};

/* All of it under lock; the background thread ticks, the exit dump takes
 * a last point, and both render. Lock order: this lock, then the live set's
 * (hp_table_inuse), then the own-memory lock. */
static struct {
    pthread_mutex_t lock;
    bool on;
    int64_t mono0_ms;
    uint32_t stacks[MAX_SERIES];
    int nseries;
    struct hp_timeline_point *points;
    int npoints;
    struct hp_timeline_point pend; /* sums of the ticks of the point being made */
    int pend_n;
    int per_point;
    int merges;
    /* Scratch for a tick, grown with the number of buckets. */
    double *bytes;
    struct stack_bytes *pairs;
    uint32_t cap;
    /* Cost. */
    uint64_t ticks;
    double cpu_ns_sum, cpu_ns_max;
    int64_t next_ms;
    /* Live leak checks' lost bytes (hp_timeline_lost). */
    struct hp_timeline_lost *lost;
    int nlost;
} tl = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool hp_timeline_on(void)
{
    return __atomic_load_n(&tl.on, __ATOMIC_ACQUIRE);
}

void hp_timeline_start(void)
{
    hp_mutex_lock(&tl.lock);
    if (!tl.points) {
        tl.points = hp_alloc(MAX_POINTS * sizeof *tl.points);
        if (!tl.points)
            hp_log("heapprof: no memory for the timeline; it is off");
    }
    if (tl.points) {
        tl.mono0_ms = hp_mono_ms();
        tl.per_point = 1;
        tl.next_ms = tl.mono0_ms;
        __atomic_store_n(&tl.on, true, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&tl.lock);
}

void hp_timeline_child(void)
{
    /* The parent's thread may have held the lock at the fork; the child
     * keeps no timeline of its own (it has no background thread). */
    pthread_mutex_init(&tl.lock, NULL);
    tl.on = false;
}

static int by_stack(const void *x, const void *y)
{
    const struct stack_bytes *a = x, *b = y;
    return a->stack < b->stack ? -1 : a->stack > b->stack;
}

static void point_scale(struct hp_timeline_point *p, double f, int nseries)
{
    p->t_ms *= f;
    p->total *= f;
    p->other *= f;
    for (int s = 0; s < nseries; s++)
        p->v[s] *= f;
}

/* Under the lock: the point being made goes to the buffer; a full buffer
 * is merged pairwise. */
static void push(void)
{
    if (!tl.pend_n)
        return;
    struct hp_timeline_point *p = &tl.points[tl.npoints++];
    *p = tl.pend;
    point_scale(p, 1.0 / tl.pend_n, tl.nseries);
    memset(&tl.pend, 0, sizeof tl.pend);
    tl.pend_n = 0;
    if (tl.npoints < MAX_POINTS)
        return;
    for (int i = 0; i < MAX_POINTS / 2; i++) {
        struct hp_timeline_point *a = &tl.points[2 * i], *b = &tl.points[2 * i + 1];
        struct hp_timeline_point m;
        m.t_ms = (a->t_ms + b->t_ms) / 2;
        m.total = (a->total + b->total) / 2;
        m.other = (a->other + b->other) / 2;
        for (int s = 0; s < tl.nseries; s++)
            m.v[s] = (a->v[s] + b->v[s]) / 2;
        tl.points[i] = m;
    }
    tl.npoints = MAX_POINTS / 2;
    tl.per_point *= 2;
    tl.merges++;
}

/* Under the lock: one tick's sums added to the point being made. */
static void sample(int64_t now_ms)
{
    uint32_t n = hp_table_inuse(tl.bytes, tl.cap);
    if (n > tl.cap) {
        uint32_t cap = n + n / 2 + 1024;
        hp_free(tl.bytes, (size_t)tl.cap * sizeof *tl.bytes);
        hp_free(tl.pairs, (size_t)tl.cap * sizeof *tl.pairs);
        tl.bytes = hp_alloc((size_t)cap * sizeof *tl.bytes);
        tl.pairs = hp_alloc((size_t)cap * sizeof *tl.pairs);
        if (!tl.bytes || !tl.pairs) {
            hp_free(tl.bytes, (size_t)cap * sizeof *tl.bytes);
            hp_free(tl.pairs, (size_t)cap * sizeof *tl.pairs);
            tl.bytes = NULL;
            tl.pairs = NULL;
            tl.cap = 0;
            return; /* tried again at the next tick */
        }
        tl.cap = cap;
        n = hp_table_inuse(tl.bytes, tl.cap);
        if (n > tl.cap)
            return;
    }
    size_t k = 0;
    double total = 0;
    for (uint32_t b = 1; b < n; b++)
        if (tl.bytes[b] > 0) {
            tl.pairs[k].stack = hp_bucket_stack(b);
            tl.pairs[k].bytes = tl.bytes[b];
            total += tl.bytes[b];
            k++;
        }
    qsort(tl.pairs, k, sizeof *tl.pairs, by_stack);
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        if (m && tl.pairs[m - 1].stack == tl.pairs[i].stack)
            tl.pairs[m - 1].bytes += tl.pairs[i].bytes;
        else
            tl.pairs[m++] = tl.pairs[i];
    }
    /* The TOP stacks by bytes, largest first. */
    size_t top[TOP];
    int ntop = 0;
    for (size_t i = 0; i < m; i++) {
        int j = ntop < TOP ? ntop++ : TOP;
        if (j == TOP && tl.pairs[i].bytes <= tl.pairs[top[TOP - 1]].bytes)
            continue;
        if (j == TOP)
            j = TOP - 1;
        while (j > 0 && tl.pairs[top[j - 1]].bytes < tl.pairs[i].bytes) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
    /* A stack of the top that holds less than MIN_SHARE of the total (when
     * there are few stacks, all are in the top) gets no series yet: the
     * series are kept for the stacks that matter. */
    for (int i = 0; i < ntop && tl.nseries < MAX_SERIES; i++) {
        if (tl.pairs[top[i]].bytes < total * MIN_SHARE)
            break;
        bool have = false;
        for (int s = 0; s < tl.nseries && !have; s++)
            have = tl.stacks[s] == tl.pairs[top[i]].stack;
        if (!have)
            tl.stacks[tl.nseries++] = tl.pairs[top[i]].stack;
    }
    double rest = total;
    for (int s = 0; s < tl.nseries; s++) {
        struct stack_bytes key = {tl.stacks[s], 0};
        const struct stack_bytes *f = bsearch(&key, tl.pairs, m, sizeof *tl.pairs, by_stack);
        if (f) {
            tl.pend.v[s] += f->bytes;
            rest -= f->bytes;
        }
    }
    tl.pend.t_ms += (double)(now_ms - tl.mono0_ms);
    tl.pend.total += total;
    tl.pend.other += rest > 0 ? rest : 0;
    if (++tl.pend_n >= tl.per_point)
        push();
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t hp_timeline_tick(void)
{
    if (!hp_timeline_on())
        return INT64_MAX;
    hp_mutex_lock(&tl.lock);
    int64_t now = hp_mono_ms();
    if (tl.on && now >= tl.next_ms) {
        int64_t c0 = cpu_ns();
        sample(now);
        double cost = (double)(cpu_ns() - c0);
        tl.ticks++;
        tl.cpu_ns_sum += cost;
        if (cost > tl.cpu_ns_max)
            tl.cpu_ns_max = cost;
        int64_t wait = (int64_t)(cost * COST_FACTOR / 1e6);
        tl.next_ms = now + (wait > hp_cfg.timeline_ms ? wait : hp_cfg.timeline_ms);
    }
    int64_t next = tl.on ? tl.next_ms : INT64_MAX;
    pthread_mutex_unlock(&tl.lock);
    return next;
}

int hp_timeline_copy(struct hp_timeline_series *v, struct hp_arena *a)
{
    hp_mutex_lock(&tl.lock);
    if (!tl.on && !tl.points) {
        pthread_mutex_unlock(&tl.lock);
        return -ENOENT;
    }
    v->points = hp_arena_alloc(a, (size_t)(tl.npoints + 1) * sizeof *v->points);
    if (!v->points) {
        pthread_mutex_unlock(&tl.lock);
        return -ENOMEM;
    }
    memcpy(v->points, tl.points, (size_t)tl.npoints * sizeof *v->points);
    v->npoints = tl.npoints;
    if (tl.pend_n) {
        v->points[v->npoints] = tl.pend;
        point_scale(&v->points[v->npoints], 1.0 / tl.pend_n, tl.nseries);
        v->npoints++;
    }
    v->nseries = tl.nseries;
    memcpy(v->stacks, tl.stacks, sizeof v->stacks);
    v->per_point = tl.per_point;
    v->merges = tl.merges;
    v->ticks = tl.ticks;
    v->cpu_ns_mean = tl.ticks ? tl.cpu_ns_sum / (double)tl.ticks : 0;
    v->cpu_ns_max = tl.cpu_ns_max;
    v->nlost = 0;
    v->lost = tl.nlost ? hp_arena_alloc(a, (size_t)tl.nlost * sizeof *v->lost) : NULL;
    if (v->lost) {
        memcpy(v->lost, tl.lost, (size_t)tl.nlost * sizeof *v->lost);
        v->nlost = tl.nlost;
    }
    pthread_mutex_unlock(&tl.lock);
    return 0;
}

void hp_timeline_lost(int64_t time_ns, double definite, double indirect)
{
    if (!hp_timeline_on())
        return;
    /* The check's moment on the timeline's clock. */
    double ago_ms = (double)(hp_now_ns() - time_ns) / 1e6;
    hp_mutex_lock(&tl.lock);
    if (!tl.lost)
        tl.lost = hp_alloc(MAX_POINTS * sizeof *tl.lost);
    if (tl.lost) {
        if (tl.nlost == MAX_POINTS) {
            /* Every other point dropped (the first and the last kept). */
            int k = 0;
            for (int i = 0; i < MAX_POINTS; i += 2)
                tl.lost[k++] = tl.lost[i];
            tl.lost[k - 1] = tl.lost[MAX_POINTS - 1];
            tl.nlost = k;
        }
        struct hp_timeline_lost *p = &tl.lost[tl.nlost++];
        p->t_ms = (double)(hp_mono_ms() - tl.mono0_ms) - (ago_ms > 0 ? ago_ms : 0);
        p->definite = definite;
        p->indirect = indirect;
    }
    pthread_mutex_unlock(&tl.lock);
}

void hp_timeline_last_point(void)
{
    hp_mutex_lock(&tl.lock);
    if (tl.on)
        sample(hp_mono_ms());
    pthread_mutex_unlock(&tl.lock);
}
