/* Execution traces as Chrome's Trace Event JSON (record/trace.c records
 * them): the format `go tool trace`'s viewer (catapult), Perfetto's UI and
 * chrome://tracing load.
 *
 *   {"traceEvents": [...], "stackFrames": {...}, "displayTimeUnit": "ns",
 *    "otherData": {...}}
 *
 * One process (process_name: the program's name), one track per thread
 * (thread_name: its name at the end of the trace, or at its exit). On each:
 * CPU samples as instant events (cat "cpu", named after the leaf function),
 * label scopes as nested B/E slices (cat "region", named key=value), thread
 * creation, start, renames, exit, fork and exec as instant events (cat
 * "lifecycle"), blocking calls and lock waits as complete events (cat
 * "waiting") with the stack that waited, sampled allocations as instant
 * events (cat "heap") with their size; and two
 * counters: "heap in-use (estimated)", moved by the sampled allocations and
 * frees from its level at the trace's start, and "allocation rate
 * (estimated)", in bytes a second.
 *
 * Stacks are not repeated in events: every distinct (caller, frame) pair is
 * one entry of stackFrames ({"name", "parent"}), and an event names its leaf
 * entry with "sf", so a trace stays compact however many samples share a
 * stack. Timestamps are microseconds since the trace's start, to the
 * nanosecond (three decimals). otherData says how many events were dropped
 * (buffers full) and what the trace could record.
 */
#define _GNU_SOURCE
#include "trace_json.h"
#include "iface.h"
#include "symbols.h"
#include "text.h"
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A stackFrames entry: a frame under its caller's entry. */
struct node {
    UT_hash_handle hh;
    struct {
        uintptr_t ip;
        uint64_t parent;
    } key;
    uint32_t id;
};

/* The last stacks seen, by a hash of their frames: a trace's allocations
 * and samples come from few stacks, and finding one frame by frame in the
 * table was a lookup per frame for every event. */
enum { CACHE = 256 };
struct cached {
    uint32_t sf;
    int n;
    uintptr_t ips[HP_MAX_FRAMES];
};

/* Events are formatted here by hand and added to the text in blocks: a
 * vsnprintf per field was most of the writer's time, and the writer most
 * of a trace's cost on an allocation-heavy program (bench/trace_cost.py). */
enum { STAGE = 64 << 10, STAGE_ROOM = 4 << 10 };

struct writer {
    struct hp_arena *a;
    struct hp_text t;
    char *stage;
    size_t staged;
    struct cached *cache;
    struct hp_symbolizer *sym;
    struct node *nodes;
    uint32_t nnodes;
    struct hp_text frames; /* the stackFrames object's body */
    int64_t start;
    int pid;
    bool first;
    bool oom;
};

static const char *frame_name(struct writer *w, uintptr_t ip, char *buf, size_t len)
{
    struct hp_symbolized s;
    memset(&s, 0, sizeof s);
    if (w->sym)
        hp_sym_lookup(w->sym, ip, UINT32_MAX, &s);
    if (s.nlines > 0 && s.lines[0].function)
        return s.lines[0].function;
    if (s.nlines > 0 && s.lines[0].system_name)
        return s.lines[0].system_name;
    snprintf(buf, len, "0x%lx", (unsigned long)(ip - 1));
    return buf;
}

static uint32_t stack_walk(struct writer *w, const uintptr_t *ips, int n);

/* The stackFrames id of a stack (leaf first), made if new; 0: none. */
static uint32_t stack_id(struct writer *w, const uintptr_t *ips, int n)
{
    if (n <= 0)
        return 0;
    if (n > HP_MAX_FRAMES)
        n = HP_MAX_FRAMES;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++)
        h = (h ^ ips[i]) * 0x100000001b3ull;
    struct cached *c = w->cache ? &w->cache[(h ^ h >> 29) % CACHE] : NULL;
    if (c && c->n == n && !memcmp(c->ips, ips, (size_t)n * sizeof *ips))
        return c->sf;
    uint32_t sf = stack_walk(w, ips, n);
    if (c && !w->oom) {
        c->n = n;
        c->sf = sf;
        memcpy(c->ips, ips, (size_t)n * sizeof *ips);
    }
    return sf;
}

