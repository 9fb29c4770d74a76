/* CPU profiles: which code the program's threads spend their CPU time in,
 * sampled as Go's runtime does since Go 1.18 on Linux.
 *
 * Sampling. Each thread gets its own POSIX timer on its own CPU-time clock
 * (timer_create, SIGEV_THREAD_ID), delivering SIGPROF to that thread after
 * every 1/HZ second of CPU it uses (HEAPPROF_CPU_HZ, 100 by default). A
 * process-wide setitimer(ITIMER_PROF) would instead deliver to whichever
 * thread the kernel picks and under-samples busy threads (golang/go#35057):
 * it is only the fallback, when per-thread timers cannot be made (or with
 * HEAPPROF_CPU_TIMER=process). Each timer's first expiry is drawn uniformly
 * in (0, period], as Go does, so that short-lived threads are sampled in
 * proportion to their CPU time, not never.
 *
 * A profile and an execution trace share the timers. A trace wants 1 kHz,
 * a profile its own rate (100 Hz by default): the timers run at the higher
 * of the two (re-armed when either starts or stops), every sample goes to
 * the trace (hp_cpu_tap), and the profile keeps each thread's samples in
 * the proportion of its rate to the timer's (take_sample), so its counts
 * are in its own periods and its values stay CPU time. Each timer's signal
 * carries its rate, so a signal from a timer about to be re-armed is
 * weighed at the rate it was set to. Go instead refuses a second CPU
 * consumer; here both answer, and the trace says a profile shared it.
 *
 * Which threads. At the start of a profile, every thread of the process is
 * found in /proc/self/task and gets a timer on its clock, named from its
 * thread id as the kernel encodes a thread CPU clock: ((~tid) << 3) | 6
 * (CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED; glibc's pthread_getcpuclockid makes
 * the same). Threads created while a profile runs are caught by heapprof's
 * pthread_create, which wraps their start routine: the new thread makes its
 * own timer on CLOCK_THREAD_CPUTIME_ID before running the program's code,
 * and deletes it when it exits (a thread-specific key's destructor, which
 * runs on return, pthread_exit and cancellation alike). Interposing
 * pthread_create was chosen over hooking a thread's first allocation: a
 * thread that burns CPU without allocating must be sampled too. A thread
 * that was found in /proc and exits during the profile leaves its timer
 * behind until the profile stops; the kernel ties a timer to the thread
 * itself (not to its number), so such a timer never fires again, on that
 * thread or on one that reuses its id. heapprof's own threads (the HTTP
 * agent, the drain thread below) are not profiled.
 *
 * The handler only takes the stack of the interrupted code (libunwind, from
 * the signal's context: record/stack.c) into a slot of a preallocated ring
 * (a bounded multi-producer queue with a sequence number per slot). Where
 * unwinding is not safe (below), it keeps only the leaf, the interrupted
 * address read from the signal's context, and counts such samples: the
 * profile's totals and its flat shares stay right, only their callers are
 * missing. It drops a sample only when the ring is full. It allocates nothing, takes no lock, and
 * calls only async-signal-safe functions and libunwind's local unwinder (which takes its own locks
 * with every signal blocked, so it cannot be interrupted while holding one). A background thread
 * drains the ring every 25 ms into a table of stacks and counts (heapprof's own memory, bounded:
 * past MAX_TABLE_BYTES new stacks are counted under [other]).
 *
 * How the handler avoids deadlock, wherever the signal lands:
 * - in malloc (the program's, or glibc's arena locks held): the handler never
 *   allocates, so it never waits for those locks;
 * - in heapprof itself while it works (the heap sampler's unwinding, a dump,
 *   the profile writer): those run with the thread's busy mark set, and a
 *   sample landing there keeps only its leaf, since libunwind's caches and
 *   heapprof's loader guard are not reentrant (heapprof's own cost then
 *   shows in the profile, under its own functions);
 * - in libunwind (the program's own use, which shares heapprof's instance)
 *   or in the dynamic loader (ld.so's lists may be half-updated): the
 *   interrupted address is checked against their code ranges, and the
 *   sample keeps only its leaf;
 * - inside a fork: unwinding reads the loader's list under glibc's loader
 *   lock, and a child must not inherit it held. The handler takes heapprof's
 *   loader guard only with a try that never waits (a fork may be running on
 *   this very thread), and takes only the leaf when a fork is under way;
 * - inside anything that takes glibc's loader write lock, which libunwind
 *   takes again through dl_iterate_phdr: that lock is recursive, but its
 *   owner is set only after it is taken and cleared before it is released,
 *   so a signal landing in between would wait for its own thread. dlopen and
 *   dlclose (heapprof's, around the real ones, hold its loader guard) and
 *   dl_iterate_phdr (interposed, cpu_hooks.c, with a thread-local depth)
 *   are the ways in; a sample landing inside one keeps only its leaf.
 *
 * SIGPROF belongs to the program when it wants it. A profile does not start
 * if the program already handles SIGPROF (500 from the endpoint, -EPERM from
 * the API, one line for HEAPPROF_CPU). If the program installs a SIGPROF
 * disposition while heapprof's handler is installed (heapprof's sigaction
 * and signal), heapprof stops its timers before the program's handler goes
 * in, says so in one line, and never takes SIGPROF again in this process;
 * the profile running then keeps the samples taken so far.
 *
 * Harmless: the handler is installed with SA_RESTART, and left installed
 * after a profile (it ignores signals that are not its timers'), so that a
 * timer signal still pending after a profile stops cannot take the
 * default action and end the program. A thread that blocks SIGPROF gets its
 * signal when it unblocks it (one pending per timer). A forked child has no
 * timers (the kernel does not copy them) and no drain thread; it starts its
 * own profile, into a file with its pid in the name, only when it profiles
 * the whole run (HEAPPROF_CPU). exec deletes timer_create timers.
 */
