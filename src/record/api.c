/* The public API (include/heapprof.h), all of it: whether profiling is on,
 * its rate, and profiles on demand (written by the reporting half).
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <stdio.h>

HEAPPROF_API bool heapprof_enabled(void)
{
    return __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON;
}

HEAPPROF_API long heapprof_rate(void)
{
    return heapprof_enabled() ? hp_cfg.rate : 0;
}

/* The public dumps: a relative path is taken from the current directory,
 * as the program's own file calls would take it. */
static int public_dump(const char *path, enum hp_dump_kind kind)
{
    if (!path || !*path)
        return -EINVAL;
    if (!heapprof_enabled())
        return -ENOTSUP;
    if (kind == HP_DUMP_PEAK && !hp_peak_on)
        return -ENOENT;
    char abs[4096];
    int r = hp_absolute_path(abs, sizeof abs, path);
    if (r)
        return r;
    const struct hp_report *rep = hp_report_need(true);
    return rep ? rep->dump_to(abs, kind, NULL) : -ENOTSUP;
}

HEAPPROF_API int heapprof_dump(const char *path)
{
    return public_dump(path, HP_DUMP_NOW);
}

HEAPPROF_API int heapprof_dump_peak(const char *path)
{
    return public_dump(path, HP_DUMP_PEAK);
}

HEAPPROF_API int heapprof_leak_check(const char *path, struct heapprof_leak_counts *counts)
{
    if (!heapprof_enabled() || !hp_report_need(true))
        return -ENOTSUP;
    /* Zeroed, not only written when there is a path: the check reads this
     * thread's stack from its own deepest frame up, and whatever an earlier
     * call left in these 4 KiB would be read as roots (a heap address there
     * kept a lost object reachable). */
    char abs[4096] = {0};
    if (path) {
        if (!*path)
            return -EINVAL;
        int r = hp_absolute_path(abs, sizeof abs, path);
        if (r)
            return r;
    }
    bool was = hp_busy_begin();
    int r = hp_report->leak_check(path ? abs : NULL, counts);
    hp_busy_end(was);
    return r;
}

HEAPPROF_API int heapprof_snapshot(void)
{
    if (!heapprof_enabled() || !hp_report_need(true))
        return -ENOTSUP;
    /* Numbered by the reporting half, which the signal and interval
     * snapshots share: one sequence. */
    return hp_report->snapshot();
}

HEAPPROF_API int heapprof_label_push(const char *key, const char *value)
{
    if (HP_TRACING())
        hp_trace_push(key, value);
    if (!heapprof_enabled())
        return 0;
    return hp_labels_push(key, value);
}

HEAPPROF_API void heapprof_label_pop(void)
{
    if (HP_TRACING())
        hp_trace_pop();
    if (heapprof_enabled())
        hp_labels_pop();
}

/* What a CPU profile or a trace into a file needs first: the path made
 * absolute into abs, the configuration (HEAPPROF_CPU_HZ) read if nothing
 * allocated yet, the reporting half and libunwind loaded if HEAPPROF did
 * not load them. 0 or -errno. */
static int sampler_file(const char *path, char abs[4096])
{
    if (!path || !*path)
        return -EINVAL;
    int r = hp_absolute_path(abs, 4096, path);
    if (r)
        return r;
    hp_init();
    return hp_cpu_support();
}

/* CPU profiles into a file. */
HEAPPROF_API int heapprof_cpu_start(const char *path)
{
    char abs[4096];
    int r = sampler_file(path, abs);
    if (r)
        return r;
    return hp_cpu_start(hp_cfg.cpu_hz > 0 ? hp_cfg.cpu_hz : HEAPPROF_DEFAULT_CPU_HZ, HP_CPU_API,
                        abs);
}

HEAPPROF_API int heapprof_cpu_stop(void)
{
    struct hp_cpu_profile p;
    int r = hp_cpu_stop(HP_CPU_API, &p);
    if (r)
        return r;
    r = hp_report ? hp_report->cpu_write(p.path, &p) : -ENOTSUP;
    hp_cpu_release(&p);
    return r;
}

HEAPPROF_API int heapprof_mutex_fraction(int n)
{
    if (n < 0)
        return __atomic_load_n(&hp_mutex_fraction, __ATOMIC_RELAXED);
    return __atomic_exchange_n(&hp_mutex_fraction, n, __ATOMIC_RELAXED);
}

HEAPPROF_API long heapprof_block_rate(long ns)
{
    if (ns < 0)
        return (long)__atomic_load_n(&hp_block_rate, __ATOMIC_RELAXED);
    return (long)__atomic_exchange_n(&hp_block_rate, (int64_t)ns, __ATOMIC_RELAXED);
}

/* Execution traces into a file (Chrome Trace Event JSON; gzipped when the
 * name ends in .gz): like the CPU profile's, with or without HEAPPROF. */
HEAPPROF_API int heapprof_trace_start(const char *path)
{
    char abs[4096];
    int r = sampler_file(path, abs);
    if (r)
        return r;
    return hp_trace_start(HP_TRACE_API, abs);
}

HEAPPROF_API int heapprof_trace_stop(void)
{
    struct hp_trace t;
    int r = hp_trace_stop(HP_TRACE_API, &t);
    if (r)
        return r;
    r = hp_report ? hp_report->trace_write(t.path, &t) : -ENOTSUP;
    hp_trace_release(&t);
    return r;
}