static uint32_t stack_walk(struct writer *w, const uintptr_t *ips, int n)
{
    uint64_t parent = 0;
    for (int i = n - 1; i >= 0; i--) {
        struct node key, *e;
        memset(&key, 0, sizeof key);
        key.key.ip = ips[i];
        key.key.parent = parent;
        HASH_FIND(hh, w->nodes, &key.key, sizeof key.key, e);
        if (!e) {
            e = hp_alloc(sizeof *e);
            if (!e) {
                w->oom = true;
                return (uint32_t)parent;
            }
            e->key = key.key;
            e->id = ++w->nnodes;
            HASH_ADD(hh, w->nodes, key, sizeof e->key, e);
            char buf[32];
            hp_text_put(&w->frames, "%s\"%u\":{\"name\":", e->id == 1 ? "" : ",", e->id);
            hp_text_json(&w->frames, frame_name(w, ips[i], buf, sizeof buf));
            if (parent)
                hp_text_put(&w->frames, ",\"parent\":\"%u\"", (unsigned)parent);
            hp_text_put(&w->frames, "}");
        }
        parent = e->id;
    }
    return (uint32_t)parent;
}

static void flush(struct writer *w)
{
    if (w->staged)
        hp_text_add(&w->t, w->stage, w->staged);
    w->staged = 0;
}

/* Room for n more bytes in the stage (n at most STAGE_ROOM). */
static char *room(struct writer *w, size_t n)
{
    if (w->staged + n > STAGE)
        flush(w);
    return w->stage + w->staged;
}

static void out_n(struct writer *w, const char *s, size_t n)
{
    if (n > STAGE_ROOM) {
        flush(w);
        hp_text_add(&w->t, s, n);
        return;
    }
    memcpy(room(w, n), s, n);
    w->staged += n;
}

static void out_s(struct writer *w, const char *s)
{
    out_n(w, s, strlen(s));
}

static void out_u(struct writer *w, uint64_t v)
{
    char tmp[24];
    int i = sizeof tmp;
    do
        tmp[--i] = (char)('0' + v % 10);
    while (v /= 10);
    out_n(w, tmp + i, sizeof tmp - (size_t)i);
}

static void out_i(struct writer *w, int64_t v)
{
    if (v < 0) {
        out_n(w, "-", 1);
        v = -v;
    }
    out_u(w, (uint64_t)v);
}

/* Nanoseconds as microseconds with three decimals. */
static void out_us(struct writer *w, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    out_u(w, (uint64_t)ns / 1000);
    char d[4] = {'.', (char)('0' + ns / 100 % 10), (char)('0' + ns / 10 % 10),
                 (char)('0' + ns % 10)};
    out_n(w, d, 4);
}

/* s as a JSON string, quotes included. */
static void out_json(struct writer *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = strlen(s);
    if (len > 1000)
        len = 1000;
    char *p = room(w, len * 6 + 2), *o = p;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    w->staged += (size_t)(o - p);
}

static void ev_open(struct writer *w, const char *ph, const char *cat, const char *name, int64_t ts,
                    int tid)
{
    if (ts < w->start)
        ts = w->start;
    out_s(w, w->first ? "\n{\"ph\":\"" : ",\n{\"ph\":\"");
    w->first = false;
    out_s(w, ph);
    out_s(w, "\",\"pid\":");
    out_i(w, w->pid);
    out_s(w, ",\"tid\":");
    out_i(w, tid);
    out_s(w, ",\"ts\":");
    out_us(w, ts - w->start);
    if (cat) {
        out_s(w, ",\"cat\":\"");
        out_s(w, cat);
        out_n(w, "\"", 1);
    }
    if (name) {
        out_s(w, ",\"name\":");
        out_json(w, name);
    }
}

/* ,"sf":"N" when the event has a stack. */
static void out_sf(struct writer *w, uint32_t sf)
{
    if (!sf)
        return;
    out_s(w, ",\"sf\":\"");
    out_u(w, sf);
    out_n(w, "\"", 1);
}

static void meta(struct writer *w, const char *what, int tid, const char *name)
{
    out_s(w, w->first ? "\n{\"ph\":\"M\",\"pid\":" : ",\n{\"ph\":\"M\",\"pid\":");
    w->first = false;
    out_i(w, w->pid);
    out_s(w, ",\"tid\":");
    out_i(w, tid);
    out_s(w, ",\"name\":\"");
    out_s(w, what);
    out_s(w, "\",\"args\":{\"name\":");
    out_json(w, name);
    out_s(w, "}}");
}

