/* Start-up, the sampled path, fork and the exit dump.
 *
 * heapprof initialises itself on the first allocation or from its
 * constructor, whichever comes first: allocations happen before any
 * constructor runs. With HEAPPROF unset it only forwards: every thread's
 * countdown is set so that its slow path is never taken again, and nothing
 * more is loaded.
 *
 * With HEAPPROF set, more is loaded: libunwind at start-up
 * (record/stack.c), since the first allocations (a C++ runtime's emergency
 * pool, made before this object's constructor runs) need their stacks; and
 * the reporting half, libheapprof-report.so, from the directory this object
 * was loaded from (a build tree and an installed tree alike), in the
 * constructor: never at exit or in a signal handler. If either cannot be
 * loaded, one line says so and profiling is off; the program runs on.
 */
#define _GNU_SOURCE
#include "record.h"
#include "heapprof.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile int hp_state;
const struct hp_report *hp_report;
static int64_t start_ns;
/* True in a process that is not the root of the profiled process tree: a
 * forked child, or a program exec'd by a profiled process. Its profile gets
 * its pid in the name unless HEAPPROF already has %p. */
static bool not_root;
static void peak_init(void);
static void note_start(void);

/* A process exec'd by a profiled process inherits HEAPPROF (and
 * LD_PRELOAD): it must not overwrite its parent's profile. The parent's
 * environment as it was started is in /proc/PPID/environ; if it holds the
 * same HEAPPROF (or the relative path the parent made absolute for its
 * children: config.c), this process is a descendant. */
static bool parent_is_profiled(const char *name, const char *value)
{
    return hp_proc_environ_inherits(getppid(), name, value);
}

static void fork_prepare(void)
{
    hp_loader_fork_prepare();
    hp_labels_lock();
    hp_table_lock();
    hp_live_lock_all();
    hp_mem_lock();
}

static void fork_parent(void)
{
    hp_mem_unlock();
    hp_live_unlock_all();
    hp_table_unlock();
    hp_labels_unlock();
    hp_loader_fork_parent();
}

static void fork_child(void)
{
    /* Only the forking thread exists here; it held every lock. */
    hp_mem_child();
    hp_live_child();
    hp_table_child();
    hp_labels_child();
    hp_loader_fork_child();
    hp_threads_child();
    not_root = true;
    hp_sampler_child();
    if (hp_report)
        hp_report->agent_child();
}