#define _GNU_SOURCE
#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum {
    RING_SLOTS = 1024, /* a power of two */
    DRAIN_MS = 25,
    MAX_OWN = 8,
    MAX_OVERRUN = 3, /* at 100 Hz: 30 ms; see take_sample */
    MAX_DELAY_MS = 30,
};
#define MAX_TABLE_BYTES ((size_t)16 << 20)

/* glibc's real sigaction, called directly (heapprof's own sigaction,
 * cpu_hooks.c, stands in front of it for the program). */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/* ---- the ring: written by the handler, read by the drain thread ---- */

struct slot {
    uint64_t seq;    /* pos + 1 when the slot holds sample pos; pos + RING_SLOTS once read */
    int32_t depth;   /* 0: a sample dropped after its slot was taken */
    uint32_t weight; /* periods it stands for: 1 + overruns (take_sample) */
    uintptr_t ips[HP_MAX_FRAMES];
};
static struct slot *ring;
static uint64_t ring_head; /* next position to claim (handlers) */
static uint64_t ring_tail; /* next position to read (drain, under table_mu) */

/* ---- session state ---- */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;   /* timers, session */
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER; /* the stack table, the ring's tail */
static pthread_mutex_t drain_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t drain_cv = PTHREAD_COND_INITIALIZER;

static int session;  /* enum hp_cpu_owner: who started the running profile */
static int sampling; /* timers armed: the handler takes samples */
static int inflight; /* handlers running now */
static bool process_timer;
static int session_hz; /* the profile's rate, as asked */
/* One sampler serves a CPU profile and an execution trace at once: the
 * timers run at the higher of the two rates (timer_hz), every sample goes
 * to the trace, and the profile keeps a share keep_hz/timer_hz of them
 * (take_sample), so its counts stay in its own periods. */
static int timer_hz;      /* the timers' rate; 0: none armed */
static int keep_hz;       /* the profile's rate; 0: no profile */
static int trace_hz;      /* the trace's rate; 0: no trace */
static uint32_t keep_gen; /* profiles started: threads' shares restart */
static int64_t session_start_ns;
static char session_path[4096];
static int64_t dropped;
static int64_t leaf_only;   /* samples with only their leaf frame */
static bool yielded;        /* the program took SIGPROF: never again */
static int yield_todo;      /* timers to delete after a yield (drain thread) */
static bool installed;      /* heapprof's handler is SIGPROF's */
static pid_t installed_pid; /* in this process (see hp_cpu_sigprof_set) */
static bool session_yielded;
static bool drainer_running;
static bool run_not_root; /* HEAPPROF_CPU's file gets a pid */
static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint64_t rng[4];

/* Timers, by thread id. */
struct treg {
    UT_hash_handle hh;
    int tid;
    timer_t timer;
    int64_t cpu0; /* the thread's CPU time when its timer was made */
};
static struct treg *timers;

static pid_t own_tids[MAX_OWN];
static int n_own;

/* The stack table. */
struct entry {
    UT_hash_handle hh;
    int64_t count;
    uint32_t epoch;
    int depth;
    uintptr_t ips[];
};
static struct entry *table;
static size_t table_bytes;
static bool table_folded;

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* ---- the handler ---- */

/* A running execution trace's copy of each sample (record/trace.c sets it:
 * a pointer, so that this file does not call up into the trace). */
void (*hp_cpu_tap)(const uintptr_t *ips, int depth);

/* Each thread's share of the samples for the profile, when the timers run
 * faster than the profile asked (a trace runs beside it): an accumulator of
 * profile periods in units of 1/timer_hz, as Bresenham draws a line, so
 * that a thread's kept samples are its timer periods times keep/rate to
 * within one sample. It starts at a random phase per thread and profile: a
 * thread that runs fewer than rate/keep periods is then kept with
 * probability in proportion to its CPU time, not never. */
static HP_TLS struct {
    uint32_t gen;
    uint64_t acc;
} share;

/* overrun: the timer's expiries since the signal was queued that got no
 * signal of their own (it was still pending). A signal delayed by a few
 * periods (the thread preempted between the expiry and the delivery, which
 * happens on a loaded machine) stands for them too: up to MAX_OVERRUN more
 * periods are added to this sample. A longer delay means the thread had
 * SIGPROF blocked: that time is not charged to wherever it unblocked it,
 * and is counted as dropped. rate: the timer's (from its signal's value),
 * which differs from keep_hz only while a trace runs. */