/* A heap change, for the counter. */
struct change {
    int64_t ts;
    int64_t delta;
};

static int by_ts(const void *x, const void *y)
{
    const struct change *a = x, *b = y;
    return a->ts < b->ts ? -1 : a->ts > b->ts;
}

static void instant(struct writer *w, const char *cat, const char *name, int64_t ts, int tid)
{
    ev_open(w, "i", cat, name, ts, tid);
    out_s(w, ",\"s\":\"t\"}");
}

static void one_thread(struct writer *w, const struct hp_trace *tr,
                       const struct hp_trace_thread *th, struct change *ch, size_t *nch)
{
    meta(w, "thread_name", th->tid, th->name[0] ? th->name : "(unnamed)");
    int depth = 0;
    int64_t last = tr->start_ns;
    char buf[64];
    for (size_t off = 0; off + sizeof(struct hp_tev) <= th->len;) {
        const struct hp_tev *e = (const struct hp_tev *)(th->data + off);
        if (e->size < sizeof *e || off + e->size > th->len)
            break;
        off += e->size;
        const uintptr_t *ips = (const uintptr_t *)(e + 1);
        const char *text = (const char *)(ips + e->n);
        bool has_text = (const uint8_t *)text < (const uint8_t *)e + e->size;
        if (e->ts > last)
            last = e->ts;
        switch (e->kind) {
        case HP_TEV_SAMPLE: {
            if (!e->n)
                break;
            uint32_t sf = stack_id(w, ips, e->n);
            ev_open(w, "i", "cpu", frame_name(w, ips[0], buf, sizeof buf), e->ts, th->tid);
            out_sf(w, sf);
            out_n(w, "}", 1);
            break;
        }
        case HP_TEV_PUSH:
            ev_open(w, "B", "region", has_text ? text : "?", e->ts, th->tid);
            out_n(w, "}", 1);
            depth++;
            break;
        case HP_TEV_POP:
            /* A scope entered before the trace began has no B to end. */
            if (depth > 0) {
                ev_open(w, "E", "region", NULL, e->ts, th->tid);
                out_n(w, "}", 1);
                depth--;
            }
            break;
        case HP_TEV_THREAD_START:
            instant(w, "lifecycle", "thread start", e->ts, th->tid);
            break;
        case HP_TEV_THREAD_EXIT:
            instant(w, "lifecycle", "thread exit", e->ts, th->tid);
            break;
        case HP_TEV_THREAD_CREATE:
            instant(w, "lifecycle", "pthread_create", e->ts, th->tid);
            break;
        case HP_TEV_FORK:
            instant(w, "lifecycle", "fork", e->ts, th->tid);
            break;
        case HP_TEV_RENAME: {
            char nm[600];
            snprintf(nm, sizeof nm, "%s %s", e->a ? "renamed to" : "renamed another thread to",
                     has_text ? text : "?");
            instant(w, "lifecycle", nm, e->ts, th->tid);
            break;
        }
        case HP_TEV_ALLOC: {
            uint32_t sf = e->n ? stack_id(w, ips, e->n) : 0;
            /* The hottest events: no "s" (thread scope is the default)
             * and only the size (the estimate is the counters'). */
            ev_open(w, "i", "heap", "allocation", e->ts, th->tid);
            out_s(w, ",\"args\":{\"bytes\":");
            out_i(w, e->v);
            out_n(w, "}", 1);
            out_sf(w, sf);
            out_n(w, "}", 1);
            if (ch)
                ch[(*nch)++] = (struct change){e->ts, e->w};
            break;
        }
        case HP_TEV_FREE:
            if (ch)
                ch[(*nch)++] = (struct change){e->ts, -e->w};
            break;
        case HP_TEV_BLOCKED: {
            uint32_t sf = e->n ? stack_id(w, ips, e->n) : 0;
            ev_open(w, "X", "waiting", has_text ? text : "blocked", e->ts, th->tid);
            out_s(w, ",\"dur\":");
            out_us(w, e->v);
            out_sf(w, sf);
            out_n(w, "}", 1);
            break;
        }
        case HP_TEV_EXEC:
            ev_open(w, "i", "lifecycle", "exec", e->ts, th->tid);
            out_s(w, ",\"s\":\"t\",\"args\":{\"program\":");
            out_json(w, has_text ? text : "?");
            out_s(w, "}}");
            break;
        default:
            break;
        }
    }
    /* Scopes still open at the end end there. */
    int64_t end = tr->end_ns > last ? tr->end_ns : last;
    for (; depth > 0; depth--) {
        ev_open(w, "E", "region", NULL, end, th->tid);
        out_n(w, "}", 1);
    }
}

