/* The /debug/pprof/ endpoint's handlers, one function per route, in
 * net/http/pprof's conventions, on the server of report/http.c.
 *
 * Served: /debug/pprof/ (index), heap, allocs, peak (heapprof's own: the
 * in-use profile at the peak), cmdline, timeline (heapprof's own: the heap
 * over time as a chart, or ?format=json, timeline_render.c), and profile: a
 * CPU profile over ?seconds=N (30 by default, as Go's; at most
 * MAX_SECONDS), whose timers run only during the window (record/cpu.c);
 * like a heap or allocs delta (?seconds=N), its connection waits in the
 * server's loop (a window), so the other endpoints keep answering
 * meanwhile, and a window ends early when its client goes away. A second
 * profile request while one runs gets Go's answer: 500, "Could not enable
 * CPU profiling: cpu profiling already in use". goroutine (alias
 * threads): every live thread's stack; threadcreate: where the live threads
 * were created (both report/goroutine.c); symbol: names for addresses, as
 * Go answers them (GET or POST). mutex and block: lock contention and
 * blocking waits (record/contention.c, report/contention.c), with ?debug=1
 * and ?seconds=N as heap's. trace: an execution trace over ?seconds=N
 * (report/trace_json.c). leaks (heapprof's own): a leak check now, in a
 * clone (report/leakcheck.c), whose connection waits for the clone's pipe
 * as a window waits for its deadline. An unknown name under the prefix gets
 * a 404 that lists what is served (left_out).
 *
 * They run on the background thread, which is marked busy: what libraries
 * allocate for them (symbolizing, compressing) goes straight to the real
 * allocator and is never counted in the program's profile. Their own
 * memory is heapprof's (arenas, hp_alloc).
 */
#define _GNU_SOURCE
#include "handlers.h"
#include "iface.h"
#include "contention.h"
#include "cpuprof.h"
#include "goroutine.h"
#include "http.h"
#include "leakcheck.h"
#include "reach.h"
#include "profile.h"
#include "symbols.h"
#include "text.h"
#include "timeline_render.h"
#include "trace_json.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_SECONDS = 3600 };

/* What a window waits for: a heap or allocs delta (from its base), or a CPU
 * profile. hp_alloc'ed; the server holds it until it ends (window_end) or
 * its client goes away (window_drop). */
enum profile_kind { HEAP, ALLOCS, PEAK, CPU, MUTEX, BLOCK, TRACE, LEAKS };
/* A leak check's steps (LEAKS): its only check, or a delta's first check,
 * its wait, and its second check. */
enum leak_step { LEAK_CHECK, LEAK_BASE, LEAK_WAIT };
struct window {
    enum profile_kind kind;
    long seconds;
    bool gzip;           /* a trace's client accepts gzip */
    bool debug;          /* a leak check's answer as text */
    enum leak_step step; /* a leak check's */
    bool checking;       /* a leak check's clone runs (rc) */
    struct hp_reach rc;
    struct hp_snapshot got;       /* its answer, read as it comes */
    int64_t leak_deadline;        /* its time limit (hp_mono_ms) */
    struct hp_snapshot base;      /* a delta's start */
    struct hp_cont_profile cbase; /* a mutex or block delta's start */
    int64_t start_ns;
};

static struct window *window_new(enum profile_kind kind, long seconds)
{
    struct window *w = hp_alloc(sizeof *w);
    if (w) {
        memset(w, 0, sizeof *w);
        w->kind = kind;
        w->seconds = seconds;
    }
    return w;
}

static void window_free(struct window *w)
{
    if (w->kind == CPU) {
        struct hp_cpu_profile p;
        if (hp_cpu_stop(HP_CPU_HTTP, &p) == 0)
            hp_cpu_release(&p);
    } else if (w->kind == MUTEX || w->kind == BLOCK) {
        hp_arena_release(&w->cbase.arena);
    } else if (w->kind == TRACE) {
        struct hp_trace t;
        if (hp_trace_stop(HP_TRACE_HTTP, &t) == 0)
            hp_trace_release(&t);
    } else if (w->kind == LEAKS) {
        if (w->checking)
            hp_reach_cancel(&w->rc);
        hp_snapshot_release(&w->got);
        hp_snapshot_release(&w->base);
        hp_leakcheck_release();
    } else {
        hp_snapshot_release(&w->base);
    }
    hp_free(w, sizeof *w);
}

/* The arguments the program started with: a server that rewrites its title
 * (its argv) later does not change them. */
static size_t read_cmdline(char *out, size_t cap)
{
    struct hp_arena a = {0};
    size_t len = 0;
    const char *text = hp_start_cmdline(&len);
    if (!text)
        text = hp_read_file(&a, "/proc/self/cmdline", &len);
    if (len > cap)
        len = cap;
    if (text)
        memcpy(out, text, len);
    hp_arena_release(&a);
    /* Arguments are NUL-separated, as Go joins os.Args with "\x00"; drop
     * the final NUL. */
    if (len && out[len - 1] == 0)
        len--;
    return len;
}

/* One window in progress, for the index. */
struct in_progress {
    struct hp_text *t;
    int n;
};

static void put_window(const void *window, int64_t ms_left, void *arg)
{
    const struct window *w = window;
    struct in_progress *ip = arg;
    if (w->kind == LEAKS && !w->seconds) {
        hp_text_put(ip->t, "%sa leak check (leaks)", ip->n++ ? "; " : "<p>In progress: ");
        return;
    }
    const char *what = w->kind == CPU      ? "a CPU profile (profile)"
                       : w->kind == LEAKS  ? "a leak delta (leaks)"
                       : w->kind == ALLOCS ? "an allocs delta"
                       : w->kind == MUTEX  ? "a mutex delta"
                       : w->kind == BLOCK  ? "a block delta"
                       : w->kind == TRACE  ? "an execution trace (trace)"
                                           : "a heap delta";
    int64_t left = (ms_left + 999) / 1000;
    hp_text_put(ip->t, "%s%s over %ld s, %lld s left", ip->n++ ? "; " : "<p>In progress: ", what,
                w->seconds, (long long)(left > 0 ? left : 0));
}

