/* The library's life: start-up, fork, loading the reporting half, and the
 * exit. It calls every module's start, fork and child hooks; nothing calls
 * back into it but the entry points above it (src/interpose/, the public
 * API in record/api.c).
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
 * was loaded from, when first needed (record/reporting.c): here only for
 * the background thread, a CPU profile or a trace, else at exit. If either
 * is missing, one line says so and profiling is off; the program runs on.
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

/* Loading what CPU profiles need: once (hp_cpu_support). */
static pthread_mutex_t cpu_support_mu = PTHREAD_MUTEX_INITIALIZER;

static void fork_child(void)
{
    /* Only the forking thread exists here; it held every lock. */
    hp_mem_child();
    hp_live_child();
    hp_table_child();
    hp_labels_child();
    hp_loader_fork_child();
    hp_threads_child();
    hp_unwind_child();
    hp_regions_child();
    pthread_mutex_init(&cpu_support_mu, NULL);
    hp_process_child();
    hp_report_child();
    hp_sampler_child();
    hp_cont_child();
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
    /* What is said at exit (the leak summary, where the profile went) must
     * reach stderr in a program that closes it first, as coreutils do: an
     * exec'd ls is announced as a forked child is. */
    if ((!hp_cfg.leaks_off && !hp_cfg.leaks_path[0]) || hp_cfg.announce)
        hp_stderr_keep();
    hp_process_start();
    if (!hp_stack_init()) {
        __atomic_store_n(&hp_state, HP_STATE_OFF, __ATOMIC_RELEASE);
        hp_busy_end(was_busy);
        return;
    }
    /* The fast unwinder's tables and caches: within a quarter of the
     * ceiling, as the label sets take an eighth. */
    hp_unwind_init(hp_env("HEAPPROF_UNWIND"), hp_cfg.max_memory / 4);
    hp_table_init();
    hp_threads_init();
    hp_live_init(hp_cfg.rate <= 1);
    hp_peak_on = hp_cfg.peak || hp_cfg.http[0];
    if (hp_peak_on)
        hp_peak_init();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    hp_exit_reserve();
    __atomic_store_n(&hp_state, HP_STATE_ON, __ATOMIC_RELEASE);
    hp_busy_end(was_busy);
}

static void turn_off(void)
{
    __atomic_store_n(&hp_state, HP_STATE_OFF, __ATOMIC_RELEASE);
}

/* What CPU profiles need, loaded on first use when the heap profiler did
 * not load it (HEAPPROF unset): libunwind and the reporting half. Never
 * from a signal handler: from the constructor, or heapprof_cpu_start. */
int hp_cpu_support(void)
{
    pthread_mutex_t *mu = &cpu_support_mu;
    static int result = 1; /* 1: not tried yet */
    hp_mutex_lock(mu);
    if (result == 1) {
        bool was_busy = hp_busy_begin();
        if (!hp_stack_signal_ready() && !hp_stack_init())
            result = -ENOTSUP;
        else if (!hp_stack_signal_ready()) {
            hp_log("heapprof: libunwind has no unw_init_local2; no CPU profiles");
            result = -ENOTSUP;
        } else {
            result = hp_report_need(true) ? 0 : -ENOTSUP;
            if (result == 0)
                hp_exit_reserve();
        }
        hp_busy_end(was_busy);
    }
    pthread_mutex_unlock(mu);
    return result;
}

/* HEAPPROF_CPU: a CPU profile of the whole run, from here to exit. */
static void start_run_profile(void)
{
    const char *raw = hp_env("HEAPPROF_CPU");
    hp_cpu_set_not_root(raw && hp_parent_is_profiled("HEAPPROF_CPU", raw));
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

/* Before the other constructors of this object (a priority puts it first),
 * so that the configuration's lines come before any other. glibc passes
 * constructors main's arguments and environment. */
__attribute__((constructor(101))) static void config_startup(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv;
    hp_init(); /* the configuration, if nothing allocated yet */
    hp_config_startup(envp);
}

/* The background thread (HTTP, signal and interval snapshots) starts here,
 * not in hp_init: the first allocation can come before libc is ready to
 * create threads. */
__attribute__((constructor)) static void hp_constructor(void)
{
    hp_init();
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON) {
        /* The reporting half now only for the background thread (when
         * hp_agent_start, report/agent.c, would start it); else when first
         * needed (record/reporting.c). */
        bool agent = hp_cfg.http[0] || hp_cfg.snap_signal || hp_cfg.interval || hp_cfg.timeline ||
                     hp_cfg.leak_interval;
        if (!hp_report_find())
            turn_off();
        else if (agent && hp_report_need(true))
            hp_report->agent_start();
    }
    if (hp_cfg.cpu_path[0])
        start_run_profile();
    if (hp_cfg.trace_path[0]) {
        if (hp_cfg.announce)
            hp_stderr_keep();
        hp_cpu_support(); /* CPU samples, and the writer */
        hp_trace_run_start();
    }
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON || hp_cfg.cpu_path[0])
        hp_exit_signals_install();
}

/* At exit, after the program's atexit handlers and C++ static destructors
 * (those run before the shared objects' destructors), so what they free is
 * not reported as leaked: the exit files (record/exit.c). */
__attribute__((destructor)) static void at_exit_dump(void)
{
    hp_unwind_exit_report();
    hp_exit_run();
}
