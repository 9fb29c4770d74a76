/* The heap over time: a time series of the estimated in-use bytes, in total
 * and for the stacks that hold the most, kept by the background thread
 * (agent.c) and shown as a stacked area chart (HTML with inline SVG, made
 * here) or as JSON: on the endpoint at /debug/pprof/timeline, and at exit
 * with HEAPPROF_TIMELINE=1 (NAME.timeline.html and NAME.timeline.json
 * beside the profile). On whenever the endpoint or HEAPPROF_TIMELINE is.
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
#include "report.h"
#include "heapprof.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { TOP = 10, MAX_SERIES = 32, MAX_POINTS = 512, COST_FACTOR = 100 };
#define MIN_SHARE 0.01

struct point {
    double t_ms; /* since the timeline started */
    double total, other;
    double v[MAX_SERIES];
};

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
    struct point *points;
    int npoints;
    struct point pend; /* sums of the ticks of the point being made */
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
} tl = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool hp_timeline_on(void)
{
    return __atomic_load_n(&tl.on, __ATOMIC_ACQUIRE);
}

void hp_timeline_start(void)
{
    pthread_mutex_lock(&tl.lock);
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

static void point_scale(struct point *p, double f, int nseries)
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
    struct point *p = &tl.points[tl.npoints++];
    *p = tl.pend;
    point_scale(p, 1.0 / tl.pend_n, tl.nseries);
    memset(&tl.pend, 0, sizeof tl.pend);
    tl.pend_n = 0;
    if (tl.npoints < MAX_POINTS)
        return;
    for (int i = 0; i < MAX_POINTS / 2; i++) {
        struct point *a = &tl.points[2 * i], *b = &tl.points[2 * i + 1];
        struct point m;
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
    pthread_mutex_lock(&tl.lock);
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

/* ---- rendering ---- */

/* A copy of the series, taken under the lock, with the point being made
 * as the last point. */
struct view {
    int npoints, nseries, per_point, merges;
    uint64_t ticks;
    double cpu_ns_mean, cpu_ns_max;
    struct point *points;
    uint32_t stacks[MAX_SERIES];
    /* Filled in after the copy. */
    const char *name[MAX_SERIES];     /* the label: the function, told apart */
    const char *function[MAX_SERIES]; /* the function that called the allocator */
    const char *file[MAX_SERIES];
    int line[MAX_SERIES];
    const char *frames[MAX_SERIES]; /* the stack, caller by caller */
    double max[MAX_SERIES], mean[MAX_SERIES];
};

static int view_take(struct view *v, struct hp_arena *a)
{
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&tl.lock);
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
    pthread_mutex_unlock(&tl.lock);
    return 0;
}

/* The allocator's side of a stack, skipped to find the function that
 * called it: heapprof (cut at capture already), the C and C++ runtimes'
 * allocating functions (strdup, operator new, fopen), the loader; and the
 * C++ library's templates compiled into the program (cxx_library). */
static bool runtime_module(const char *module)
{
    static const char *const prefixes[] = {"libc.so",  "libc-",    "libstdc++", "libheapprof",
                                           "ld-linux", "libgcc_s", "libm.so"};
    if (!module)
        return false;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(module, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/* C++ standard library code instantiated in the program (std::vector's
 * growth, std::string's constructor, the allocator's allocate): its
 * caller is the one to name. Demangled template names may start with their
 * return type ("void std::vector<long>::_M_realloc_insert<long>"), so the
 * namespace is looked for up to the first '<' or '('. */
static bool cxx_library(const char *fn)
{
    if (!fn)
        return false;
    static const char *const spaces[] = {"std::", "__gnu_cxx::"};
    size_t head = strcspn(fn, "<(");
    for (size_t k = 0; k < sizeof spaces / sizeof *spaces; k++) {
        size_t n = strlen(spaces[k]);
        for (size_t i = 0; i + n <= head; i++)
            if ((i == 0 || fn[i - 1] == ' ') && !strncmp(fn + i, spaces[k], n))
                return true;
    }
    return false;
}

/* One frame of a series' stack column, its inlined functions from line
 * `from` on; with the call's offset in its function (func+0x1a) when
 * `offset`, as the leak summary tells identical-looking stacks apart. */
static void put_frame(struct hp_text *t, struct hp_symbolizer *sym, const struct hp_frame *f,
                      int from, bool offset)
{
    struct hp_symbolized fr;
    hp_sym_lookup(sym, f->ip, f->epoch, &fr);
    char off[32] = "";
    uint64_t o;
    if (offset && sym && hp_sym_offset(sym, f->ip, f->epoch, &o))
        snprintf(off, sizeof off, "+%#llx", (unsigned long long)o);
    for (int l = from; l < fr.nlines; l++)
        hp_text_put(t, "%s%s%s", t->len ? " < " : "", fr.lines[l].function,
                    l == fr.nlines - 1 ? off : "");
    if (!fr.nlines)
        hp_text_put(t, "%s%#lx", t->len ? " < " : "", (unsigned long)f->ip - 1);
}

/* A series' stack as the legend shows it: `shown` frames from its named
 * one (`leaf`, from its line `leaf_line`) outwards. */
struct shown_stack {
    struct hp_frame fs[HP_MAX_FRAMES];
    int depth, leaf, leaf_line, shown;
};

static const char *stack_text(struct hp_arena *a, struct hp_symbolizer *sym,
                              const struct shown_stack *st, uint64_t mask, int beyond)
{
    struct hp_text t = {.a = a};
    for (int d = st->leaf; d >= 0 && d < st->depth && d - st->leaf < st->shown; d++)
        put_frame(&t, sym, &st->fs[d], d == st->leaf ? st->leaf_line : 0,
                  d < 64 && ((mask >> d) & 1));
    if (beyond >= 0 && beyond < st->depth) {
        hp_text_put(&t, " < ...");
        put_frame(&t, sym, &st->fs[beyond], 0, true);
    }
    return t.p ? t.p : "";
}

/* Two stacks can read alike in the legend: calls from one line, or frames
 * that differ only past the ones shown. As in the leak summary, each group
 * that reads alike gets the call's offset on every shown frame whose
 * address is not the same in all of the group, and the first differing
 * frame past the shown ones after " < ..."; a stack still alike (the same
 * addresses, in a library loaded again elsewhere) gets " #n", its rank in
 * the group. */
static void frames_apart(struct view *v, struct hp_arena *a, struct hp_symbolizer *sym,
                         const struct shown_stack *st)
{
    bool done[MAX_SERIES] = {false};
    for (int s = 0; s < v->nseries; s++) {
        if (done[s])
            continue;
        int group[MAX_SERIES], n = 0;
        for (int o = s; o < v->nseries; o++)
            if (!done[o] && !strcmp(v->frames[o], v->frames[s]))
                group[n++] = o;
        for (int k = 0; k < n; k++)
            done[group[k]] = true;
        if (n < 2)
            continue;
        uint64_t mask = 0;
        int first_diff = INT32_MAX;
        for (int k = 1; k < n; k++) {
            const struct shown_stack *x = &st[group[0]], *y = &st[group[k]];
            int most = x->depth > y->depth ? x->depth : y->depth;
            for (int d = 0; d < most; d++)
                if (d >= x->depth || d >= y->depth || x->fs[d].ip != y->fs[d].ip) {
                    if (d < 64)
                        mask |= (uint64_t)1 << d;
                    if (d < first_diff)
                        first_diff = d;
                }
        }
        for (int k = 0; k < n; k++) {
            const struct shown_stack *x = &st[group[k]];
            int beyond =
                first_diff != INT32_MAX && first_diff - x->leaf >= x->shown ? first_diff : -1;
            v->frames[group[k]] = stack_text(a, sym, x, mask, beyond);
        }
        for (int k = 1; k < n; k++) {
            bool alike = false;
            for (int j = 0; j < n && !alike; j++)
                alike = j != k && !strcmp(v->frames[group[j]], v->frames[group[k]]);
            if (!alike)
                continue;
            struct hp_text t = {.a = a};
            hp_text_put(&t, "%s #%d", v->frames[group[k]], k + 1);
            if (t.p)
                v->frames[group[k]] = t.p;
        }
    }
}

/* Names each series: its stack's first frame outside the runtimes, with
 * file:line, or the offset in the function, where two would read alike. */
static void view_name(struct view *v, struct hp_arena *a)
{
    struct hp_symbolizer *sym = hp_sym_open(a);
    struct hp_mapping *maps = NULL;
    int nmaps = sym ? hp_sym_mappings(sym, &maps) : 0;
    uintptr_t pcs[MAX_SERIES];
    uint32_t epochs[MAX_SERIES];
    struct shown_stack *st = hp_arena_alloc(a, MAX_SERIES * sizeof *st);
    if (!st) {
        hp_sym_close(sym);
        return;
    }
    for (int s = 0; s < v->nseries; s++) {
        struct hp_frame *fs = st[s].fs;
        int depth = hp_stack_frames(v->stacks[s], fs, HP_MAX_FRAMES);
        /* The first (frame, line) outside the runtimes, innermost first;
         * the leaf itself when every frame is theirs. */
        int leaf = -1, leaf_line = 0;
        struct hp_symbolized fr, first = {0};
        for (int d = 0; d < depth && leaf < 0; d++) {
            hp_sym_lookup(sym, fs[d].ip, fs[d].epoch, &fr);
            const char *module =
                fr.mapping >= 0 && fr.mapping < nmaps ? hp_basename(maps[fr.mapping].file) : NULL;
            int from = 0;
            if (leaf < 0 && !runtime_module(module)) {
                while (from < fr.nlines && cxx_library(fr.lines[from].function))
                    from++;
                if (from < fr.nlines || !fr.nlines) {
                    leaf = d;
                    leaf_line = from;
                    first = fr;
                }
            }
        }
        st[s].shown = 8;
        if (leaf < 0 && depth > 0) {
            leaf = 0;
            st[s].shown = 1;
            hp_sym_lookup(sym, fs[0].ip, fs[0].epoch, &first);
        }
        st[s].depth = depth;
        st[s].leaf = leaf;
        st[s].leaf_line = leaf_line;
        pcs[s] = leaf >= 0 ? fs[leaf].ip : 0;
        epochs[s] = leaf >= 0 ? fs[leaf].epoch : 0;
        /* No name: the address, and the file it is in. */
        char addr[300];
        snprintf(addr, sizeof addr, "%#lx in %s", (unsigned long)(pcs[s] ? pcs[s] - 1 : 0),
                 first.mapping >= 0 && first.mapping < nmaps ? hp_basename(maps[first.mapping].file)
                                                             : "?");
        const struct hp_frame_line *ln = first.nlines ? &first.lines[leaf_line] : NULL;
        v->function[s] = ln ? ln->function : hp_arena_strdup(a, addr);
        v->file[s] = ln ? ln->file : NULL;
        v->line[s] = ln ? ln->line : 0;
        v->frames[s] = stack_text(a, sym, &st[s], 0, -1);
        v->name[s] = v->function[s];
    }
    frames_apart(v, a, sym, st);
    /* Series that read alike are told apart, each by the first of these
     * that no other series shares: the function; with its file:line (or,
     * without lines, the call's offset in the function, as the leak
     * summary does); with both; with its caller too; with the stack's
     * number. */
    enum { LEVELS = 4 };
    const char **labels[LEVELS];
    for (int k = 0; k < LEVELS; k++)
        labels[k] = hp_arena_alloc(a, MAX_SERIES * sizeof *labels[k]);
    if (!labels[0] || !labels[1] || !labels[2] || !labels[3]) {
        hp_sym_close(sym);
        return; /* the plain function names stay */
    }
    for (int s = 0; s < v->nseries; s++) {
        char label[1024], offset[32] = "", where[600] = "";
        uint64_t off;
        if (sym && pcs[s] && hp_sym_offset(sym, pcs[s], epochs[s], &off))
            snprintf(offset, sizeof offset, "+%#llx", (unsigned long long)off);
        if (v->file[s] && v->line[s] > 0)
            snprintf(where, sizeof where, " (%s:%d)", hp_basename(v->file[s]), v->line[s]);
        labels[0][s] = v->function[s];
        snprintf(label, sizeof label, "%s%s", v->function[s], where[0] ? where : offset);
        labels[1][s] = hp_arena_strdup(a, label);
        snprintf(label, sizeof label, "%s%s%s", v->function[s], offset, where);
        labels[2][s] = hp_arena_strdup(a, label);
        const char *caller = strstr(v->frames[s], " < ");
        const char *next = caller ? strstr(caller + 3, " < ") : NULL;
        size_t clen = !caller ? 0 : next ? (size_t)(next - caller - 3) : strlen(caller + 3);
        int n = (int)strlen(label);
        if (caller && (size_t)n < sizeof label)
            snprintf(label + n, sizeof label - (size_t)n, " from %.*s", (int)clen, caller + 3);
        labels[3][s] = hp_arena_strdup(a, label);
    }
    for (int s = 0; s < v->nseries; s++) {
        int k;
        for (k = 0; k < LEVELS; k++) {
            bool shared = !labels[k][s];
            for (int o = 0; o < v->nseries && !shared; o++)
                shared = o != s && labels[k][o] && !strcmp(labels[k][o], labels[k][s]);
            if (!shared)
                break;
        }
        if (k < LEVELS) {
            v->name[s] = labels[k][s];
            continue;
        }
        char label[1100];
        snprintf(label, sizeof label, "%s [stack %u]", labels[3][s] ? labels[3][s] : v->function[s],
                 v->stacks[s]);
        v->name[s] = hp_arena_strdup(a, label);
        if (!v->name[s])
            v->name[s] = v->function[s];
    }
    hp_sym_close(sym);
    for (int s = 0; s < v->nseries; s++) {
        double sum = 0;
        for (int i = 0; i < v->npoints; i++) {
            sum += v->points[i].v[s];
            if (v->points[i].v[s] > v->max[s])
                v->max[s] = v->points[i].v[s];
        }
        v->mean[s] = v->npoints ? sum / v->npoints : 0;
    }
}

static void json_string(struct hp_text *b, const char *s)
{
    hp_text_put(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            hp_text_put(b, "\\%c", c);
        else if (c < 0x20)
            hp_text_put(b, "\\u%04x", c);
        else
            hp_text_put(b, "%c", c);
    }
    hp_text_put(b, "\"");
}

static void render_json(struct hp_text *b, const struct view *v)
{
    hp_text_put(b, "{\"heapprof\":\"%s\",\"pid\":%ld,\"start_unix_ns\":%lld,", HEAPPROF_VERSION,
                (long)getpid(), (long long)hp_start_ns());
    hp_text_put(b,
                "\"tick_ms\":%ld,\"ticks_per_point\":%d,\"merges\":%d,\"max_points\":%d,"
                "\"ticks\":%llu,\"tick_cpu_ns_mean\":%.0f,\"tick_cpu_ns_max\":%.0f,"
                "\"rate\":%ld,\"points\":%d,\n",
                hp_cfg.timeline_ms, v->per_point, v->merges, MAX_POINTS,
                (unsigned long long)v->ticks, v->cpu_ns_mean, v->cpu_ns_max, hp_cfg.rate,
                v->npoints);
    hp_text_put(b, "\"times_s\":[");
    for (int i = 0; i < v->npoints; i++)
        hp_text_put(b, "%s%.3f", i ? "," : "", v->points[i].t_ms / 1000);
    hp_text_put(b, "],\n\"total\":[");
    for (int i = 0; i < v->npoints; i++)
        hp_text_put(b, "%s%.0f", i ? "," : "", v->points[i].total);
    hp_text_put(b, "],\n\"other\":[");
    for (int i = 0; i < v->npoints; i++)
        hp_text_put(b, "%s%.0f", i ? "," : "", v->points[i].other);
    hp_text_put(b, "],\n\"series\":[");
    for (int s = 0; s < v->nseries; s++) {
        hp_text_put(b, "%s\n{\"stack\":%u,\"name\":", s ? "," : "", v->stacks[s]);
        json_string(b, v->name[s]);
        hp_text_put(b, ",\"function\":");
        json_string(b, v->function[s]);
        if (v->file[s]) {
            hp_text_put(b, ",\"file\":");
            json_string(b, v->file[s]);
            hp_text_put(b, ",\"line\":%d", v->line[s]);
        }
        hp_text_put(b, ",\"frames\":");
        json_string(b, v->frames[s]);
        hp_text_put(b, ",\"values\":[");
        for (int i = 0; i < v->npoints; i++)
            hp_text_put(b, "%s%.0f", i ? "," : "", v->points[i].v[s]);
        hp_text_put(b, "]}");
    }
    hp_text_put(b, "]}\n");
}

static void html_text(struct hp_text *b, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '<')
            hp_text_put(b, "&lt;");
        else if (*s == '>')
            hp_text_put(b, "&gt;");
        else if (*s == '&')
            hp_text_put(b, "&amp;");
        else if (*s == '"')
            hp_text_put(b, "&quot;");
        else
            hp_text_put(b, "%c", *s);
    }
}

/* 1, 2 or 5 times a power of ten (of 1024 for bytes), near range/5. */
static double nice_step(double range, bool bytes)
{
    if (range <= 0)
        return 1;
    double raw = range / 5, base = 1;
    if (bytes)
        while (base * 1024 <= raw)
            base *= 1024;
    while (base * 10 <= raw)
        base *= 10;
    while (base > raw && base > 1)
        base /= 10;
    return raw <= base ? base : raw <= 2 * base ? 2 * base : raw <= 5 * base ? 5 * base : 10 * base;
}

static void bytes_text(char *out, size_t len, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (fabs(v) >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, v == floor(v) ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* Colours for the series, by their rank; "other" is grey. */
static const char *const palette[] = {
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#1f77b4", "#17becf", "#bcbd22", "#8c564b", "#d62728", "#2ca02c", "#9467bd",
};

static void render_html(struct hp_text *b, const struct view *v)
{
    enum { W = 960, H = 420, L = 80, R = 20, T = 20, B = 40 };
    const double pw = W - L - R, ph = H - T - B;
    /* Layers from the bottom: the series holding most on average first,
     * other on top. */
    int order[MAX_SERIES];
    for (int s = 0; s < v->nseries; s++) {
        int j = s;
        while (j > 0 && v->mean[order[j - 1]] < v->mean[s]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = s;
    }
    double tmax = 0, ymax = 0;
    for (int i = 0; i < v->npoints; i++) {
        if (v->points[i].t_ms / 1000 > tmax)
            tmax = v->points[i].t_ms / 1000;
        if (v->points[i].total > ymax)
            ymax = v->points[i].total;
    }
    if (tmax <= 0)
        tmax = 1;
    double ystep = nice_step(ymax > 0 ? ymax : 1024, true);
    ymax = ystep * ceil((ymax > 0 ? ymax : 1024) / ystep);
    double xstep = nice_step(tmax, false);

    char cmd[512];
    size_t cl = 0;
    const char *raw = hp_start_cmdline(&cl);
    if (cl >= sizeof cmd)
        cl = sizeof cmd - 1;
    if (raw)
        memcpy(cmd, raw, cl);
    for (size_t i = 0; i < cl; i++)
        if (!cmd[i])
            cmd[i] = ' ';
    cmd[cl] = 0;

    hp_text_put(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                   "<title>heapprof: heap over time</title>\n"
                   "<style>body{font-family:sans-serif;margin:1rem}"
                   "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}"
                   "td.n,th.n{text-align:left}.sw{display:inline-block;width:12px;height:12px}"
                   "svg text{font-size:12px;fill:#333}</style>\n</head>\n<body>\n"
                   "<h2>Heap over time</h2>\n<p>");
    html_text(b, cmd);
    hp_text_put(
        b,
        " (process %ld): estimated in-use bytes of the stacks that held the most (each that "
        "was ever in the top %d, at most %d), the rest as other; sampling rate %ld bytes. "
        "%d points, each the mean of %d tick%s of %ld ms (merged %d time%s).</p>\n",
        (long)getpid(), TOP, MAX_SERIES, hp_cfg.rate, v->npoints, v->per_point,
        v->per_point == 1 ? "" : "s", hp_cfg.timeline_ms, v->merges, v->merges == 1 ? "" : "s");
    /* An empty chart says why: a program that allocates less than the
     * sampling rate (512 KiB by default) between ticks has nothing sampled. */
    bool nothing = v->nseries == 0;
    for (int i = 0; i < v->npoints && nothing; i++)
        nothing = v->points[i].total <= 0;
    if (nothing && hp_cfg.rate > 1)
        hp_text_put(b,
                    "<p id=\"nothing\"><b>Nothing was sampled%s.</b> heapprof samples about one "
                    "allocation per HEAPPROF_RATE bytes allocated (%ld here), and no sampled "
                    "object was in use at any tick: the program allocates less than that, or "
                    "frees it at once. Lower the rate to see it, e.g. "
                    "<code>HEAPPROF_RATE=4096</code>, or <code>HEAPPROF_RATE=1</code> to record "
                    "every allocation (exact, slower).</p>\n",
                    v->npoints ? "" : " yet", hp_cfg.rate);
    else if (nothing)
        hp_text_put(b,
                    "<p id=\"nothing\"><b>Nothing in use%s.</b> Every allocation is "
                    "recorded (HEAPPROF_RATE=1) and none was in use at any tick.</p>\n",
                    v->npoints ? "" : " yet");
    hp_text_put(
        b,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
        "viewBox=\"0 0 %d %d\">\n",
        W, H, W, H);
    /* Grid and axes. */
    for (double y = 0; y <= ymax * 1.0001; y += ystep) {
        double py = T + ph - y / ymax * ph;
        char label[32];
        bytes_text(label, sizeof label, y);
        hp_text_put(b,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                    L, py, W - R, py, L - 6, py + 4, label);
    }
    for (double x = 0; x <= tmax * 1.0001; x += xstep) {
        double px = L + x / tmax * pw;
        hp_text_put(b,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g s</text>\n",
                    px, T, px, H - B, px, H - B + 16, x);
    }
    /* The areas, each from the top of the layer below to its own top. */
    double *below = hp_arena_alloc(b->a, (size_t)(v->npoints ? v->npoints : 1) * sizeof *below);
    if (!below) {
        b->oom = true;
        return;
    }
    for (int k = 0; k <= v->nseries && v->npoints; k++) {
        bool other = k == v->nseries;
        int s = other ? -1 : order[k];
        const char *colour = other ? "#bbbbbb" : palette[k % (sizeof palette / sizeof *palette)];
        hp_text_put(b, "<path class=\"area\" fill=\"%s\" stroke=\"%s\" stroke-width=\"0.5\" d=\"",
                    colour, colour);
        /* A single point shows as a narrow bar. */
        double half = v->npoints == 1 ? 2 : 0;
        for (int i = 0; i < v->npoints; i++) {
            double val = other ? v->points[i].other : v->points[i].v[s];
            double px = L + v->points[i].t_ms / 1000 / tmax * pw;
            double py = T + ph - (below[i] + val) / ymax * ph;
            hp_text_put(b, "%s%.1f,%.1f", i ? " L" : "M", px - half, py);
            if (half)
                hp_text_put(b, " L%.1f,%.1f", px + half, py);
        }
        for (int i = v->npoints - 1; i >= 0; i--) {
            double px = L + v->points[i].t_ms / 1000 / tmax * pw;
            double py = T + ph - below[i] / ymax * ph;
            if (half)
                hp_text_put(b, " L%.1f,%.1f", px + half, py);
            hp_text_put(b, " L%.1f,%.1f", px - half, py);
            below[i] += other ? v->points[i].other : v->points[i].v[s];
        }
        hp_text_put(b, " Z\"><title>");
        html_text(b, other ? "other" : v->name[s]);
        hp_text_put(b, "</title></path>\n");
    }
    hp_text_put(b,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>"
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n",
                L, T, L, H - B, L, H - B, W - R, H - B);
    if (!v->npoints || nothing)
        hp_text_put(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                    L + (int)pw / 2, T + (int)ph / 2,
                    !v->npoints ? "no points yet" : "nothing sampled: see above");
    hp_text_put(b, "</svg>\n");
    /* The legend, top of the chart first. */
    hp_text_put(b,
                "<table id=\"legend\">\n<tr><th></th><th class=\"n\">function (first frame outside "
                "the allocator)</th><th>now</th><th>highest point</th><th class=\"n\">stack</th>"
                "</tr>\n");
    const struct point *last = v->npoints ? &v->points[v->npoints - 1] : NULL;
    for (int k = v->nseries; k >= 0; k--) {
        bool other = k == v->nseries;
        int s = other ? -1 : order[k];
        const char *colour = other ? "#bbbbbb" : palette[k % (sizeof palette / sizeof *palette)];
        char now[32], top[32];
        double omax = 0;
        for (int i = 0; other && i < v->npoints; i++)
            if (v->points[i].other > omax)
                omax = v->points[i].other;
        bytes_text(now, sizeof now, !last ? 0 : other ? last->other : last->v[s]);
        bytes_text(top, sizeof top, other ? omax : v->max[s]);
        hp_text_put(
            b, "<tr><td><span class=\"sw\" style=\"background:%s\"></span></td><td class=\"n\">",
            colour);
        html_text(b, other ? "other" : v->name[s]);
        hp_text_put(b, "</td><td>%s</td><td>%s</td><td class=\"n\">", now, top);
        html_text(b, other ? "stacks never in the top, and the others before they entered it"
                           : v->frames[s]);
        hp_text_put(b, "</td></tr>\n");
    }
    char tot[32];
    bytes_text(tot, sizeof tot, last ? last->total : 0);
    hp_text_put(b,
                "<tr><td></td><td class=\"n\"><b>total</b></td><td><b>%s</b></td><td></td><td></td>"
                "</tr>\n</table>\n",
                tot);
    hp_text_put(b,
                "<p>heapprof %s. The same series as JSON: <code>/debug/pprof/timeline?format=json"
                "</code> on the endpoint, <code>NAME.timeline.json</code> at exit.</p>\n"
                "</body>\n</html>\n",
                HEAPPROF_VERSION);
}

int hp_timeline_render(struct hp_arena *a, bool json, char **out, size_t *len)
{
    struct view *v = hp_arena_alloc(a, sizeof *v);
    if (!v)
        return -ENOMEM;
    int r = view_take(v, a);
    if (r)
        return r;
    view_name(v, a);
    struct hp_text b = {.a = a};
    if (json)
        render_json(&b, v);
    else
        render_html(&b, v);
    if (b.oom || !b.p)
        return -ENOMEM;
    *out = b.p;
    *len = b.len;
    return 0;
}

/* NAME.timeline.EXT beside the profile: its name up to ".pb" (out.pb.gz
 * gives out.timeline.html), or all of it. */
static int path_for(char *out, size_t len, const char *profile, const char *ext)
{
    const char *cut = strstr(hp_basename(profile), ".pb");
    if (!cut)
        cut = profile + strlen(profile);
    int n = snprintf(out, len, "%.*s.timeline.%s", (int)(cut - profile), profile, ext);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int hp_timeline_write(const char *profile, char *html, char *json, size_t len)
{
    if (!hp_timeline_on())
        return -ENOENT;
    bool was_busy = hp_busy_begin();
    /* A last point, so that the series reaches the end. */
    pthread_mutex_lock(&tl.lock);
    if (tl.on)
        sample(hp_mono_ms());
    pthread_mutex_unlock(&tl.lock);
    int result = 0;
    for (int k = 0; k < 2; k++) {
        char *path = k ? json : html;
        struct hp_arena a = {0};
        char *text = NULL;
        size_t tlen = 0;
        int r = path_for(path, len, profile, k ? "json" : "html");
        if (r == 0)
            r = hp_timeline_render(&a, k == 1, &text, &tlen);
        if (r == 0)
            r = hp_write_file_atomic(path, text, tlen);
        if (r) {
            hp_log("heapprof: cannot write the timeline %s: %s",
                   r == -ENAMETOOLONG ? profile : path, strerror(-r));
            path[0] = 0; /* not written: not announced */
            if (k == 0)
                json[0] = 0;
            result = r;
        }
        hp_arena_release(&a);
        if (r)
            break; /* one line for the two files */
    }
    hp_busy_end(was_busy);
    return result;
}
