/* Execution traces: what each thread did, and when, over a window of time:
 * its CPU samples with their stacks, the label scopes it entered and left
 * (heapprof_label_push/pop), its creation, renames and exit, the blocking
 * calls it waited in, and the sampled allocations and frees that move the
 * heap's estimated in-use bytes. The reporting half writes them as Chrome's
 * Trace Event JSON (report/trace_json.c).
 *
 * Cost. Outside a trace every hook pays one load and one predictable
 * branch (HP_TRACING), nothing more. During one, each thread appends to a
 * buffer of its own: no lock and no shared write, but at most one atomic
 * add on a counter per 64 KiB written (the budget).
 *
 * Buffers. A thread takes a slot (one of MAX_SLOTS, numbered by an atomic
 * counter) at its first event in a trace, remembered with the trace's
 * generation in initial-exec TLS, so a thread that outlives a trace takes a
 * fresh slot in the next one. A slot's buffer is an anonymous mapping of
 * SLOT_BYTES, whose pages cost nothing until written; what all buffers
 * write is bounded by the budget, half of HEAPPROF_MAX_MEMORY (64 MiB by
 * default, whether HEAPPROF is set or not). Past it, or past MAX_SLOTS
 * threads, or past a slot's end, events are dropped and counted, and the
 * trace says how many.
 *
 * Signals. The CPU handler appends to the buffer of the thread it
 * interrupts, which may be in the middle of appending itself: space is
 * claimed with an atomic add on the slot's length (atomic with respect to
 * a signal on the same thread), then filled, so the two never overlap.
 * A slot counts the appends under way (`writing`); stopping a trace clears
 * hp_trace_on, then waits for every slot's count to reach zero, so the
 * buffers it hands out are whole. An append increments the count before it
 * checks that the trace runs (sequentially consistent on both sides): it
 * either sees the trace stopped, or is waited for.
 *
 * CPU samples come from the CPU profiler's per-thread timers (cpu.c), run
 * at TRACE_HZ at least while a trace runs, shared with a CPU profile that
 * runs meanwhile (the profile keeps its own rate's share). Threads created
 * during a trace go through heapprof's pthread_create (start and exit
 * events).
 *
 * fork: an event in the parent (its fork handler); the child is not in the
 * trace (its buffers are its parent's, which writes them). exec: an event
 * from the exec hooks (interpose/exec.c), and a trace for a file is written
 * there, since the new image has none of this one's memory.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    MAX_SLOTS = 1024,
    TRACE_HZ = 1000,
    BUDGET_STEP = 64 << 10,
};
#define SLOT_BYTES ((size_t)32 << 20)

struct slot {
    int writing; /* appends under way */
    bool ready;  /* buf mapped, tid and name set */
    int tid;
    char name[16];
    int64_t short_waits; /* hp_trace_blocked's, by this thread only */
    /* Frees not yet written: their estimated bytes, the last one's time,
     * and when the last HP_TEV_FREE went out (hp_trace_free). */
    int64_t freed, freed_ts, freed_out;
    uint8_t *buf;
    size_t len; /* claimed, atomically */
    size_t cap;
    char pad[64];
};
static struct slot slots[MAX_SLOTS];
static int nslots;

static uint32_t gen = 1;
static int owner;    /* enum hp_trace_owner; also while held (stopped, not released) */
static bool held;    /* stopped, its buffers with the reporting half */
static bool own_cpu; /* the trace asked for CPU samples */
static int cpu_hz;
static int profile_hz;     /* a CPU profile's rate at the start or the end */
static uint32_t profiles0; /* CPU profiles started before the trace */
static pid_t trace_pid;    /* the process tracing (hp_trace_exec) */
static size_t budget, used;
static int64_t dropped;
static int64_t start_ns, start_real_ns;
static double heap_base;
static char path_of[4096];
static size_t threads_bytes;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static HP_TLS struct {
    uint32_t gen;
    int idx;
} tt;

static int gettid_raw(void)
{
    return (int)syscall(SYS_gettid);
}

/* Async-signal-safe: the calling thread's slot, counted as writing; NULL
 * when no trace runs or no slot is left. */