static void take_sample(void *uc, int overrun, int rate)
{
    uint32_t periods = 1;
    int lost = 0;
    int keep = __atomic_load_n(&keep_hz, __ATOMIC_SEQ_CST);
    if (rate <= 0)
        rate = keep > 0 ? keep : 100;
    if (overrun > 0) {
        /* A delay of MAX_DELAY_MS, whatever the rate: the kernel checks a
         * thread's CPU timers at its clock tick (4 ms at HZ=250), so at a
         * trace's 1 kHz every signal stands for about four periods. */
        int max = rate * MAX_DELAY_MS / 1000;
        if (max < MAX_OVERRUN)
            max = MAX_OVERRUN;
        int extra = overrun < max ? overrun : max;
        periods += (uint32_t)extra;
        lost = overrun - extra;
    }
    uint32_t weight = 0; /* in the profile's periods */
    if (keep > 0) {
        uint32_t g = __atomic_load_n(&keep_gen, __ATOMIC_RELAXED);
        if (HP_UNLIKELY(share.gen != g)) {
            share.gen = g;
            share.acc = (uint64_t)hp_mono_ns() * 0x9e3779b97f4a7c15ull % (uint64_t)rate;
        }
        uint64_t acc = share.acc + (uint64_t)periods * (uint64_t)keep;
        weight = (uint32_t)(acc / (uint64_t)rate);
        share.acc = acc % (uint64_t)rate;
        if (lost) /* rounded up: a part of a period is still a period lost */
            __atomic_add_fetch(&dropped, ((int64_t)lost * keep + rate - 1) / rate,
                               __ATOMIC_RELAXED);
    }
    void (*tap)(const uintptr_t *, int) =
        HP_TRACING() ? __atomic_load_n(&hp_cpu_tap, __ATOMIC_ACQUIRE) : NULL;
    if (!weight && !tap)
        return;
    /* Where unwinding is not safe (see the top of this file), the sample
     * keeps only its leaf, read from the signal's context. */
    bool guarded = !hp_thread.busy && !hp_in_dl_iterate && hp_loader_try_enter();
    /* The unwinding below is heapprof's: libunwind's own locks, which go
     * through heapprof's lock hooks, are not the program's waits (a trace
     * timing one would unwind again, into the lock this thread holds). Set
     * directly, not through hp_busy_begin: the interrupted code sees the
     * value it left. */
    bool was_busy = hp_thread.busy;
    hp_thread.busy = true;
    struct slot *s = NULL;
    uint64_t pos = __atomic_load_n(&ring_head, __ATOMIC_RELAXED);
    while (weight) {
        s = &ring[pos & (RING_SLOTS - 1)];
        uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (__atomic_compare_exchange_n(&ring_head, &pos, pos + 1, true, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                break;
        } else if (dif < 0) {
            /* Full: the drain thread is behind. */
            __atomic_add_fetch(&dropped, weight, __ATOMIC_RELAXED);
            s = NULL;
            break;
        } else {
            pos = __atomic_load_n(&ring_head, __ATOMIC_RELAXED);
        }
    }
    if (s || tap) {
        uintptr_t mine[HP_MAX_FRAMES];
        uintptr_t *ips = s ? s->ips : mine;
        bool partial = false;
        int depth = hp_stack_signal(uc, ips, HP_MAX_FRAMES, !guarded, &partial);
        if (tap)
            tap(ips, depth);
        if (s) {
            s->depth = depth;
            s->weight = weight;
            __atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
            if (partial)
                __atomic_add_fetch(&leaf_only, weight, __ATOMIC_RELAXED);
        }
    }
    hp_thread.busy = was_busy;
    if (guarded)
        hp_loader_leave();
}

static void on_sigprof(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    int saved = errno;
    __atomic_add_fetch(&inflight, 1, __ATOMIC_SEQ_CST);
    /* Only the timers' signals: SI_TIMER from timer_create, SI_KERNEL from
     * setitimer. Any other SIGPROF (a kill) is ignored. */
    if (__atomic_load_n(&sampling, __ATOMIC_SEQ_CST) && si &&
        si->si_code == (process_timer ? SI_KERNEL : SI_TIMER))
        take_sample(uc, si->si_overrun,
                    process_timer ? __atomic_load_n(&timer_hz, __ATOMIC_RELAXED)
                                  : si->si_value.sival_int);
    __atomic_sub_fetch(&inflight, 1, __ATOMIC_RELEASE);
    errno = saved;
}

/* ---- the stack table (table_mu held) ---- */

static void count_stack(const uintptr_t *ips, int depth, uint32_t weight)
{
    size_t keylen = (size_t)depth * sizeof *ips;
    struct entry *e;
    HASH_FIND(hh, table, ips, keylen, e);
    if (!e) {
        static const uintptr_t other[1] = {HP_OTHER_IP};
        size_t size = sizeof *e + keylen;
        if (table_bytes + size > MAX_TABLE_BYTES) {
            /* Bounded: new stacks go under [other]. */
            table_folded = true;
            ips = other;
            depth = 1;
            keylen = sizeof *ips;
            size = sizeof *e + keylen;
            HASH_FIND(hh, table, ips, keylen, e);
        }
        if (!e) {
            e = hp_alloc(size);
            if (!e) {
                __atomic_add_fetch(&dropped, weight, __ATOMIC_RELAXED);
                return;
            }
            e->depth = depth;
            e->epoch = __atomic_load_n(&hp_dl_epoch, __ATOMIC_RELAXED);
            memcpy(e->ips, ips, keylen);
            HASH_ADD_KEYPTR(hh, table, e->ips, keylen, e);
            if (!e->hh.tbl) {
                hp_free(e, size);
                __atomic_add_fetch(&dropped, weight, __ATOMIC_RELAXED);
                return;
            }
            table_bytes += size;
        }
    }
    e->count += weight;
}

static void drain(void)
{
    if (!ring)
        return;
    for (;;) {
        uint64_t pos = ring_tail;
        struct slot *s = &ring[pos & (RING_SLOTS - 1)];
        if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != pos + 1)
            break; /* empty, or a handler still writing it */
        if (s->depth > 0)
            count_stack(s->ips, s->depth, s->weight);
        else
            __atomic_add_fetch(&dropped, s->weight, __ATOMIC_RELAXED);
        __atomic_store_n(&s->seq, pos + RING_SLOTS, __ATOMIC_RELEASE);
        ring_tail = pos + 1;
    }
}