static size_t count_heap_events(const struct hp_trace *tr)
{
    size_t n = 0;
    for (size_t i = 0; i < tr->nthreads; i++) {
        const struct hp_trace_thread *th = &tr->threads[i];
        for (size_t off = 0; off + sizeof(struct hp_tev) <= th->len;) {
            const struct hp_tev *e = (const struct hp_tev *)(th->data + off);
            if (e->size < sizeof *e || off + e->size > th->len)
                break;
            off += e->size;
            n += e->kind == HP_TEV_ALLOC || e->kind == HP_TEV_FREE;
        }
    }
    return n;
}

static void counter(struct writer *w, int64_t ts, double bytes)
{
    ev_open(w, "C", "heap", "heap in-use (estimated)", ts, 0);
    out_s(w, ",\"args\":{\"bytes\":");
    out_i(w, bytes < 0 ? 0 : (int64_t)(bytes + 0.5));
    out_s(w, "}}");
}

static void rate_point(struct writer *w, int64_t ts, double per_s)
{
    ev_open(w, "C", "heap", "allocation rate (estimated)", ts, 0);
    out_s(w, ",\"args\":{\"bytes/s\":");
    out_i(w, per_s < 0 ? 0 : (int64_t)(per_s + 0.5));
    out_s(w, "}}");
}

/* The allocation rate: the estimated bytes of the sampled allocations in
 * each window of RATE_STEP_NS, as bytes a second, one point at the
 * window's start; a window with none is a point at 0 after one with some
 * (a counter holds its value until the next point). Windows of 10 ms, not
 * the in-use counter's 1 ms: at the default rate one sample stands for
 * half a megabyte, and a millisecond holds one or none, which draws as
 * spikes rather than a rate. ch is sorted by time. */
static void rate_counter(struct writer *w, const struct hp_trace *tr, const struct change *ch,
                         size_t nch)
{
    enum { RATE_STEP_NS = 10000000 };
    int64_t win = -1, last_ts = INT64_MIN;
    double sum = 0;
    for (size_t i = 0; i <= nch; i++) {
        int64_t k = INT64_MAX;
        if (i < nch)
            k = ch[i].ts > tr->start_ns ? (ch[i].ts - tr->start_ns) / RATE_STEP_NS : 0;
        if (k != win) {
            if (win >= 0) {
                rate_point(w, tr->start_ns + win * RATE_STEP_NS, sum * (1e9 / RATE_STEP_NS));
                last_ts = tr->start_ns + win * RATE_STEP_NS;
                int64_t next = last_ts + RATE_STEP_NS;
                if (k != win + 1 && next < tr->end_ns) {
                    rate_point(w, next, 0);
                    last_ts = next;
                }
            } else if (k != 0) {
                rate_point(w, tr->start_ns, 0);
                last_ts = tr->start_ns;
            }
            sum = 0;
            win = k;
        }
        if (i < nch && ch[i].delta > 0)
            sum += (double)ch[i].delta;
    }
    if (tr->end_ns > last_ts)
        rate_point(w, tr->end_ns, 0);
}