static struct slot *enter(void)
{
    uint32_t g = __atomic_load_n(&gen, __ATOMIC_ACQUIRE);
    struct slot *s;
    if (HP_LIKELY(tt.gen == g)) {
        if (tt.idx < 0)
            return NULL; /* no slot for this thread in this trace */
        s = &slots[tt.idx];
        __atomic_add_fetch(&s->writing, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&hp_trace_on, __ATOMIC_SEQ_CST) &&
            __atomic_load_n(&gen, __ATOMIC_SEQ_CST) == g)
            return s;
        __atomic_sub_fetch(&s->writing, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    if (!__atomic_load_n(&hp_trace_on, __ATOMIC_SEQ_CST))
        return NULL;
    int idx = __atomic_fetch_add(&nslots, 1, __ATOMIC_SEQ_CST);
    tt.gen = g;
    tt.idx = -1;
    if (idx >= MAX_SLOTS) {
        __atomic_add_fetch(&dropped, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    s = &slots[idx];
    __atomic_add_fetch(&s->writing, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&hp_trace_on, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&gen, __ATOMIC_SEQ_CST) != g) {
        __atomic_sub_fetch(&s->writing, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    s->buf = hp_os_map(SLOT_BYTES); /* mmap: async-signal-safe */
    if (!s->buf) {
        __atomic_sub_fetch(&s->writing, 1, __ATOMIC_RELEASE);
        __atomic_add_fetch(&dropped, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    s->cap = SLOT_BYTES;
    s->len = 0;
    s->short_waits = 0;
    s->freed = s->freed_ts = s->freed_out = 0;
    s->tid = gettid_raw();
    if (syscall(SYS_prctl, PR_GET_NAME, s->name, 0, 0, 0) != 0)
        s->name[0] = 0;
    s->name[15] = 0;
    __atomic_store_n(&s->ready, true, __ATOMIC_RELEASE);
    tt.idx = idx;
    return s;
}

static void leave(struct slot *s)
{
    __atomic_sub_fetch(&s->writing, 1, __ATOMIC_RELEASE);
}

/* Room for an event of len bytes (header included) in s; NULL when the
 * slot or the budget is full (the event is counted as dropped). */
static struct hp_tev *claim(struct slot *s, size_t len)
{
    len = (len + 7) & ~(size_t)7;
    size_t off = __atomic_fetch_add(&s->len, len, __ATOMIC_RELAXED);
    if (off + len > s->cap) {
        __atomic_add_fetch(&dropped, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    if (off / BUDGET_STEP != (off + len) / BUDGET_STEP) {
        size_t u = __atomic_add_fetch(&used, (size_t)BUDGET_STEP, __ATOMIC_RELAXED);
        if (u > budget) {
            /* This slot is done: what it wrote stays, it writes no more.
             * The claimed space becomes a padding event. */
            __atomic_store_n(&s->cap, off, __ATOMIC_RELAXED);
            __atomic_add_fetch(&dropped, 1, __ATOMIC_RELAXED);
            return NULL;
        }
    }
    struct hp_tev *e = (struct hp_tev *)(s->buf + off);
    e->size = (uint16_t)len;
    return e;
}

static void put(enum hp_tev_kind kind, int32_t a, int64_t v, int64_t w, const uintptr_t *ips, int n,
                const char *text, int64_t ts)
{
    struct slot *s = enter();
    if (!s)
        return;
    if (n > HP_MAX_FRAMES)
        n = HP_MAX_FRAMES;
    if (n < 0)
        n = 0;
    size_t tl = text ? strlen(text) + 1 : 0;
    if (tl > 512)
        tl = 512;
    struct hp_tev *e = claim(s, sizeof *e + (size_t)n * sizeof *ips + tl);
    if (e) {
        e->ts = ts ? ts : hp_mono_ns();
        e->kind = (uint8_t)kind;
        e->n = (uint8_t)n;
        e->a = a;
        e->v = v;
        e->w = w;
        uintptr_t *p = (uintptr_t *)(e + 1);
        if (n)
            memcpy(p, ips, (size_t)n * sizeof *ips);
        if (tl) {
            char *t = (char *)(p + n);
            memcpy(t, text, tl - 1);
            t[tl - 1] = 0;
        }
    }
    leave(s);
}

/* ---- what the hooks call, during a trace only ---- */

void hp_trace_cpu_sample(const uintptr_t *ips, int depth)
{
    put(HP_TEV_SAMPLE, 0, 0, 0, ips, depth, NULL, 0);
}

void hp_trace_push(const char *key, const char *value)
{
    char kv[HEAPPROF_LABEL_KEY_MAX + HEAPPROF_LABEL_VALUE_MAX + 2];
    snprintf(kv, sizeof kv, "%s=%s", key ? key : "", value ? value : "");
    put(HP_TEV_PUSH, 0, 0, 0, NULL, 0, kv, 0);
}

void hp_trace_pop(void)
{
    put(HP_TEV_POP, 0, 0, 0, NULL, 0, NULL, 0);
}

void hp_trace_event(enum hp_tev_kind kind, int32_t a, const char *text)
{
    if (kind == HP_TEV_RENAME && a == gettid_raw() && text) {
        struct slot *s = enter();
        if (s) {
            snprintf(s->name, sizeof s->name, "%s", text);
            leave(s);
        }
    }
    put(kind, a, 0, 0, NULL, 0, text, 0);
}

void hp_trace_alloc(void *const *ips, int depth, uint64_t size)
{
    double est = (double)size * hp_unbias_scale(size, hp_cfg.rate);
    put(HP_TEV_ALLOC, 0, (int64_t)size, (int64_t)est, (const uintptr_t *)ips, depth, NULL, 0);
}

/* Frees only move the in-use counter, which the trace draws at most once a
 * millisecond: a thread sums its frees and writes one event for them at
 * most once a millisecond (the rest at the trace's end), where an event
 * for each was as many events as allocations, half a trace's volume. */
enum { FREE_STEP_NS = 1000000 };

/* The frees the slot gathered, as one event at ts; false when it is full. */
static bool put_freed(struct slot *s, int64_t ts)
{
    struct hp_tev *e = claim(s, sizeof *e);
    if (!e)
        return false;
    e->ts = ts;
    e->kind = HP_TEV_FREE;
    e->n = 0;
    e->a = 0;
    e->v = 0;
    e->w = s->freed;
    s->freed = 0;
    return true;
}

void hp_trace_free(uint64_t size)
{
    struct slot *s = enter();
    if (!s)
        return;
    int64_t now = hp_mono_ns();
    s->freed += (int64_t)((double)size * hp_unbias_scale(size, hp_cfg.rate));
    s->freed_ts = now;
    if (now - s->freed_out >= FREE_STEP_NS && put_freed(s, now))
        s->freed_out = now;
    leave(s);
}

/* At the end, with no writer left: each thread's frees not yet written. */
static void frees_out(struct slot *s)
{
    if (s->freed)
        put_freed(s, s->freed_ts);
}

/* A call that returned within HP_TRACE_MIN_WAIT_NS did not leave the CPU
 * for long enough to matter (a wake-up alone takes microseconds), and a
 * server's reads of ready sockets (redis-server's, tens of thousands a
 * second) would otherwise each be an event and an unwind. They are
 * counted, per thread, and the trace says how many. */
void hp_trace_blocked(const char *call, int64_t start, int64_t end)
{
    /* A wait inside heapprof's own work (libunwind's locks while it
     * unwinds) is not the program's, and unwinding it would take the lock
     * again. */
    if (!HP_TRACING() || end < start || hp_thread.busy)
        return;
    if (end - start < HP_TRACE_MIN_WAIT_NS) {
        struct slot *s = enter();
        if (s) {
            s->short_waits++;
            leave(s);
        }
        return;
    }
    /* The stack that blocked: the hook's caller at the leaf. */
    void *ips[HP_MAX_FRAMES];
    bool was = hp_busy_begin();
    int n = hp_stack_capture(ips, HP_MAX_FRAMES);
    hp_busy_end(was);
    put(HP_TEV_BLOCKED, 0, end - start, 0, (const uintptr_t *)ips, n, call ? call : "?", start);
}

bool hp_trace_wrap_threads(void)
{
    return HP_TRACING() && !hp_thread.busy;
}

/* ---- starting and stopping ---- */

/* The heap's estimated in-use bytes now, from the stack table. */
static double heap_now(void)
{
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) != HP_STATE_ON)
        return 0;
    uint32_t n = hp_table_inuse(NULL, 0);
    double total = 0;
    for (int tries = 0; tries < 4 && n; tries++) {
        size_t sz = (size_t)(n + 64) * sizeof(double);
        double *b = hp_alloc(sz);
        if (!b)
            return 0;
        uint32_t m = hp_table_inuse(b, n + 64);
        if (m <= n + 64) {
            for (uint32_t i = 0; i < m; i++)
                total += b[i];
            hp_free(b, sz);
            return total;
        }
        hp_free(b, sz);
        n = m;
    }
    return total;
}

static void fork_prepare(void)
{
    if (HP_TRACING())
        put(HP_TEV_FORK, 0, 0, 0, NULL, 0, NULL, 0);
}

static void init_once(void)
{
    pthread_atfork(fork_prepare, NULL, hp_trace_child);
}

/* The caller loaded what CPU samples need (hp_cpu_support), or not: then
 * the trace has no CPU samples. */
int hp_trace_start(enum hp_trace_owner who, const char *path)
{
    pthread_once(&once, init_once);
    __atomic_store_n(&hp_cpu_tap, hp_trace_cpu_sample, __ATOMIC_RELEASE);
    bool was = hp_busy_begin();
    hp_mutex_lock(&mu);
    if (owner || held) {
        pthread_mutex_unlock(&mu);
        hp_busy_end(was);
        return -EBUSY;
    }
    size_t mm = hp_cfg.max_memory ? (size_t)hp_cfg.max_memory : (size_t)64 << 20;
    budget = mm / 2;
    used = 0;
    dropped = 0;
    nslots = 0;
    for (int i = 0; i < MAX_SLOTS; i++) {
        slots[i].ready = false;
        slots[i].buf = NULL;
        slots[i].len = 0;
    }
    snprintf(path_of, sizeof path_of, "%s", path ? path : "");
    heap_base = heap_now();
    start_ns = hp_mono_ns();
    start_real_ns = hp_now_ns();
    __atomic_store_n(&trace_pid, (pid_t)syscall(SYS_getpid), __ATOMIC_RELAXED);
    owner = who;
    __atomic_add_fetch(&gen, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&hp_trace_on, 1, __ATOMIC_SEQ_CST);
    /* CPU samples: the sampler's timers at TRACE_HZ at least, shared with
     * a CPU profile that runs or starts meanwhile (cpu.c). */
    int last_hz;
    profiles0 = hp_cpu_profiles(&profile_hz, &last_hz);
    int c = hp_cpu_trace(TRACE_HZ);
    own_cpu = c > 0;
    cpu_hz = c > 0 ? c : 0;
    pthread_mutex_unlock(&mu);
    hp_busy_end(was);
    return 0;
}

/* Names of threads still alive, as they are now. */
static void name_now(struct hp_trace_thread *t)
{
    char p[64], buf[32];
    snprintf(p, sizeof p, "/proc/self/task/%d/comm", t->tid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = hp_read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    buf[sizeof t->name - 1] = 0;
    memcpy(t->name, buf, sizeof t->name);
}

int hp_trace_stop(enum hp_trace_owner who, struct hp_trace *out)
{
    memset(out, 0, sizeof *out);
    bool was = hp_busy_begin();
    hp_mutex_lock(&mu);
    if (!owner || held) {
        pthread_mutex_unlock(&mu);
        hp_busy_end(was);
        return -ENOENT;
    }
    if (who != HP_TRACE_ANY && who != (enum hp_trace_owner)owner) {
        pthread_mutex_unlock(&mu);
        hp_busy_end(was);
        return -EBUSY;
    }
    int hz_now, last_hz;
    uint32_t profiles = hp_cpu_profiles(&hz_now, &last_hz);
    if (own_cpu)
        hp_cpu_trace(0);
    if (!profile_hz && profiles != profiles0)
        profile_hz = last_hz; /* one started during the trace */
    __atomic_store_n(&hp_trace_on, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < MAX_SLOTS; i++)
        while (__atomic_load_n(&slots[i].writing, __ATOMIC_SEQ_CST))
            sched_yield();
    held = true;
    out->owner = (enum hp_trace_owner)owner;
    out->start_ns = start_ns;
    out->end_ns = hp_mono_ns();
    out->start_real_ns = start_real_ns;
    out->cpu_hz = cpu_hz;
    out->cpu_profile_hz = profile_hz;
    out->heap = __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON;
    out->heap_base = heap_base;
    out->rate = hp_cfg.rate;
    out->budget = budget;
    out->dropped = __atomic_load_n(&dropped, __ATOMIC_RELAXED);
    snprintf(out->path, sizeof out->path, "%s", path_of);
    int n = nslots < MAX_SLOTS ? nslots : MAX_SLOTS;
    threads_bytes = (size_t)(n ? n : 1) * sizeof *out->threads;
    out->threads = hp_alloc(threads_bytes);
    for (int i = 0; out->threads && i < n; i++) {
        struct slot *s = &slots[i];
        if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
            continue;
        frees_out(s);
        struct hp_trace_thread *t = &out->threads[out->nthreads++];
        t->tid = s->tid;
        memcpy(t->name, s->name, sizeof t->name);
        name_now(t);
        t->data = s->buf;
        out->short_waits += s->short_waits;
        t->len = s->len < s->cap ? s->len : s->cap;
    }
    pthread_mutex_unlock(&mu);
    hp_busy_end(was);
    return 0;
}

void hp_trace_release(struct hp_trace *t)
{
    hp_mutex_lock(&mu);
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (slots[i].buf)
            hp_os_unmap(slots[i].buf, SLOT_BYTES);
        slots[i].buf = NULL;
        slots[i].ready = false;
    }
    if (t->threads)
        hp_free(t->threads, threads_bytes);
    t->threads = NULL;
    held = false;
    owner = HP_TRACE_NONE;
    pthread_mutex_unlock(&mu);
}

/* path with tag before its .json or .gz (t.json.gz: t.TAG.json.gz), or
 * after it, so that the writer still sees the .gz it gzips for. */
static void with_tag(char *out, size_t len, const char *path, const char *tag)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *ext = strstr(base, ".json");
    size_t pl = strlen(path);
    if (!ext && pl > 3 && !strcmp(path + pl - 3, ".gz"))
        ext = path + pl - 3;
    if (!ext)
        ext = path + pl;
    int n = snprintf(out, len, "%.*s.%s%s", (int)(ext - path), path, tag, ext);
    if (n < 0 || (size_t)n >= len)
        snprintf(out, len, "%s", path); /* too long: the name as it was */
}

static void with_pid(char *out, size_t len, const char *path)
{
    char tag[24];
    snprintf(tag, sizeof tag, "%ld", (long)getpid());
    with_tag(out, len, path, tag);
}

void hp_trace_exec(const char *what)
{
    /* A vfork child (Python's subprocess, a shell's) shares this memory and
     * thread and execs: that is not this process's exec, and stopping the
     * trace there would take its buffers from under the parent. */
    if (!HP_TRACING() ||
        (pid_t)syscall(SYS_getpid) != __atomic_load_n(&trace_pid, __ATOMIC_RELAXED))
        return;
    put(HP_TEV_EXEC, 0, 0, 0, NULL, 0, what ? what : "?", 0);
    hp_mutex_lock(&mu);
    int o = owner;
    bool h = held;
    pthread_mutex_unlock(&mu);
    /* A trace for the endpoint goes with the image: its client is served
     * by this image's server thread, which the exec ends too. */
    if ((o != HP_TRACE_RUN && o != HP_TRACE_API) || h || !hp_report)
        return;
    struct hp_trace t;
    if (hp_trace_stop((enum hp_trace_owner)o, &t) != 0)
        return;
    /* The name gets "PID.exec": the new program, if it runs under heapprof
     * with the same HEAPPROF_TRACE, writes its own trace to the name (or,
     * not the tree's root, to the name with its pid, the same pid). */
    char path[sizeof t.path], tag[32];
    snprintf(tag, sizeof tag, "%ld.exec", (long)getpid());
    const char *base = strrchr(t.path, '/');
    char pidtag[24];
    snprintf(pidtag, sizeof pidtag, ".%ld.", (long)getpid());
    if (strstr(base ? base : t.path, pidtag))
        snprintf(tag, sizeof tag, "exec"); /* t.PID.json: t.PID.exec.json */
    with_tag(path, sizeof path, t.path, tag);
    int r = hp_report->trace_write(path, &t);
    if (r == 0 && hp_cfg.announce)
        hp_log("heapprof: wrote the trace %s (before exec)", path);
    hp_trace_release(&t);
}

/* ---- the whole run, and the exit ---- */

static void *run_timer_main(void *arg)
{
    (void)arg;
    hp_busy_begin(); /* for good */
    hp_cpu_own_thread();
    int64_t end = hp_mono_ns() + (int64_t)hp_cfg.trace_seconds * 1000000000;
    for (;;) {
        int64_t left = end - hp_mono_ns();
        if (left <= 0)
            break;
        struct timespec ts = {left / 1000000000, left % 1000000000};
        hp_nanosleep(&ts, NULL);
    }
    struct hp_trace t;
    if (hp_trace_stop(HP_TRACE_RUN, &t) == 0) {
        int r = hp_report ? hp_report->trace_write(t.path, &t) : -ENOTSUP;
        if (r == 0 && hp_cfg.announce)
            hp_log("heapprof: wrote the trace %s", t.path);
        hp_trace_release(&t);
    }
    return NULL;
}

void hp_trace_run_start(void)
{
    if (!hp_cfg.trace_path[0])
        return;
    if (!hp_report) {
        hp_log("heapprof: the reporting half is not loaded; no trace");
        return;
    }
    /* A process started by one that traces to the same name (a child it
     * forked and exec'd, a program it ran) adds its pid, as profiles do:
     * the names would otherwise overwrite each other at exit. */
    char path[sizeof hp_cfg.trace_path];
    const char *raw = hp_env("HEAPPROF_TRACE");
    if (raw && hp_parent_is_profiled("HEAPPROF_TRACE", raw))
        with_pid(path, sizeof path, hp_cfg.trace_path);
    else
        snprintf(path, sizeof path, "%s", hp_cfg.trace_path);
    int r = hp_trace_start(HP_TRACE_RUN, path);
    if (r) {
        hp_log("heapprof: cannot start the trace: %s", strerror(-r));
        return;
    }
    if (hp_cfg.trace_seconds > 0) {
        bool was = hp_busy_begin();
        if (hp_thread_spawn(run_timer_main, "heapprof-trace") != 0)
            hp_log("heapprof: cannot start the trace's timer thread; the trace runs until exit");
        hp_busy_end(was);
    }
}

void hp_trace_exit(void)
{
    struct hp_trace t;
    if (hp_trace_stop(HP_TRACE_ANY, &t) != 0)
        return;
    if ((t.owner == HP_TRACE_RUN || t.owner == HP_TRACE_API) && hp_report) {
        int r = hp_report->trace_write(t.path, &t);
        if (r == 0 && hp_cfg.announce)
            hp_log("heapprof: wrote the trace %s", t.path);
    }
    hp_trace_release(&t);
}

void hp_trace_child(void)
{
    /* The buffers are the parent's to write; the child takes no part. */
    pthread_mutex_init(&mu, NULL);
    __atomic_store_n(&hp_trace_on, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (slots[i].buf)
            hp_os_unmap(slots[i].buf, SLOT_BYTES);
        slots[i].buf = NULL;
        slots[i].ready = false;
        slots[i].writing = 0;
    }
    owner = HP_TRACE_NONE;
    held = false;
    own_cpu = false;
}