static void table_clear(void)
{
    struct entry *e, *tmp;
    HASH_ITER(hh, table, e, tmp)
    {
        HASH_DEL(table, e);
        hp_free(e, sizeof *e + (size_t)e->depth * sizeof e->ips[0]);
    }
    table = NULL;
    table_bytes = 0;
    table_folded = false;
}

/* ---- timers (reg_mu held) ---- */

static int timer_for(int tid, bool self, timer_t *out)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGPROF;
    ev.sigev_value.sival_int = timer_hz; /* the handler learns each signal's rate */
#ifdef sigev_notify_thread_id
    ev.sigev_notify_thread_id = tid;
#else
    ev._sigev_un._tid = tid;
#endif
    clockid_t clock = self ? CLOCK_THREAD_CPUTIME_ID : (clockid_t)(((~(uint32_t)tid) << 3) | 6u);
    if (timer_create(clock, &ev, out) != 0)
        return -errno;
    long period = 1000000000L / timer_hz;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_interval.tv_sec = period / 1000000000L;
    its.it_interval.tv_nsec = period % 1000000000L;
    long first = 1 + (long)(hp_rng_next(rng) % (uint64_t)period);
    its.it_value.tv_sec = first / 1000000000L;
    its.it_value.tv_nsec = first % 1000000000L;
    if (timer_settime(*out, 0, &its, NULL) != 0) {
        int e = errno;
        timer_delete(*out);
        return -e;
    }
    return 0;
}

static clockid_t thread_clock(int tid)
{
    return (clockid_t)(((~(uint32_t)tid) << 3) | 6u);
}