static size_t cont_count(enum hp_cont_kind kind);

/* How the sampled stacks were taken: by the fast unwinder, or by
 * libunwind and why (record/unwind.c). */
static void put_unwind(struct hp_text *t)
{
    struct hp_unwind_stats u;
    hp_unwind_stats(&u);
    uint64_t fb = 0;
    for (int i = 0; i < HP_UW_REASONS; i++)
        fb += u.fallback[i];
    if (u.mode == HP_UNWIND_LIBUNWIND) {
        hp_text_put(t, "<p>Stacks: libunwind (HEAPPROF_UNWIND=libunwind)</p>\n");
        return;
    }
    hp_text_put(t,
                "<p>Stacks: %llu captures, %llu by the fast unwinder, %llu by libunwind "
                "(HEAPPROF_UNWIND=%s)",
                (unsigned long long)(u.fast + fb), (unsigned long long)u.fast,
                (unsigned long long)fb, u.mode == HP_UNWIND_CHECK ? "check" : "fast");
    for (int i = 0, n = 0; i < HP_UW_REASONS; i++)
        if (u.fallback[i])
            hp_text_put(t, "%s%s %llu", n++ ? ", " : ": ", hp_unwind_reason(i),
                        (unsigned long long)u.fallback[i]);
    if (u.mode == HP_UNWIND_CHECK)
        hp_text_put(t, "; %llu compared with libunwind, %llu differed",
                    (unsigned long long)u.compared, (unsigned long long)u.mismatches);
    hp_text_put(t, "; unwind tables for %u of %u modules, %zu KiB with the threads' caches</p>\n",
                u.tables, u.modules, u.bytes >> 10);
}

/* GET /debug/pprof/ */
static void serve_index(struct hp_http_conn *c, const char *query)
{
    struct hp_snapshot s;
    size_t nb = 0;
    if (hp_snapshot_take(&s) == 0)
        nb = s.nbuckets;
    hp_snapshot_release(&s);
    bool peak = hp_snapshot_peak(&s) == 0;
    hp_snapshot_release(&s);
    char cmd[4096];
    size_t cl = read_cmdline(cmd, sizeof cmd - 1);
    for (size_t i = 0; i < cl; i++)
        if (!cmd[i])
            cmd[i] = ' ';
    cmd[cl] = 0;
    struct hp_arena a = {0};
    struct hp_text t = {.a = &a};
    hp_text_put(&t,
                "<!DOCTYPE html>\n<html>\n<head>\n<title>/debug/pprof/</title>\n"
                "<style>.profile-name{display:inline-block; width:6rem;}</style>\n"
                "</head>\n<body>\n/debug/pprof/\n<br>\n<p>heapprof %s, process %ld: ",
                HEAPPROF_VERSION, (long)getpid());
    hp_text_html(&t, cmd);
    hp_text_put(&t,
                ", sampling every %ld bytes on average%s; heapprof's own memory: %zu KiB (stack "
                "table %zu KiB of at most %zu KiB, HEAPPROF_MAX_MEMORY; live set %zu KiB)%s</p>\n",
                hp_cfg.rate, hp_cfg.rate <= 1 ? " (exact: every allocation)" : "",
                hp_mem_mapped() >> 10, hp_table_bytes() >> 10, hp_cfg.max_memory >> 10,
                hp_live_bytes() >> 10,
                hp_table_folded() ? "; new stacks are counted under [other]" : "");
    struct hp_leak_totals lt;
    struct hp_reach_stats lst;
    int64_t lt_ns;
    uint64_t nchecks;
    if (hp_leakcheck_last(&lt, &lst, &lt_ns, &nchecks))
        hp_text_put(&t,
                    "<p>Leak checks so far: %llu; the last, %.1f s ago: %llu bytes lost "
                    "definitely and %llu indirectly, %llu reachable (%s), in %.1f ms, the program "
                    "held for %.2f ms.</p>\n",
                    (unsigned long long)nchecks, (double)(hp_now_ns() - lt_ns) / 1e9,
                    (unsigned long long)lt.bytes[0], (unsigned long long)lt.bytes[1],
                    (unsigned long long)lt.bytes[2], hp_cfg.rate <= 1 ? "exact" : "estimated",
                    (double)lst.ns / 1e6, (double)lst.pause_ns / 1e6);
    put_unwind(&t);
    /* The windows that clients wait on: a CPU profile among them is why a
     * new one gets the 500 meanwhile. */
    struct in_progress ip = {&t, 0};
    hp_http_each_window(c, put_window, &ip);
    if (ip.n)
        hp_text_put(&t, ". A window ends early when its client disconnects.</p>\n");
    hp_text_put(&t, "Types of profiles available:\n<table>\n"
                    "<thead><td>Count</td><td>Profile</td></thead>\n");
    hp_text_put(&t, "<tr><td>%zu</td><td><a href='allocs?debug=1'>allocs</a></td></tr>\n", nb);
    hp_text_put(&t, "<tr><td>%zu</td><td><a href='block?debug=1'>block</a></td></tr>\n",
                cont_count(HP_CONT_BLOCK));
    hp_text_put(&t, "<tr><td>1</td><td><a href='cmdline'>cmdline</a></td></tr>\n");
    hp_text_put(&t, "<tr><td>%zu</td><td><a href='heap?debug=1'>heap</a></td></tr>\n", nb);
    hp_text_put(&t, "<tr><td></td><td><a href='leaks?debug=1'>leaks</a></td></tr>\n");
    hp_text_put(&t, "<tr><td>%zu</td><td><a href='mutex?debug=1'>mutex</a></td></tr>\n",
                cont_count(HP_CONT_MUTEX));
    hp_text_put(&t, "<tr><td>%d</td><td><a href='peak?debug=1'>peak</a></td></tr>\n", peak ? 1 : 0);
    hp_text_put(&t, "<tr><td>1</td><td><a href='timeline'>timeline</a></td></tr>\n");
    hp_text_put(&t, "<tr><td></td><td><a href='profile'>profile</a></td></tr>\n");
    hp_text_put(&t, "<tr><td></td><td><a href='goroutine?debug=1'>goroutine</a></td></tr>\n");
    hp_text_put(&t, "<tr><td></td><td><a href='threads?debug=2'>threads</a></td></tr>\n");
    hp_text_put(&t, "<tr><td></td><td><a href='threadcreate?debug=1'>threadcreate</a></td></tr>\n");
    hp_text_put(&t, "<tr><td></td><td><a href='symbol'>symbol</a></td></tr>\n");
    hp_text_put(
        &t, "</table>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n"
            "<li><div class=profile-name>allocs: </div> A sampling of all past memory "
            "allocations (the heap profile with alloc_space shown by default)</li>\n"
            "<li><div class=profile-name>block: </div> Stack traces that led to blocking in "
            "condition variables, poll, epoll, select, sleeps, reads, accepts, semaphores and "
            "joins (HEAPPROF_BLOCK_RATE, or rate=N here; off by default)</li>\n"
            "<li><div class=profile-name>cmdline: </div> The command line invocation of the "
            "current program</li>\n"
            "<li><div class=profile-name>heap: </div> A sampling of memory allocations of live "
            "objects. You can specify the seconds GET parameter to get a delta profile over that "
            "many seconds, and debug=1 for a text form.</li>\n"
            "<li><div class=profile-name>leaks: </div> A leak check now, in a copy of the "
            "process: the heap profile with each stack's in-use memory labelled leak=definite, "
            "indirect or reachable (heapprof's own); debug=1 for the leak summary, seconds=N for "
            "what became lost over that many seconds</li>\n"
            "<li><div class=profile-name>mutex: </div> Stack traces of threads that waited for "
            "contended pthread mutexes, rwlocks and spin locks, charged to the waiter "
            "(HEAPPROF_MUTEX_FRACTION, or fraction=N here; off by default)</li>\n"
            "<li><div class=profile-name>peak: </div> The live objects when the estimated in-use "
            "bytes were at their highest (heapprof's own; within about 6%% below the peak)</li>\n"
            "<li><div class=profile-name>timeline: </div> The heap over time: the estimated "
            "in-use bytes of the stacks that hold the most, as a stacked area chart "
            "(heapprof's own; format=json for the series)</li>\n"
            "<li><div class=profile-name>profile: </div> CPU profile. You can specify the "
            "duration in the seconds GET parameter (30 by default). After you get the profile "
            "file, use the go tool pprof command to investigate the profile.</li>\n"
            "<li><div class=profile-name>goroutine: </div> Stack traces of all current threads "
            "(a C program's goroutines): debug=1 grouped, debug=2 one per thread with its "
            "state</li>\n"
            "<li><div class=profile-name>threads: </div> The same as goroutine</li>\n"
            "<li><div class=profile-name>threadcreate: </div> Stack traces that led to the "
            "creation of the current threads</li>\n"
            "<li><div class=profile-name>symbol: </div> Function names of the addresses given "
            "(+-separated, in the query or a POST body), as go tool pprof asks for them</li>\n"
            "</ul>\n</p>\n<p>Read them with <code>go tool pprof http://HOST:PORT/debug/pprof/"
            "heap</code>.</p>\n</body>\n</html>\n");
    if (t.oom)
        hp_http_respond_text(c, 500, "out of memory\n");
    else
        hp_http_respond(c, 200, "text/html; charset=utf-8", NULL, t.p, t.len);
    hp_arena_release(&a);
}

