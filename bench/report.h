/* What the C benchmarks report about their own timed loop, in one place:
 * wall seconds, the process's CPU seconds, and the peak resident set so far.
 *
 * CPU time is reported beside wall time because this machine is shared: CPU
 * time leaves out the time a run spends descheduled while other work runs,
 * which is noise, and keeps what the allocator and a profiler add, which is
 * the signal. The peak RSS is read before exit, so a profiler's exit dump
 * (which allocates to symbolize) is not in it; bench/run.py measures the
 * peak with the dump separately.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench_clock {
    double wall, cpu;
};

static inline double bench_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* cpu_clock: CLOCK_THREAD_CPUTIME_ID in a worker thread that times its own
 * loop, CLOCK_PROCESS_CPUTIME_ID in a single-threaded program. */
static inline struct bench_clock bench_now(clockid_t cpu_clock)
{
    struct bench_clock c = {bench_seconds(CLOCK_MONOTONIC), bench_seconds(cpu_clock)};
    return c;
}

/* VmHWM from /proc/self/status, in KiB; -1 when unreadable. Called after
 * the clock has stopped, so stdio's few allocations are not timed. */
static inline long bench_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            kib = atol(line + 6);
            break;
        }
    fclose(f);
    return kib;
}

/* One line for bench/run.py: key=value pairs. */
static inline void bench_report(double wall, double cpu, long ops, unsigned long long bytes)
{
    long hwm = bench_hwm_kib();
    printf("seconds=%.6f cpu_seconds=%.6f ops=%ld bytes=%llu hwm_kib=%ld\n", wall, cpu, ops, bytes,
           hwm);
}

#endif