/* A thread's CPU time (any thread of this process), or -1 if it is gone. */
static int64_t thread_cpu_ns(int tid)
{
    struct timespec ts;
    if (clock_gettime(thread_clock(tid), &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether thread tid blocks SIGPROF now (its SigBlk in /proc). Such a
 * thread never gets its timer's signal: libraries that create their threads
 * with every signal blocked (liblzma's, some thread pools) cannot be
 * sampled by any signal, and the profile says how much CPU they used. */
static bool blocks_sigprof(int tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    struct hp_arena a = {0};
    const char *text = hp_read_file(&a, path, NULL);
    const char *p = text ? strstr(text, "\nSigBlk:") : NULL;
    bool blocked = false;
    if (p) {
        unsigned long long mask = strtoull(p + 8, NULL, 16);
        blocked = mask >> (SIGPROF - 1) & 1;
    }
    hp_arena_release(&a);
    return blocked;
}

static bool is_own(int tid)
{
    for (int i = 0; i < n_own; i++)
        if (own_tids[i] == tid)
            return true;
    return false;
}

/* reg_mu held: thread tid's timer, if it has one, deleted. */
static void disarm_thread(int tid)
{
    struct treg *t;
    HASH_FIND_INT(timers, &tid, t);
    if (t) {
        timer_delete(t->timer);
        HASH_DEL(timers, t);
        hp_free(t, sizeof *t);
    }
}

/* One timer for thread tid at timer_hz (replacing any it had, whose start
 * of CPU time it keeps: a change of rate is not a new profile). */
static int arm_thread(int tid, bool self)
{
    if (is_own(tid))
        return 0;
    int64_t cpu0 = -2;
    struct treg *old;
    HASH_FIND_INT(timers, &tid, old);
    if (old)
        cpu0 = old->cpu0;
    disarm_thread(tid);
    struct treg *t = hp_alloc(sizeof *t);
    if (!t)
        return -ENOMEM;
    int r = timer_for(tid, self, &t->timer);
    if (r) {
        hp_free(t, sizeof *t);
        return r;
    }
    t->tid = tid;
    t->cpu0 = cpu0 != -2 ? cpu0 : thread_cpu_ns(tid);
    HASH_ADD_INT(timers, tid, t);
    if (!t->hh.tbl) {
        timer_delete(t->timer);
        hp_free(t, sizeof *t);
        return -ENOMEM;
    }
    return 0;
}

/* Threads that blocked SIGPROF when they exited during this profile (under
 * reg_mu): see count_blocked. */
static int gone_blocked_threads;
static int64_t gone_blocked_cpu;

/* At the end of a profile: the threads that block SIGPROF, and the CPU
 * they used since their timer was made, which no sample could show. */
static void count_blocked(int *threads, int64_t *cpu)
{
    *threads += gone_blocked_threads;
    *cpu += gone_blocked_cpu;
    struct treg *t, *tmp;
    HASH_ITER(hh, timers, t, tmp)
    {
        int64_t now = thread_cpu_ns(t->tid);
        if (now < 0 || t->cpu0 < 0 || !blocks_sigprof(t->tid))
            continue;
        ++*threads;
        *cpu += now - t->cpu0;
    }
}

static void disarm_all(void)
{
    struct treg *t, *tmp;
    HASH_ITER(hh, timers, t, tmp)
    {
        timer_delete(t->timer);
        HASH_DEL(timers, t);
        hp_free(t, sizeof *t);
    }
    timers = NULL;
    if (process_timer) {
        struct itimerval off;
        memset(&off, 0, sizeof off);
        setitimer(ITIMER_PROF, &off, NULL);
    }
}

/* Every thread now in the process; false when per-thread timers cannot be
 * made here at all (then the caller falls back to setitimer). */
static bool arm_all(void)
{
    int self = my_tid();
    int r = arm_thread(self, true);
    if (r == -ENOSYS || r == -EPERM || r == -EINVAL || r == -ENOTSUP) {
        hp_log("heapprof: per-thread CPU timers are not available (%s); using setitimer",
               strerror(-r));
        return false;
    }
    DIR *d = opendir("/proc/self/task");
    if (!d) {
        hp_log("heapprof: cannot list the threads in /proc/self/task (%s); using setitimer",
               strerror(errno));
        disarm_all();
        return false;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        if (*end || tid <= 0 || tid == self)
            continue;
        arm_thread((int)tid, false); /* a thread gone meanwhile: EINVAL, skipped */
    }
    closedir(d);
    return true;
}

/* reg_mu held: the timers at the rate the profile and the trace want
 * (the higher), armed, re-armed or disarmed. 0 or -errno. */
static void wait_creators(void);

static int retime(void)
{
    int want = keep_hz > trace_hz ? keep_hz : trace_hz;
    if (__atomic_load_n(&yielded, __ATOMIC_ACQUIRE))
        want = 0; /* the timers are gone (yield_sigprof) */
    if (want == timer_hz)
        return 0;
    if (!want) {
        __atomic_store_n(&sampling, 0, __ATOMIC_SEQ_CST);
        disarm_all();
        __atomic_store_n(&timer_hz, 0, __ATOMIC_RELAXED);
        while (__atomic_load_n(&inflight, __ATOMIC_SEQ_CST))
            sched_yield();
        return 0;
    }
    bool starting = !timer_hz;
    __atomic_store_n(&timer_hz, want, __ATOMIC_RELAXED);
    if (starting) {
        process_timer = hp_cfg.cpu_process_timer;
        __atomic_store_n(&sampling, 1, __ATOMIC_SEQ_CST);
        if (!process_timer)
            wait_creators();
        if (!process_timer && !arm_all())
            process_timer = true;
    } else if (!process_timer) {
        arm_all(); /* each thread's timer replaced at the new rate */
    }
    if (process_timer) {
        long period = 1000000000L / want;
        struct itimerval it;
        it.it_interval.tv_sec = period / 1000000000L;
        it.it_interval.tv_usec = (period % 1000000000L) / 1000;
        it.it_value = it.it_interval;
        if (setitimer(ITIMER_PROF, &it, NULL) != 0) {
            int e = errno;
            __atomic_store_n(&sampling, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&timer_hz, 0, __ATOMIC_RELAXED);
            return -e;
        }
    }
    return 0;
}

/* ---- threads ---- */

static void thread_gone(void *unused)
{
    (void)unused;
    int tid = my_tid();
    bool was = hp_busy_begin();
    sigset_t mine;
    bool blocked = pthread_sigmask(SIG_BLOCK, NULL, &mine) == 0 && sigismember(&mine, SIGPROF);
    hp_mutex_lock(&reg_mu);
    struct treg *t;
    HASH_FIND_INT(timers, &tid, t);
    if (t) {
        int64_t now = thread_cpu_ns(tid);
        if (blocked && now >= 0 && t->cpu0 >= 0) {
            gone_blocked_threads++;
            gone_blocked_cpu += now - t->cpu0;
        }
        timer_delete(t->timer);
        HASH_DEL(timers, t);
        hp_free(t, sizeof *t);
    }
    pthread_mutex_unlock(&reg_mu);
    hp_busy_end(was);
}

/* A new thread whose creator saw a profile, first thing: its timer (the
 * listing may have seen it too: arm_thread replaces). */
void hp_cpu_thread_begin(void)
{
    bool was = hp_busy_begin();
    hp_mutex_lock(&reg_mu);
    if (__atomic_load_n(&sampling, __ATOMIC_ACQUIRE) && !process_timer &&
        arm_thread(my_tid(), true) == 0)
        pthread_setspecific(exit_key, (void *)1);
    pthread_mutex_unlock(&reg_mu);
    hp_busy_end(was);
}

/* Calls of pthread_create between their look at `sampling` and the end of
 * the real call (interpose/threads.c). hp_cpu_start sets `sampling`, then
 * waits for this to reach zero before it lists the threads: a thread whose
 * creator saw no profile is then in /proc/self/task by the listing, and a
 * creator that comes later sees the profile and has its thread make its
 * own timer. (Deciding at pthread_create alone missed the threads created
 * just as a profile started: seen before, cloned after the listing.) */
static int creating;

bool hp_cpu_create_begin(void)
{
    __atomic_add_fetch(&creating, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&sampling, __ATOMIC_SEQ_CST) && !process_timer && !hp_thread.busy;
}

void hp_cpu_create_end(void)
{
    __atomic_sub_fetch(&creating, 1, __ATOMIC_RELEASE);
}

/* After `sampling` is set: the pthread_create calls under way end (they
 * wait for nothing of the profiler's; a pause of 50 us between looks). At
 * most 100 ms: a count left by a thread that a raw fork system call did
 * not copy (the atfork handler resets it) costs a missed thread, not a
 * hang. */
static void wait_creators(void)
{
    for (int i = 0; i < 2000 && __atomic_load_n(&creating, __ATOMIC_SEQ_CST); i++) {
        struct timespec pause = {0, 50000};
        hp_nanosleep(&pause, NULL);
    }
}

void hp_cpu_own_thread(void)
{
    int tid = my_tid();
    bool was = hp_busy_begin();
    hp_mutex_lock(&reg_mu);
    if (n_own < MAX_OWN && !is_own(tid))
        own_tids[n_own++] = tid;
    disarm_thread(tid);
    pthread_mutex_unlock(&reg_mu);
    hp_busy_end(was);
}

/* ---- the program's SIGPROF ---- */

/* The program is taking SIGPROF: stop sampling now, for good. Called from
 * the program's sigaction or signal (cpu_hooks.c), which may run in a signal
 * handler: the timers are deleted here if the lock is free, else by the
 * drain thread. */
static void yield_sigprof(void)
{
    if (__atomic_exchange_n(&yielded, true, __ATOMIC_ACQ_REL))
        return;
    bool was_sampling = __atomic_exchange_n(&sampling, 0, __ATOMIC_SEQ_CST);
    if (!was_sampling)
        return;
    session_yielded = true;
    hp_log("heapprof: the program installed its own SIGPROF handler; the CPU profile stops "
           "here (it keeps the samples taken so far)");
    if (pthread_mutex_trylock(&reg_mu) == 0) {
        disarm_all();
        pthread_mutex_unlock(&reg_mu);
    } else {
        __atomic_store_n(&yield_todo, 1, __ATOMIC_RELEASE);
    }
}

void hp_cpu_sigprof_set(const struct sigaction *act)
{
    if (!__atomic_load_n(&installed, __ATOMIC_ACQUIRE))
        return;
    /* A vfork child (Python's subprocess, posix_spawn) shares this memory
     * and resets every handler before it execs: that is not this process
     * taking SIGPROF, and the timers are not the child's. */
    if (getpid() != __atomic_load_n(&installed_pid, __ATOMIC_ACQUIRE))
        return;
    if (act && (act->sa_flags & SA_SIGINFO) && act->sa_sigaction == on_sigprof)
        return; /* the program putting back what it found */
    yield_sigprof();
}

/* reg_mu held. 0, or -EPERM when the program handles SIGPROF itself. */
static int install_handler(void)
{
    if (installed)
        return 0;
    struct sigaction old, sa;
    if (__sigaction(SIGPROF, NULL, &old) != 0)
        return -errno;
    bool custom = (old.sa_flags & SA_SIGINFO)
                      ? old.sa_sigaction != NULL
                      : (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN);
    if (custom) {
        __atomic_store_n(&yielded, true, __ATOMIC_RELEASE);
        return -EPERM;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (__sigaction(SIGPROF, &sa, NULL) != 0)
        return -errno;
    __atomic_store_n(&installed_pid, getpid(), __ATOMIC_RELEASE);
    __atomic_store_n(&installed, true, __ATOMIC_RELEASE);
    return 0;
}

/* ---- the drain thread ---- */

static void *drain_main(void *arg)
{
    hp_busy_begin(); /* for good */
    hp_cpu_own_thread();
    for (;;) {
        hp_mutex_lock(&drain_mu);
        while (!__atomic_load_n(&session, __ATOMIC_ACQUIRE) &&
               !__atomic_load_n(&timer_hz, __ATOMIC_ACQUIRE))
            hp_cond_wait(&drain_cv, &drain_mu);
        pthread_mutex_unlock(&drain_mu);
        struct timespec ts = {0, DRAIN_MS * 1000000L};
        hp_nanosleep(&ts, NULL);
        if (__atomic_exchange_n(&yield_todo, 0, __ATOMIC_ACQ_REL)) {
            hp_mutex_lock(&reg_mu);
            disarm_all();
            pthread_mutex_unlock(&reg_mu);
        }
        hp_mutex_lock(&table_mu);
        drain();
        pthread_mutex_unlock(&table_mu);
    }
    return arg;
}

/* reg_mu held; busy. */
static int drainer_start(void)
{
    if (drainer_running)
        return 0;
    int r = hp_thread_spawn(drain_main, "heapprof-cpu");
    if (r)
        return -r;
    drainer_running = true;
    return 0;
}

/* ---- fork ---- */

static bool fork_took_mem;

static void fork_prepare(void)
{
    hp_mutex_lock(&reg_mu);
    hp_mutex_lock(&table_mu);
    /* With the heap profiler on, its own handler (which runs after this
     * one) takes the memory lock. */
    fork_took_mem = __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) != HP_STATE_ON;
    if (fork_took_mem)
        hp_mem_lock();
}

static void fork_parent(void)
{
    if (fork_took_mem)
        hp_mem_unlock();
    pthread_mutex_unlock(&table_mu);
    pthread_mutex_unlock(&reg_mu);
}

static void fork_child(void)
{
    /* Only this thread is left; its parent's timers and drain thread are
     * not. */
    if (fork_took_mem)
        hp_mem_child();
    creating = 0; /* only this thread is left, and it is not in pthread_create */
    pthread_mutex_init(&reg_mu, NULL);
    pthread_mutex_init(&table_mu, NULL);
    pthread_mutex_init(&drain_mu, NULL);
    pthread_cond_init(&drain_cv, NULL);
    struct treg *t, *tmp;
    HASH_ITER(hh, timers, t, tmp)
    {
        HASH_DEL(timers, t);
        hp_free(t, sizeof *t);
    }
    timers = NULL;
    table_clear();
    if (ring)
        for (uint64_t i = 0; i < RING_SLOTS; i++)
            ring[i].seq = i;
    ring_head = ring_tail = 0;
    inflight = 0;
    n_own = 0;
    drainer_running = false;
    yield_todo = 0;
    int was = session;
    session = HP_CPU_NONE;
    sampling = 0;
    timer_hz = keep_hz = trace_hz = 0;
    if (process_timer) {
        struct itimerval off;
        memset(&off, 0, sizeof off);
        setitimer(ITIMER_PROF, &off, NULL); /* a child inherits none, but be sure */
    }
    run_not_root = true;
    installed_pid = getpid(); /* the handler is inherited */
    /* A whole-run profile goes on in the child, into its own file. */
    if (was == HP_CPU_RUN)
        hp_cpu_start(session_hz, HP_CPU_RUN, hp_cfg.cpu_path);
}

static void init_once(void)
{
    hp_rng_seed(rng, (uint64_t)hp_mono_ns() ^ ((uint64_t)getpid() << 32));
    if (pthread_key_create(&exit_key, thread_gone) != 0)
        hp_log("heapprof: cannot make a thread key; threads that exit during a CPU profile "
               "keep their timers until it ends");
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- starting and stopping ---- */

int hp_cpu_start(int hz, enum hp_cpu_owner owner, const char *path)
{
    if (hz <= 0)
        hz = HEAPPROF_DEFAULT_CPU_HZ;
    if (!hp_stack_signal_ready())
        return -ENOTSUP;
    bool was = hp_busy_begin();
    pthread_once(&once, init_once);
    hp_mutex_lock(&reg_mu);
    int r = 0;
    if (__atomic_load_n(&session, __ATOMIC_ACQUIRE))
        r = -EBUSY;
    else if (__atomic_load_n(&yielded, __ATOMIC_ACQUIRE))
        r = -EPERM;
    else
        r = install_handler();
    if (!r && !ring) {
        ring = hp_os_map(sizeof *ring * RING_SLOTS);
        if (!ring)
            r = -ENOMEM;
    }
    if (!r)
        r = drainer_start();
    if (!r) {
        /* No handler writes the ring now: keep_hz is 0 (hp_cpu_stop
         * waited for the handlers that saw it set). */
        for (uint64_t i = 0; i < RING_SLOTS; i++)
            ring[i].seq = i;
        ring_head = ring_tail = 0;
        __atomic_store_n(&dropped, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&leaf_only, 0, __ATOMIC_RELAXED);
        session_yielded = false;
        gone_blocked_threads = 0;
        gone_blocked_cpu = 0;
        session_hz = hz;
        session_start_ns = hp_now_ns();
        snprintf(session_path, sizeof session_path, "%s", path ? path : "");
        /* Timers a trace armed count the CPU of blocked threads from now. */
        struct treg *t, *tmp;
        HASH_ITER(hh, timers, t, tmp)
        t->cpu0 = thread_cpu_ns(t->tid);
        __atomic_add_fetch(&keep_gen, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&session, owner, __ATOMIC_RELEASE);
        __atomic_store_n(&keep_hz, hz, __ATOMIC_SEQ_CST);
        r = retime();
        if (r) {
            __atomic_store_n(&keep_hz, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&session, HP_CPU_NONE, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&reg_mu);
    if (!r) {
        hp_mutex_lock(&drain_mu);
        pthread_cond_signal(&drain_cv);
        pthread_mutex_unlock(&drain_mu);
    }
    hp_busy_end(was);
    return r;
}

int hp_cpu_trace(int hz)
{
    if (hz > 0 && !hp_stack_signal_ready())
        return -ENOTSUP;
    bool was = hp_busy_begin();
    pthread_once(&once, init_once);
    hp_mutex_lock(&reg_mu);
    int r = 0;
    if (hz <= 0) {
        __atomic_store_n(&trace_hz, 0, __ATOMIC_RELAXED);
        r = retime();
    } else if (__atomic_load_n(&yielded, __ATOMIC_ACQUIRE)) {
        r = -EPERM;
    } else {
        r = install_handler();
        if (!r)
            r = drainer_start();
        if (!r) {
            __atomic_store_n(&trace_hz, hz, __ATOMIC_RELAXED);
            r = retime();
            if (r)
                __atomic_store_n(&trace_hz, 0, __ATOMIC_RELAXED);
            else
                r = timer_hz;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    if (r > 0) {
        hp_mutex_lock(&drain_mu);
        pthread_cond_signal(&drain_cv);
        pthread_mutex_unlock(&drain_mu);
    }
    hp_busy_end(was);
    return r;
}

uint32_t hp_cpu_profiles(int *running_hz, int *last_hz)
{
    hp_mutex_lock(&reg_mu);
    *running_hz = keep_hz;
    *last_hz = session_hz;
    uint32_t n = keep_gen;
    pthread_mutex_unlock(&reg_mu);
    return n;
}

int hp_cpu_stop(enum hp_cpu_owner owner, struct hp_cpu_profile *out)
{
    memset(out, 0, sizeof *out);
    bool was = hp_busy_begin();
    hp_mutex_lock(&reg_mu);
    int cur = __atomic_load_n(&session, __ATOMIC_ACQUIRE);
    if (cur != (int)owner && owner != HP_CPU_ANY) {
        pthread_mutex_unlock(&reg_mu);
        hp_busy_end(was);
        return cur ? -EBUSY : -ENOENT;
    }
    if (!cur) {
        pthread_mutex_unlock(&reg_mu);
        hp_busy_end(was);
        return -ENOENT;
    }
    __atomic_store_n(&keep_hz, 0, __ATOMIC_SEQ_CST);
    count_blocked(&out->blocked_threads, &out->blocked_cpu_ns);
    /* Handlers that saw the profile on finish their slot first; those
     * that start now see it off (a trace may keep the timers running). */
    while (__atomic_load_n(&inflight, __ATOMIC_SEQ_CST))
        sched_yield();
    retime();
    out->owner = (enum hp_cpu_owner)cur;
    out->hz = session_hz;
    out->start_ns = session_start_ns;
    out->end_ns = hp_now_ns();
    out->process_timer = process_timer;
    out->yielded = session_yielded;
    snprintf(out->path, sizeof out->path, "%s", session_path);
    hp_mutex_lock(&table_mu);
    drain();
    out->folded = table_folded;
    out->nstacks = HASH_COUNT(table);
    out->stacks = hp_arena_alloc(&out->arena, (out->nstacks + 1) * sizeof *out->stacks);
    size_t i = 0;
    struct entry *e, *tmp;
    HASH_ITER(hh, table, e, tmp)
    {
        struct hp_cpu_stack *s =
            out->stacks
                ? hp_arena_alloc(&out->arena, sizeof *s + (size_t)e->depth * sizeof s->ips[0])
                : NULL;
        if (s) {
            s->count = e->count;
            s->epoch = e->epoch;
            s->depth = e->depth;
            memcpy(s->ips, e->ips, (size_t)e->depth * sizeof s->ips[0]);
            out->stacks[i++] = s;
            out->samples += e->count;
        } else {
            out->dropped += e->count;
        }
    }
    out->nstacks = i;
    table_clear();
    pthread_mutex_unlock(&table_mu);
    out->dropped += __atomic_exchange_n(&dropped, 0, __ATOMIC_RELAXED);
    out->leaf_only = __atomic_exchange_n(&leaf_only, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&session, HP_CPU_NONE, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_mu);
    hp_busy_end(was);
    return 0;
}

void hp_cpu_release(struct hp_cpu_profile *p)
{
    hp_arena_release(&p->arena);
}

bool hp_cpu_run_not_root(void)
{
    return run_not_root;
}

void hp_cpu_set_not_root(bool v)
{
    run_not_root = v;
}