void hp_init(void)
{
    int expected = HP_STATE_UNINIT;
    if (!__atomic_compare_exchange_n(&hp_state, &expected, HP_STATE_INITING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    bool was_busy = hp_busy_begin();
    hp_config_load();
    if (!hp_cfg.enabled) {
        __atomic_store_n(&hp_state, HP_STATE_OFF, __ATOMIC_RELEASE);
        hp_busy_end(was_busy);
        return;
    }
    start_ns = hp_now_ns();
    /* What is said at exit (the leak summary, where the profile went) must
     * reach stderr in a program that closes it first, as coreutils do: an
     * exec'd ls is announced as a forked child is. */
    if ((!hp_cfg.leaks_off && !hp_cfg.leaks_path[0]) || hp_cfg.announce)
        hp_stderr_keep();
    note_start();
    const char *raw = secure_getenv("HEAPPROF");
    not_root = raw && parent_is_profiled("HEAPPROF", raw);
    if (!hp_math_init() || !hp_stack_init()) {
        __atomic_store_n(&hp_state, HP_STATE_OFF, __ATOMIC_RELEASE);
        hp_busy_end(was_busy);
        return;
    }
    hp_table_init();
    hp_threads_init();
    hp_live_init(hp_cfg.rate <= 1);
    hp_peak_on = hp_cfg.peak || hp_cfg.http[0];
    if (hp_peak_on)
        peak_init();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    hp_exit_reserve();
    __atomic_store_n(&hp_state, HP_STATE_ON, __ATOMIC_RELEASE);
    hp_busy_end(was_busy);
}

/* The program as it started: its arguments (before it rewrites its title,
 * as servers do) and the path the user ran it by, a symlink included
 * (redis-server is a link to redis-check-rdb): profiles and the leak summary
 * name the program so, while symbols still come from the real file. */
static char *start_cmdline;
static size_t start_cmdline_len;
static char run_as[PATH_MAX];

static void note_start(void)
{
    struct hp_arena a = {0};
    size_t len = 0;
    const char *text = hp_read_file(&a, "/proc/self/cmdline", &len);
    if (text && len && (start_cmdline = hp_alloc(len + 1)) != NULL) {
        memcpy(start_cmdline, text, len);
        start_cmdline_len = len;
    }
    hp_arena_release(&a);
    if (!start_cmdline || !start_cmdline[0])
        return;
    const char *argv0 = start_cmdline;
    char candidate[PATH_MAX], real[PATH_MAX], exe[PATH_MAX];
    candidate[0] = 0;
    if (strchr(argv0, '/')) {
        if (hp_absolute_path(candidate, sizeof candidate, argv0) != 0)
            candidate[0] = 0;
    } else {
        /* As the shell found it: the first PATH entry that has it. */
        const char *path = getenv("PATH");
        while (path && *path && !candidate[0]) {
            const char *end = strchr(path, ':');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            int w = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)n, path, argv0);
            if (w <= 0 || (size_t)w >= sizeof candidate || candidate[0] != '/' ||
                access(candidate, X_OK) != 0)
                candidate[0] = 0;
            path = end ? end + 1 : NULL;
        }
    }
    if (candidate[0] && realpath(candidate, real) && realpath("/proc/self/exe", exe) &&
        !strcmp(real, exe) && strcmp(candidate, exe) != 0)
        snprintf(run_as, sizeof run_as, "%s", candidate);
}

const char *hp_start_cmdline(size_t *len)
{
    *len = start_cmdline_len;
    return start_cmdline;
}

const char *hp_run_as(void)
{
    return run_as[0] ? run_as : NULL;
}

bool hp_busy_begin(void)
{
    bool was = hp_thread.busy;
    if (!was)
        hp_thread.busy_mark = hp_thread.countdown;
    hp_thread.busy = true;
    return was;
}

void hp_busy_end(bool was)
{
    if (!was)
        hp_sampler_unbusy();
    hp_thread.busy = was;
}

static void turn_off(void)
{
    __atomic_store_n(&hp_state, HP_STATE_OFF, __ATOMIC_RELEASE);
}

/* The reporting half, beside this object: libheapprof-report.so.VERSION in
 * the directory this object was loaded from. */
static void load_report(void)
{
    Dl_info info;
    char path[4200];
    if (!dladdr((void *)load_report, &info) || !info.dli_fname || !strchr(info.dli_fname, '/')) {
        hp_log("heapprof: cannot find where libheapprof is loaded from; profiling is off");
        turn_off();
        return;
    }
    const char *slash = strrchr(info.dli_fname, '/');
    int n = snprintf(path, sizeof path, "%.*s/libheapprof-report.so.%s",
                     (int)(slash - info.dli_fname), info.dli_fname, HEAPPROF_VERSION);
    void *h = n > 0 && (size_t)n < sizeof path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    const struct hp_report *r = h ? dlsym(h, HP_REPORT_SYMBOL) : NULL;
    if (!r) {
        hp_log("heapprof: cannot load the reporting half %s (%s); profiling is off", path,
               h ? "no entry table" : dlerror());
        turn_off();
        return;
    }
    hp_report = r;
}

/* What CPU profiles need, loaded on first use when the heap profiler did
 * not load it (HEAPPROF unset): libunwind and the reporting half. Never
 * from a signal handler: from the constructor, or heapprof_cpu_start. */