int hp_trace_encode(struct hp_arena *a, const struct hp_trace *tr, bool gz, uint8_t **out,
                    size_t *len)
{
    struct writer w;
    memset(&w, 0, sizeof w);
    w.a = a;
    w.t.a = a;
    w.frames.a = a;
    w.start = tr->start_ns;
    w.pid = (int)getpid();
    w.first = true;
    w.stage = hp_arena_alloc(a, STAGE);
    w.cache = hp_arena_alloc(a, CACHE * sizeof *w.cache);
    if (!w.stage)
        return -ENOMEM;
    if (w.cache)
        memset(w.cache, 0, CACHE * sizeof *w.cache);
    w.sym = hp_sym_open(a);
    hp_text_put(&w.t, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");
    const char *comm = hp_read_file(a, "/proc/self/comm", NULL);
    char pname[64] = "program";
    if (comm) {
        snprintf(pname, sizeof pname, "%s", comm);
        char *nl = strchr(pname, '\n');
        if (nl)
            *nl = 0;
    }
    meta(&w, "process_name", 0, pname);
    size_t nheap = tr->heap ? count_heap_events(tr) : 0;
    struct change *ch = nheap ? hp_arena_alloc(a, nheap * sizeof *ch) : NULL;
    size_t nch = 0;
    for (size_t i = 0; i < tr->nthreads; i++)
        one_thread(&w, tr, &tr->threads[i], ch, &nch);
    if (tr->heap) {
        qsort(ch, nch, sizeof *ch, by_ts);
        /* At most one point a millisecond: a counter event for every
         * sampled allocation and free made a trace of an allocation-heavy
         * second tens of megabytes, and its writing most of the trace's
         * cost (bench/trace_cost.py); a viewer draws no finer anyway. Each
         * point is the level at the end of its millisecond. */
        enum { COUNTER_STEP_NS = 1000000 };
        double level = tr->heap_base;
        counter(&w, tr->start_ns, level);
        int64_t last = tr->start_ns;
        for (size_t i = 0; i < nch; i++) {
            level += (double)ch[i].delta;
            bool last_of_step = i + 1 == nch || ch[i + 1].ts - last >= COUNTER_STEP_NS;
            if (last_of_step && ch[i].ts - last >= 0) {
                counter(&w, ch[i].ts, level);
                last = ch[i].ts;
            }
        }
        counter(&w, tr->end_ns, level);
        rate_counter(&w, tr, ch, nch);
    }
    flush(&w);
    hp_text_put(&w.t, "\n],\"stackFrames\":{");
    if (w.frames.p)
        hp_text_add(&w.t, w.frames.p, w.frames.len);
    hp_text_put(
        &w.t,
        "},\"otherData\":{\"producer\":\"heapprof " HEAPPROF_VERSION "\","
        "\"duration_ns\":\"%lld\",\"cpu_hz\":\"%d\",\"heap_rate\":\"%ld\","
        "\"threads\":\"%zu\",\"dropped_events\":\"%lld\",\"buffer_budget_bytes\":\"%zu\","
        "\"short_waits_not_shown\":\"%lld\",\"min_wait_ns\":\"%d\",\"cpu_profile_hz\":\"%d\"}}\n",
        (long long)(tr->end_ns - tr->start_ns), tr->cpu_hz, tr->heap ? tr->rate : 0L, tr->nthreads,
        (long long)tr->dropped, tr->budget, (long long)tr->short_waits, HP_TRACE_MIN_WAIT_NS,
        tr->cpu_profile_hz);
    struct node *e, *tmp;
    HASH_ITER(hh, w.nodes, e, tmp)
    {
        HASH_DEL(w.nodes, e);
        hp_free(e, sizeof *e);
    }
    if (w.sym)
        hp_sym_close(w.sym);
    if (w.t.oom || w.frames.oom || w.oom || !w.t.p)
        return -ENOMEM;
    if (!gz) {
        *out = (uint8_t *)w.t.p;
        *len = w.t.len;
        return 0;
    }
    struct hp_wire *z = hp_wire_open(a);
    if (!z)
        return -ENOMEM;
    hp_wire_raw(z, w.t.p, w.t.len);
    return hp_wire_close(z, out, len);
}

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

int hp_trace_write(const char *path, struct hp_trace *t)
{
    bool was = hp_busy_begin();
    hp_mutex_lock(&write_lock);
    hp_stderr_choose();
    struct hp_arena a = {0};
    size_t pl = strlen(path);
    bool gz = pl > 3 && !strcmp(path + pl - 3, ".gz");
    uint8_t *data;
    size_t len;
    int r = hp_trace_encode(&a, t, gz, &data, &len);
    if (r == 0)
        r = hp_write_file_atomic(path, data, len);
    if (r)
        hp_log("heapprof: cannot write the trace %s: %s", path, strerror(-r));
    hp_arena_release(&a);
    pthread_mutex_unlock(&write_lock);
    hp_busy_end(was);
    return r;
}