static int by_inuse_desc(const void *x, const void *y)
{
    const struct hp_snap_bucket *a = x, *b = y;
    if (a->est[HP_INUSE_SPACE] != b->est[HP_INUSE_SPACE])
        return a->est[HP_INUSE_SPACE] < b->est[HP_INUSE_SPACE] ? 1 : -1;
    return a->est[HP_ALLOC_SPACE] < b->est[HP_ALLOC_SPACE]   ? 1
           : a->est[HP_ALLOC_SPACE] > b->est[HP_ALLOC_SPACE] ? -1
                                                             : 0;
}

/* The legacy text form Go writes for ?debug=1, each bucket's stack with
 * function names and lines. Go writes raw sampled counts and the rate
 * (2R, "heap/2R"), and readers unbias each line by its average size; a
 * bucket here mixes sizes, so the values written are the unbiased
 * estimates, and the header says "heap/2": rate 1, nothing to scale. */
static void serve_text(struct hp_http_conn *c, struct hp_snapshot *s)
{
    qsort(s->buckets, s->nbuckets, sizeof *s->buckets, by_inuse_desc);
    int64_t sum[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < s->nbuckets; i++)
        for (int k = 0; k < 4; k++)
            sum[k] += s->buckets[i].est[k];
    struct hp_text t = {.a = &s->arena};
    hp_text_put(&t, "heap profile: %lld: %lld [%lld: %lld] @ heap/2\n", (long long)sum[2],
                (long long)sum[3], (long long)sum[0], (long long)sum[1]);
    struct hp_symbolizer *sym = hp_sym_open(&s->arena);
    for (size_t i = 0; i < s->nbuckets && !t.oom; i++) {
        struct hp_snap_bucket *sb = &s->buckets[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        int depth = hp_stack_frames(sb->stack, fs, HP_MAX_FRAMES);
        hp_text_put(&t, "%lld: %lld [%lld: %lld] @", (long long)sb->est[HP_INUSE_OBJECTS],
                    (long long)sb->est[HP_INUSE_SPACE], (long long)sb->est[HP_ALLOC_OBJECTS],
                    (long long)sb->est[HP_ALLOC_SPACE]);
        for (int d = 0; d < depth; d++)
            hp_text_put(&t, " %#lx", (unsigned long)(fs[d].ip - 1));
        hp_text_put(&t, "\n");
        const struct hp_labelset *ls = hp_labelset_at(sb->labels);
        if (ls) {
            hp_text_put(&t, "# labels: bytes=%llu", (unsigned long long)hp_snap_avg_size(sb));
            if (ls->thread)
                hp_text_put(&t, " thread=%s", ls->thread);
            for (int k = 0; k < ls->n; k++)
                hp_text_put(&t, " %s=%s", ls->kv[2 * k], ls->kv[2 * k + 1]);
            hp_text_put(&t, "\n");
        }
        for (int d = 0; d < depth; d++) {
            struct hp_symbolized fr;
            uintptr_t pc = fs[d].ip;
            hp_sym_lookup(sym, pc, fs[d].epoch, &fr);
            if (fr.nlines == 0)
                hp_text_put(&t, "#\t%#lx\n", (unsigned long)(pc - 1));
            for (int l = 0; l < fr.nlines; l++) {
                const struct hp_frame_line *ln = &fr.lines[l];
                if (ln->file)
                    hp_text_put(&t, "#\t%#lx\t%s\t%s:%d\n", (unsigned long)(pc - 1), ln->function,
                                ln->file, ln->line);
                else
                    hp_text_put(&t, "#\t%#lx\t%s\n", (unsigned long)(pc - 1), ln->function);
            }
        }
        hp_text_put(&t, "\n");
    }
    hp_sym_close(sym);
    hp_text_put(&t,
                "# heapprof %s: the values above are unbiased estimates (sampling rate %ld bytes), "
                "one line per stack and size class\n",
                HEAPPROF_VERSION, s->rate);
    if (t.oom)
        hp_http_respond_text(c, 500, "out of memory\n");
    else
        hp_http_respond(c, 200, "text/plain; charset=utf-8", NULL, t.p, t.len);
}

static void serve_profile(struct hp_http_conn *c, struct hp_snapshot *s, enum profile_kind kind)
{
    struct hp_symbolizer *sym = hp_sym_open(&s->arena);
    uint8_t *gz;
    size_t len;
    int r =
        hp_profile_encode(s, sym, hp_start_ns(), kind == ALLOCS ? "alloc_space" : NULL, &gz, &len);
    hp_sym_close(sym);
    if (r) {
        hp_http_respond_text(c, 500, "could not encode the profile: %s\n", strerror(-r));
        return;
    }
    const char *name = kind == ALLOCS ? "allocs" : kind == PEAK ? "peak" : "heap";
    char extra[128];
    snprintf(extra, sizeof extra, "Content-Disposition: attachment; filename=\"%s\"\r\n", name);
    hp_http_respond(c, 200, "application/octet-stream", extra, gz, len);
}

static bool query_param(const char *query, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t pl = amp ? (size_t)(amp - p) : strlen(p);
        if (pl > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = pl - kl - 1;
            if (vl >= len)
                vl = len - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = 0;
            return true;
        }
        if (pl == kl && !strncmp(p, key, kl)) {
            out[0] = 0;
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

/* GET /debug/pprof/timeline[?format=json|html] */
static void serve_timeline(struct hp_http_conn *c, const char *query)
{
    char val[16];
    bool json = false;
    if (query && query_param(query, "format", val, sizeof val)) {
        json = !strcmp(val, "json");
        if (!json && strcmp(val, "html") != 0) {
            hp_http_respond_text(c, 400, "bad format: want json or html\n");
            return;
        }
    }
    struct hp_arena a = {0};
    char *text;
    size_t len;
    int r = hp_timeline_render(&a, json, &text, &len);
    if (r == -ENOENT)
        hp_http_respond_text(c, 404, "the timeline is off\n");
    else if (r)
        hp_http_respond_text(c, 500, "could not make the timeline: %s\n", strerror(-r));
    else
        hp_http_respond(c, 200, json ? "application/json" : "text/html; charset=utf-8", NULL, text,
                        len);
    hp_arena_release(&a);
}

/* A window's ?seconds=N: a whole number from 1 to MAX_SECONDS into *out, or
 * a 400 that says so (false). */
static bool window_seconds(struct hp_http_conn *c, const char *val, long *out)
{
    char *end;
    long v = strtol(val, &end, 10);
    if (*end || end == val || v <= 0 || v > MAX_SECONDS) {
        hp_http_respond_text(c, 400, "bad seconds: want a whole number from 1 to %d\n",
                             MAX_SECONDS);
        return false;
    }
    *out = v;
    return true;
}

/* GET /debug/pprof/profile[?seconds=N]: a CPU profile's window starts; the
 * answer comes when it ends. */
static void serve_cpu(struct hp_http_conn *c, const char *query)
{
    char val[64];
    long seconds = 30; /* Go's default, also for a value it cannot use */
    if (query && query_param(query, "seconds", val, sizeof val)) {
        char *end;
        long v = strtol(val, &end, 10);
        if (!*end && v > MAX_SECONDS) {
            hp_http_respond_text(c, 400, "bad seconds: want a whole number from 1 to %d\n",
                                 MAX_SECONDS);
            return;
        }
        if (!*end && end != val && v > 0)
            seconds = v;
    }
    int r = hp_cpu_start(hp_cfg.cpu_hz, HP_CPU_HTTP, NULL);
    if (r) {
        char body[256];
        int n = snprintf(body, sizeof body, "Could not enable CPU profiling: %s\n",
                         r == -EBUSY   ? "cpu profiling already in use"
                         : r == -EPERM ? "the program handles SIGPROF itself"
                                       : strerror(-r));
        hp_http_respond(c, 500, "text/plain; charset=utf-8", "X-Go-Pprof: 1\r\n", body,
                        n > 0 && (size_t)n < sizeof body ? (size_t)n : 0);
        return;
    }
    struct window *w = window_new(CPU, seconds);
    if (!w) {
        struct hp_cpu_profile p;
        if (hp_cpu_stop(HP_CPU_HTTP, &p) == 0)
            hp_cpu_release(&p);
        hp_http_respond_text(c, 500, "out of memory\n");
        return;
    }
    hp_http_wait(c, seconds * 1000, w);
}

static void finish_cpu(struct hp_http_conn *c)
{
    struct hp_cpu_profile p;
    int r = hp_cpu_stop(HP_CPU_HTTP, &p);
    if (r) {
        hp_http_respond_text(c, 500, "the CPU profile was stopped: %s\n", strerror(-r));
        return;
    }
    char comment[512];
    struct hp_symbolizer *sym = hp_sym_open(&p.arena);
    uint8_t *gz;
    size_t len;
    r = hp_cpu_encode(&p, sym, hp_cpu_comment(&p, comment, sizeof comment), &gz, &len);
    hp_sym_close(sym);
    if (r)
        hp_http_respond_text(c, 500, "could not encode the profile: %s\n", strerror(-r));
    else
        hp_http_respond(c, 200, "application/octet-stream",
                        "Content-Disposition: attachment; filename=\"profile\"\r\n", gz, len);
    hp_cpu_release(&p);
}

/* GET /debug/pprof/trace[?seconds=N]: an execution trace's window starts
 * (record/trace.c); the answer, Chrome Trace Event JSON, comes when it
 * ends. As Go's: 1 s when seconds is missing, not a number or <= 0; a
 * second trace while one runs gets a 500. At most MAX_TRACE_SECONDS. */
enum { MAX_TRACE_SECONDS = 60 };
static void serve_trace(struct hp_http_conn *c, const char *query)
{
    char val[64];
    long seconds = 1;
    if (query && query_param(query, "seconds", val, sizeof val)) {
        char *end;
        double v = strtod(val, &end);
        if (!*end && end != val && v > MAX_TRACE_SECONDS) {
            hp_http_respond_text(c, 400, "bad seconds: want a number of seconds up to %d\n",
                                 MAX_TRACE_SECONDS);
            return;
        }
        if (!*end && end != val && v > 0)
            seconds = (long)v > 0 ? (long)v : 1;
    }
    int r = hp_trace_start(HP_TRACE_HTTP, NULL);
    if (r) {
        char body[256];
        int n = snprintf(body, sizeof body, "Could not enable tracing: %s\n",
                         r == -EBUSY ? "tracing is already enabled" : strerror(-r));
        hp_http_respond(c, 500, "text/plain; charset=utf-8", "X-Go-Pprof: 1\r\n", body,
                        n > 0 && (size_t)n < sizeof body ? (size_t)n : 0);
        return;
    }
    struct window *w = window_new(TRACE, seconds);
    if (!w) {
        struct hp_trace t;
        if (hp_trace_stop(HP_TRACE_HTTP, &t) == 0)
            hp_trace_release(&t);
        hp_http_respond_text(c, 500, "out of memory\n");
        return;
    }
    w->gzip = hp_http_header_has(c, "Accept-Encoding", "gzip");
    hp_http_wait(c, seconds * 1000, w);
}

static void finish_trace(struct hp_http_conn *c, const struct window *w)
{
    struct hp_trace t;
    int r = hp_trace_stop(HP_TRACE_HTTP, &t);
    if (r) {
        hp_http_respond_text(c, 500, "the trace was stopped: %s\n", strerror(-r));
        return;
    }
    struct hp_arena a = {0};
    uint8_t *data;
    size_t len;
    r = hp_trace_encode(&a, &t, w->gzip, &data, &len);
    hp_trace_release(&t);
    if (r)
        hp_http_respond_text(c, 500, "could not encode the trace: %s\n", strerror(-r));
    else
        hp_http_respond(c, 200, "application/json",
                        w->gzip ? "Content-Encoding: gzip\r\nContent-Disposition: attachment; "
                                  "filename=\"trace.json\"\r\n"
                                : "Content-Disposition: attachment; filename=\"trace.json\"\r\n",
                        data, len);
    hp_arena_release(&a);
}

/* A 404 for a path of net/http/pprof's that is not served here says why,
 * and what to use instead; anything else gets Go's plain answer. */
static void left_out(struct hp_http_conn *c, const char *path, size_t pl)
{
    /* Every route of Go's net/http/pprof is served: an unknown name under
     * the prefix gets a 404 that lists them, not Go's bare one. */
    if (!strncmp(path, "/debug/pprof/", pl + 1) && path[pl + 1]) {
        hp_http_respond_text(
            c, 404,
            "heapprof: /debug/pprof/%.64s is not a profile heapprof serves. "
            "Served: heap, allocs, peak, leaks, profile, trace, mutex, block, goroutine, "
            "threads, threadcreate, symbol, timeline, cmdline (the index is "
            "/debug/pprof/).\n",
            path + pl + 1);
        return;
    }
    hp_http_respond_text(c, 404, "404 page not found\n");
}

/* GET /debug/pprof/cmdline */
static void serve_cmdline(struct hp_http_conn *c, const char *query)
{
    char cmd[65536];
    size_t len = read_cmdline(cmd, sizeof cmd);
    hp_http_respond(c, 200, "text/plain; charset=utf-8", NULL, cmd, len);
}

/* GET /debug/pprof/heap, allocs and peak: the profile, its text form
 * (?debug=1), or a window whose answer is the delta over it (?seconds=N,
 * not for the peak). */
static void serve_heap_kind(struct hp_http_conn *c, const char *query, enum profile_kind kind)
{
    char val[64];
    long debug = 0, seconds = 0;
    if (query && query_param(query, "debug", val, sizeof val))
        debug = strtol(val, NULL, 10);
    if (query && query_param(query, "seconds", val, sizeof val)) {
        if (!window_seconds(c, val, &seconds))
            return;
        if (kind == PEAK || debug) {
            hp_http_respond_text(c, 400,
                                 "seconds= gives a delta of the heap or allocs profile, "
                                 "without debug=\n");
            return;
        }
    }
    struct hp_snapshot s;
    int r = kind == PEAK ? hp_snapshot_peak(&s) : hp_snapshot_take(&s);
    if (r) {
        hp_snapshot_release(&s);
        if (r == -ENOENT)
            hp_http_respond_text(c, 404, "no peak profile yet: nothing sampled so far\n");
        else
            hp_http_respond_text(c, 500, "could not take a snapshot: %s\n", strerror(-r));
        return;
    }
    if (seconds) {
        /* The window's start; the answer comes when it ends. */
        struct window *w = window_new(kind, seconds);
        if (!w) {
            hp_snapshot_release(&s);
            hp_http_respond_text(c, 500, "out of memory\n");
            return;
        }
        w->base = s;
        hp_http_wait(c, seconds * 1000, w);
        return;
    }
    if (debug)
        serve_text(c, &s);
    else
        serve_profile(c, &s, kind);
    hp_snapshot_release(&s);
}

static void serve_heap(struct hp_http_conn *c, const char *query)
{
    serve_heap_kind(c, query, HEAP);
}

static void serve_allocs(struct hp_http_conn *c, const char *query)
{
    serve_heap_kind(c, query, ALLOCS);
}

static void serve_peak(struct hp_http_conn *c, const char *query)
{
    serve_heap_kind(c, query, PEAK);
}

/* A delta's window ended: the change since its base. */
static void finish_delta(struct hp_http_conn *c, struct window *w)
{
    struct hp_snapshot s;
    int r = hp_snapshot_take(&s);
    if (r == 0)
        r = hp_snapshot_delta(&s, &w->base);
    if (r == 0) {
        char comment[96];
        snprintf(comment, sizeof comment,
                 "heapprof delta over %ld s: alloc values in the window, inuse values the change",
                 w->seconds);
        s.comment = comment;
        serve_profile(c, &s, w->kind);
    } else {
        hp_http_respond_text(c, 500, "could not take a snapshot: %s\n", strerror(-r));
    }
    hp_snapshot_release(&s);
}

/* A live leak check's time limit: a big heap in exact mode, read by a
 * clone at the lowest priority on one CPU, can take minutes. */
enum { LEAK_LIMIT_MS = 600000 };

static void leaks_failed(struct hp_http_conn *c, struct window *w, int err)
{
    char why[256];
    hp_leakcheck_why(why, sizeof why, err, &w->rc);
    hp_http_respond_text(c, 500, "Could not run the leak check: %s\n", why);
    window_free(w);
}

/* Starts the window's next check: 0, or answers the error. */
static int leaks_start(struct hp_http_conn *c, struct window *w)
{
    int r = hp_reach_start(&w->rc, true);
    if (r) {
        leaks_failed(c, w, r);
        return r;
    }
    w->checking = true;
    memset(&w->got, 0, sizeof w->got);
    w->leak_deadline = hp_mono_ms() + LEAK_LIMIT_MS;
    hp_http_wait_fd(c, LEAK_LIMIT_MS, w->rc.fd, w);
    return 0;
}

/* GET /debug/pprof/leaks: a leak check now (report/leakcheck.c), its
 * answer a heap profile with the leak label, or the leak summary
 * (?debug=1); with ?seconds=N, two checks N seconds apart and what became
 * lost between them. The clone runs while the server answers other
 * requests: the connection waits for the clone's pipe (hp_http_wait_fd),
 * as a window. */
static void serve_leaks(struct hp_http_conn *c, const char *query)
{
    char val[64];
    long debug = 0, seconds = 0;
    if (query && query_param(query, "debug", val, sizeof val))
        debug = strtol(val, NULL, 10);
    if (query && query_param(query, "seconds", val, sizeof val)) {
        if (!window_seconds(c, val, &seconds))
            return;
    }
    if (!hp_leakcheck_claim()) {
        hp_http_respond_text(c, 500,
                             "Could not run the leak check: a leak check is already running\n");
        return;
    }
    struct window *w = window_new(LEAKS, seconds);
    if (!w) {
        hp_leakcheck_release();
        hp_http_respond_text(c, 500, "out of memory\n");
        return;
    }
    w->debug = debug != 0;
    w->step = seconds ? LEAK_BASE : LEAK_CHECK;
    leaks_start(c, w);
}

/* The window's clone answered (or its wait ended): the next step. */
static void finish_leaks(struct hp_http_conn *c, struct window *w)
{
    if (!w->checking) { /* the wait between a delta's checks ended */
        w->step = LEAK_CHECK;
        leaks_start(c, w);
        return;
    }
    struct pollfd pf = {.fd = w->rc.fd, .events = POLLIN};
    if (hp_poll(&pf, 1, 0) <= 0) { /* the limit came, not the answer */
        leaks_failed(c, w, -ETIMEDOUT);
        return;
    }
    /* The answer is read as it comes: the server goes on answering others
     * between its pieces (a snapshot of many megabytes, from a clone at
     * the lowest priority). */
    int r = hp_reach_pump(&w->rc, &w->got);
    if (r == -EAGAIN) {
        int64_t left = w->leak_deadline - hp_mono_ms();
        if (left <= 0)
            leaks_failed(c, w, -ETIMEDOUT);
        else
            hp_http_wait_fd(c, left, w->rc.fd, w);
        return;
    }
    struct hp_snapshot s = w->got;
    memset(&w->got, 0, sizeof w->got);
    struct hp_reach_stats st;
    r = hp_reach_finish(&w->rc, &st, &s);
    w->checking = false;
    if (r) {
        hp_snapshot_release(&s);
        leaks_failed(c, w, r);
        return;
    }
    hp_leakcheck_note(&s, &st);
    if (w->step == LEAK_BASE) {
        w->base = s;
        w->step = LEAK_WAIT;
        hp_http_wait(c, w->seconds * 1000, w);
        return;
    }
    if (w->seconds)
        r = hp_leak_delta(&s, &w->base);
    if (r) {
        hp_http_respond_text(c, 500, "could not take the delta: %s\n", strerror(-r));
    } else if (w->debug) {
        struct hp_text t = {.a = &s.arena};
        hp_leakcheck_text(&t, &s, &st, w->seconds);
        if (t.oom)
            hp_http_respond_text(c, 500, "out of memory\n");
        else
            hp_http_respond(c, 200, "text/plain; charset=utf-8", NULL, t.p, t.len);
    } else {
        uint8_t *gz;
        size_t len;
        r = hp_leakcheck_encode(&s, w->seconds, &gz, &len);
        if (r)
            hp_http_respond_text(c, 500, "could not encode the profile: %s\n", strerror(-r));
        else
            hp_http_respond(c, 200, "application/octet-stream",
                            "Content-Disposition: attachment; filename=\"leaks\"\r\n", gz, len);
    }
    hp_snapshot_release(&s);
    window_free(w);
}

/* A thread profile made by render (report/goroutine.c): the pprof profile,
 * or with ?debug=N its text; a 500 that says what failed otherwise. */
static void serve_threads_profile(struct hp_http_conn *c, const char *query,
                                  int (*render)(struct hp_arena *, int, uint8_t **, size_t *),
                                  const char *name, const char *failed)
{
    char val[16];
    long debug = 0;
    if (query && query_param(query, "debug", val, sizeof val))
        debug = strtol(val, NULL, 10);
    struct hp_arena a = {0};
    uint8_t *body;
    size_t len;
    int r = render(&a, (int)debug, &body, &len);
    char extra[96];
    snprintf(extra, sizeof extra, "Content-Disposition: attachment; filename=\"%s\"\r\n", name);
    if (r)
        hp_http_respond_text(c, 500, "%s: %s\n", failed, strerror(-r));
    else if (debug)
        hp_http_respond(c, 200, "text/plain; charset=utf-8", NULL, body, len);
    else
        hp_http_respond(c, 200, "application/octet-stream", extra, body, len);
    hp_arena_release(&a);
}

/* GET /debug/pprof/goroutine and /debug/pprof/threads: every live thread's
 * stack, a profile or ?debug=1 / ?debug=2 text. */
static void serve_goroutine(struct hp_http_conn *c, const char *query)
{
    serve_threads_profile(c, query, hp_goroutine_render, "goroutine",
                          "could not read the threads' stacks");
}

/* GET /debug/pprof/threadcreate: where the live threads were created. */
static void serve_threadcreate(struct hp_http_conn *c, const char *query)
{
    serve_threads_profile(c, query, hp_threadcreate_render, "threadcreate",
                          "could not make the profile");
}

/* GET or POST /debug/pprof/symbol, as Go answers it: "num_symbols: 1",
 * then "0xADDR name" for each address of the '+'-separated list (in the
 * body of a POST, else in the query) that names a function. go tool pprof
 * asks here for the names of frames a profile leaves unnamed. */
static void serve_symbol(struct hp_http_conn *c, const char *query)
{
    size_t blen = 0;
    const char *body = hp_http_body(c, &blen);
    const char *list = body && blen ? body : query;
    size_t llen = list == body ? blen : list ? strlen(list) : 0;
    struct hp_arena a = {0};
    struct hp_text t = {.a = &a};
    hp_text_put(&t, "num_symbols: 1\n");
    struct hp_symbolizer *sym = llen ? hp_sym_open(&a) : NULL;
    for (size_t i = 0; i < llen && sym;) {
        size_t j = i;
        while (j < llen && list[j] != '+')
            j++;
        char word[32];
        size_t wl = j - i < sizeof word - 1 ? j - i : sizeof word - 1;
        memcpy(word, list + i, wl);
        word[wl] = 0;
        char *end;
        unsigned long long pc = strtoull(word, &end, 0); /* Go's ParseUint(word, 0, 64) */
        if (pc && end != word && (*end == 0 || *end == '\r' || *end == '\n')) {
            /* A profile's addresses are the call instructions themselves;
             * the symbolizer takes return addresses. */
            struct hp_symbolized fr;
            hp_sym_lookup(sym, (uintptr_t)pc + 1, UINT32_MAX, &fr);
            if (fr.nlines > 0 && fr.lines[0].function)
                hp_text_put(&t, "%#llx %s\n", pc, fr.lines[0].function);
        }
        i = j + 1;
    }
    if (sym)
        hp_sym_close(sym);
    if (t.oom)
        hp_http_respond_text(c, 500, "out of memory\n");
    else
        hp_http_respond(c, 200, "text/plain; charset=utf-8", NULL, t.p, t.len);
    hp_arena_release(&a);
}

/* ---- the mutex and block profiles (report/contention.c) ---- */

static size_t cont_count(enum hp_cont_kind kind)
{
    struct hp_cont_profile p;
    size_t n = hp_cont_snapshot(kind, &p) == 0 ? p.nstacks : 0;
    hp_arena_release(&p.arena);
    return n;
}

static void respond_cont(struct hp_http_conn *c, struct hp_cont_profile *p, int64_t start_ns,
                         bool text, const char *comment)
{
    struct hp_symbolizer *sym = hp_sym_open(&p->arena);
    const char *name = p->kind == HP_CONT_MUTEX ? "mutex" : "block";
    if (text) {
        size_t len = 0;
        char *body = hp_cont_text(p, sym, &len);
        if (body)
            hp_http_respond(c, 200, "text/plain; charset=utf-8", NULL, body, len);
        else
            hp_http_respond_text(c, 500, "out of memory\n");
    } else {
        uint8_t *gz;
        size_t len;
        int r = hp_cont_encode(p, sym, start_ns, comment, &gz, &len);
        char extra[128];
        snprintf(extra, sizeof extra, "Content-Disposition: attachment; filename=\"%s\"\r\n", name);
        if (r)
            hp_http_respond_text(c, 500, "could not encode the profile: %s\n", strerror(-r));
        else
            hp_http_respond(c, 200, "application/octet-stream", extra, gz, len);
    }
    hp_sym_close(sym);
}

/* GET /debug/pprof/mutex and block: the profile, its text (?debug=1), or a
 * delta over a window (?seconds=N). ?fraction=N (mutex) and ?rate=N
 * (block) set the sampling first, as heapprof_mutex_fraction and
 * heapprof_block_rate do. */
static void serve_cont(struct hp_http_conn *c, const char *query, enum profile_kind kind)
{
    char val[64];
    long debug = 0, seconds = 0;
    const char *knob = kind == MUTEX ? "fraction" : "rate";
    if (query && query_param(query, "debug", val, sizeof val))
        debug = strtol(val, NULL, 10);
    if (query && query_param(query, knob, val, sizeof val)) {
        char *end;
        long long v = strtoll(val, &end, 10);
        if (*end || end == val || v < 0 || v > (kind == MUTEX ? 1000000000LL : 1000000000000LL)) {
            hp_http_respond_text(c, 400, "bad %s: want a whole number, 0 for off\n", knob);
            return;
        }
        if (kind == MUTEX)
            __atomic_store_n(&hp_mutex_fraction, (int)v, __ATOMIC_RELAXED);
        else
            __atomic_store_n(&hp_block_rate, (int64_t)v, __ATOMIC_RELAXED);
    }
    if (query && query_param(query, "seconds", val, sizeof val)) {
        if (!window_seconds(c, val, &seconds))
            return;
        if (debug) {
            hp_http_respond_text(c, 400, "seconds= gives a delta profile, without debug=\n");
            return;
        }
    }
    enum hp_cont_kind ck = kind == MUTEX ? HP_CONT_MUTEX : HP_CONT_BLOCK;
    struct hp_cont_profile p;
    int r = hp_cont_snapshot(ck, &p);
    if (r) {
        hp_arena_release(&p.arena);
        hp_http_respond_text(c, 500, "could not take a snapshot: %s\n", strerror(-r));
        return;
    }
    if (seconds) {
        struct window *w = window_new(kind, seconds);
        if (!w) {
            hp_arena_release(&p.arena);
            hp_http_respond_text(c, 500, "out of memory\n");
            return;
        }
        w->cbase = p;
        w->start_ns = p.time_ns;
        hp_http_wait(c, seconds * 1000, w);
        return;
    }
    respond_cont(c, &p, hp_start_ns(), debug != 0, NULL);
    hp_arena_release(&p.arena);
}

static void serve_mutex(struct hp_http_conn *c, const char *query)
{
    serve_cont(c, query, MUTEX);
}

static void serve_block(struct hp_http_conn *c, const char *query)
{
    serve_cont(c, query, BLOCK);
}

static void finish_cont(struct hp_http_conn *c, struct window *w)
{
    struct hp_cont_profile p;
    int r = hp_cont_snapshot(w->cbase.kind, &p);
    if (r) {
        hp_http_respond_text(c, 500, "could not take a snapshot: %s\n", strerror(-r));
    } else {
        hp_cont_delta(&p, &w->cbase);
        char comment[96];
        snprintf(comment, sizeof comment, "heapprof delta over %ld s", w->seconds);
        respond_cont(c, &p, w->start_ns, false, comment);
    }
    hp_arena_release(&p.arena);
}

/* ---- what the server calls (http.h) ---- */

static const struct route {
    const char *path; /* after /debug/pprof */
    void (*serve)(struct hp_http_conn *c, const char *query);
} routes[] = {
    {"", serve_index},
    {"/", serve_index},
    {"/heap", serve_heap},
    {"/leaks", serve_leaks},
    {"/allocs", serve_allocs},
    {"/peak", serve_peak},
    {"/cmdline", serve_cmdline},
    {"/timeline", serve_timeline},
    {"/profile", serve_cpu},
    {"/goroutine", serve_goroutine},
    {"/threads", serve_goroutine},
    {"/threadcreate", serve_threadcreate},
    {"/symbol", serve_symbol},
    {"/mutex", serve_mutex},
    {"/block", serve_block},
    {"/trace", serve_trace},
};

static void request(struct hp_http_conn *c, const char *method, const char *path, const char *query)
{
    const char *prefix = "/debug/pprof";
    size_t pl = strlen(prefix);
    const struct route *r = NULL;
    if (!strncmp(path, prefix, pl))
        for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !r; i++)
            if (!strcmp(path + pl, routes[i].path))
                r = &routes[i];
    if (!r) {
        left_out(c, path, pl);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
        !(r->serve == serve_symbol && !strcmp(method, "POST"))) { /* Go's takes POST */
        static const char msg[] = "method not allowed: use GET or HEAD\n";
        hp_http_respond(c, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", msg,
                        sizeof msg - 1);
        return;
    }
    r->serve(c, query);
}

static void window_end(struct hp_http_conn *c, void *window)
{
    struct window *w = window;
    if (w->kind == MUTEX || w->kind == BLOCK) {
        finish_cont(c, w);
        window_free(w);
    } else if (w->kind == CPU) {
        finish_cpu(c); /* stops the profile */
        hp_free(w, sizeof *w);
    } else if (w->kind == TRACE) {
        finish_trace(c, w); /* stops the trace */
        hp_free(w, sizeof *w);
    } else if (w->kind == LEAKS) {
        finish_leaks(c, w); /* answers and frees it, or waits again */
    } else {
        finish_delta(c, w);
        window_free(w);
    }
}

static void window_drop(void *window)
{
    window_free(window);
}

const struct hp_http_routes hp_handlers = {
    .request = request,
    .window_end = window_end,
    .window_drop = window_drop,
};