int hp_cpu_support(void)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int result = 1; /* 1: not tried yet */
    pthread_mutex_lock(&mu);
    if (result == 1) {
        bool was_busy = hp_busy_begin();
        if (!hp_stack_signal_ready() && !hp_stack_init())
            result = -ENOTSUP;
        else if (!hp_stack_signal_ready()) {
            hp_log("heapprof: libunwind has no unw_init_local2; no CPU profiles");
            result = -ENOTSUP;
        } else {
            if (!hp_report)
                load_report();
            result = hp_report ? 0 : -ENOTSUP;
            if (result == 0)
                hp_exit_reserve();
        }
        hp_busy_end(was_busy);
    }
    pthread_mutex_unlock(&mu);
    return result;
}

/* HEAPPROF_CPU: a CPU profile of the whole run, from here to exit. */
static void start_run_profile(void)
{
    const char *raw = secure_getenv("HEAPPROF_CPU");
    hp_cpu_set_not_root(raw && parent_is_profiled("HEAPPROF_CPU", raw));
    if (hp_cfg.announce)
        hp_stderr_keep(); /* as in hp_init */
    if (hp_cpu_support() != 0)
        return;
    int r = hp_cpu_start(hp_cfg.cpu_hz, HP_CPU_RUN, hp_cfg.cpu_path);
    if (r == -EPERM)
        hp_log("heapprof: the program handles SIGPROF itself; no CPU profile");
    else if (r)
        hp_log("heapprof: cannot start the CPU profile: %s", strerror(-r));
}

/* The background thread (HTTP, signal and interval snapshots) starts here,
 * not in hp_init: the first allocation can come before libc is ready to
 * create threads. */
__attribute__((constructor)) static void hp_constructor(void)
{
    hp_init();
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON) {
        bool was_busy = hp_busy_begin();
        load_report();
        hp_busy_end(was_busy);
        if (hp_report && __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON)
            hp_report->agent_start();
    }
    if (hp_cfg.cpu_path[0])
        start_run_profile();
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON || hp_cfg.cpu_path[0])
        hp_exit_signals_install();
}

/* Estimated in-use bytes, for peak tracking. Updated only on the sampled
 * path. A peak copy of the tables is taken when the estimate first exceeds
 * the last copy's level by 1/16: the copy kept is therefore within 1/17
 * (about 6%), and 1/64 per thread not yet gathered (below), below the true
 * peak of the estimate, and a program whose heap
 * grows from 1 MiB to 16 GiB takes at most about 230 copies (log(2^14) /
 * log(17/16)), each costing one pass over the buckets, instead of one copy
 * at every small new maximum. */
static int64_t inuse_est, peak_copied, peak_seen;
bool hp_peak_on;

static int64_t weight(uint64_t size)
{
    return (int64_t)((double)size * hp_unbias_scale(size, hp_cfg.rate));
}

/* Each thread gathers its changes to the estimate and adds them to the
 * shared one only once they reach 1/64 of the last copy's level either way,
 * so that threads do not all write one cache line at every sample once the
 * heap is large. The shared estimate then lags by less than 1/64 of the
 * peak per thread. */
static HP_TLS int64_t peak_pending;
static HP_TLS bool peak_key_set;
static pthread_key_t peak_key;
static bool peak_key_made;

/* At thread exit: what the thread gathered goes to the shared estimate,
 * or threads that come and go would make it drift. */
static void peak_flush(void *unused)
{
    (void)unused;
    __atomic_add_fetch(&inuse_est, peak_pending, __ATOMIC_RELAXED);
    peak_pending = 0;
}

static void peak_init(void)
{
    if (pthread_key_create(&peak_key, peak_flush) == 0)
        peak_key_made = true;
}

/* Adds (or with sign -1 takes away) one sampled object of size bytes to the
 * in-use estimate, and copies the tables when that sets a new peak. */
static void track(uint64_t size, int sign)
{
    if (!hp_peak_on)
        return; /* no shared write, nor the unbiasing's expm1, unless asked */
    int64_t delta = peak_pending + sign * weight(size);
    int64_t step = __atomic_load_n(&peak_copied, __ATOMIC_RELAXED) / 64;
    if (delta < step && delta > -step) {
        peak_pending = delta;
        if (HP_UNLIKELY(!peak_key_set) && peak_key_made) {
            peak_key_set = true;
            pthread_setspecific(peak_key, (void *)1);
        }
        return;
    }
    peak_pending = 0;
    int64_t now = __atomic_add_fetch(&inuse_est, delta, __ATOMIC_RELAXED);
    if (delta <= 0)
        return;
    int64_t seen = __atomic_load_n(&peak_seen, __ATOMIC_RELAXED);
    while (now > seen && !__atomic_compare_exchange_n(&peak_seen, &seen, now, true,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    int64_t copied = __atomic_load_n(&peak_copied, __ATOMIC_RELAXED);
    if (now > copied + copied / 16 &&
        __atomic_compare_exchange_n(&peak_copied, &copied, now, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        hp_peak_capture();
}

void hp_peak_levels(int64_t *seen, int64_t *copied)
{
    *seen = __atomic_load_n(&peak_seen, __ATOMIC_RELAXED);
    *copied = __atomic_load_n(&peak_copied, __ATOMIC_RELAXED);
}

void hp_on_alloc(void *p, size_t size)
{
    if (HP_UNLIKELY(__atomic_load_n(&hp_state, __ATOMIC_RELAXED) != HP_STATE_ON))
        return; /* turned off at start-up: see load_report */
    struct hp_thread *t = &hp_thread;
    int saved = errno;
    t->busy = true;
    void *ips[HP_MAX_FRAMES];
    int depth = hp_stack_capture(ips, HP_MAX_FRAMES);
    struct hp_live_rec rec = {hp_table_record(ips, depth, size, hp_labels_current()), size};
    if (rec.bucket && hp_live_insert(p, rec))
        track(size, 1);
    t->busy = false;
    errno = saved;
}

struct hp_live_rec hp_on_free(void *p)
{
    struct hp_live_rec rec = hp_live_remove(p);
    if (rec.bucket)
        track(rec.size, -1);
    return rec;
}

void hp_on_unfree(void *p, struct hp_live_rec rec)
{
    if (hp_live_insert(p, rec))
        track(rec.size, 1);
}

void hp_freeze_hold(void)
{
    hp_live_lock_all();
    hp_mem_lock();
}

void hp_freeze_release(void)
{
    hp_mem_unlock();
    hp_live_unlock_all();
}

pid_t hp_freeze_clone(void)
{
    /* No exit signal and no flags: a copy of the address space, as fork
     * makes, that the program's SIGCHLD handler and waitpid(-1) never see,
     * and without the atfork handlers. The child runs on a copy of this
     * thread's stack and returns from here. */
    pid_t pid = (pid_t)syscall(SYS_clone, 0UL, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        hp_mem_child();
        hp_live_child();
    }
    return pid;
}

pid_t hp_freeze_fork(void)
{
    hp_freeze_hold();
    pid_t pid = hp_freeze_clone();
    if (pid == 0)
        return 0;
    int saved = errno;
    hp_freeze_release();
    errno = saved;
    return pid;
}

int hp_process_path(char *out, size_t len)
{
    return hp_output_path(out, len, hp_cfg.path, not_root);
}

int hp_process_leaks_path(char *out, size_t len)
{
    int r = hp_output_path(out, len, hp_cfg.leaks_path, false);
    if (r == 0 && not_root && !hp_path_in_place(out))
        r = hp_output_path(out, len, hp_cfg.leaks_path, true);
    return r;
}

int64_t hp_start_ns(void)
{
    return start_ns;
}
