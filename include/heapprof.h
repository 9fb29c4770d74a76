/* heapprof: a sampling heap profiler that writes pprof profiles.
 *
 * Most programs need nothing from this header: link with -lheapprof (or
 * preload libheapprof.so) and set HEAPPROF=out.pb.gz. The functions below let
 * a program take profiles itself. They are safe to call when profiling is off
 * (HEAPPROF unset); they then report that with -ENOTSUP or false, but for
 * the label functions, which are no-ops then (push returns 0), so that a
 * program can label its code whether or not it is profiled.
 */
#ifndef HEAPPROF_H
#define HEAPPROF_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEAPPROF_VERSION_MAJOR 0
#define HEAPPROF_VERSION_MINOR 1
#define HEAPPROF_VERSION_PATCH 0
#define HEAPPROF_VERSION "0.1.0"

/* Defaults, defined once: the mean bytes between heap samples
 * (HEAPPROF_RATE) and the CPU samples per second of CPU time
 * (HEAPPROF_CPU_HZ). */
#define HEAPPROF_DEFAULT_RATE 524288
#define HEAPPROF_DEFAULT_CPU_HZ 100

#if defined(__GNUC__)
#define HEAPPROF_API __attribute__((visibility("default")))
#else
#define HEAPPROF_API
#endif

/* True when this process is recording allocations (HEAPPROF was set to a
 * usable path at start-up). */
HEAPPROF_API bool heapprof_enabled(void);

/* Writes the current heap profile (gzipped pprof, same shape as the exit
 * profile) to path, atomically: a temporary file in the same directory, then
 * rename. Returns 0, or a negative errno: -ENOTSUP when profiling is off,
 * -EINVAL for a NULL or empty path, or the error of the failing file
 * operation. */
HEAPPROF_API int heapprof_dump(const char *path);

/* Writes the in-use profile as it was when the estimated in-use bytes
 * peaked (within about 6% below the peak: see the README). Peak tracking is
 * on when HEAPPROF_PEAK=1 or HEAPPROF_HTTP is set; otherwise returns
 * -ENOENT, as it does before anything was sampled. */
HEAPPROF_API int heapprof_dump_peak(const char *path);

/* Writes a numbered snapshot beside the exit profile (out.pb.gz gives
 * out.0001.pb.gz, out.0002.pb.gz, ...), as HEAPPROF_SIGNAL and
 * HEAPPROF_INTERVAL do. Returns the snapshot's number (1, 2, ...) or a
 * negative errno. */
HEAPPROF_API int heapprof_snapshot(void);

/* The mean number of bytes between samples in force (1 = every allocation),
 * or 0 when profiling is off. */
HEAPPROF_API long heapprof_rate(void);

/* Labels on the heap samples of the calling thread, as Go's pprof.Do puts
 * them on CPU samples. Every sample also carries the label `thread`: the
 * allocating thread's name (pthread_setname_np, prctl(PR_SET_NAME)), or the
 * process's name for a thread never named.
 *
 * heapprof_label_push adds key=value (both copied) to the thread's labels:
 * allocations the thread makes from then on carry it, until the matching
 * heapprof_label_pop. A key already in force is shadowed by the new value
 * until then. Pushes nest; pop removes the most recent. Every push, even
 * one that failed, must be matched by one pop: a failed push changes
 * nothing but is counted, so that its pop is harmless and later pops still
 * remove the right labels.
 *
 * Returns 0, or: -EINVAL for a NULL or empty key or a NULL value;
 * -ENAMETOOLONG for a key longer than HEAPPROF_LABEL_KEY_MAX or a value
 * longer than HEAPPROF_LABEL_VALUE_MAX bytes; -ENOSPC past
 * HEAPPROF_LABELS_MAX labels held at once (or under a push that failed);
 * -ENOMEM. With profiling off both are no-ops and push returns 0. */
#define HEAPPROF_LABELS_MAX 16
#define HEAPPROF_LABEL_KEY_MAX 63
#define HEAPPROF_LABEL_VALUE_MAX 255
HEAPPROF_API int heapprof_label_push(const char *key, const char *value);
HEAPPROF_API void heapprof_label_pop(void);

/* CPU profiles (see the README, "CPU profiles"): heapprof_cpu_start starts
 * sampling every thread's stack at HEAPPROF_CPU_HZ (100 by default) per
 * second of CPU time it uses; heapprof_cpu_stop ends it and writes a gzipped
 * pprof CPU profile (as Go's) to the path given to start, atomically. They
 * work whether HEAPPROF is set or not. One profile runs at a time, in the
 * process: start returns -EBUSY while another runs (the HTTP endpoint's,
 * HEAPPROF_CPU's or an earlier start's), -EPERM when the program handles
 * SIGPROF itself, -ENOTSUP when libunwind or the reporting half cannot be
 * loaded, -EINVAL for a NULL or empty path. stop returns 0, -ENOENT when no
 * profile started by heapprof_cpu_start runs, or the error of writing the
 * file. A profile still running at exit is written then. */
HEAPPROF_API int heapprof_cpu_start(const char *path);
HEAPPROF_API int heapprof_cpu_stop(void);

/* The mutex and block profiles (/debug/pprof/mutex and block), as Go's
 * runtime.SetMutexProfileFraction and SetBlockProfileRate:
 * heapprof_mutex_fraction(n) keeps 1 in n lock contentions from now on
 * (0: off, the default unless HEAPPROF_MUTEX_FRACTION is set);
 * heapprof_block_rate(ns) keeps a wait of d ns with probability d/ns (0:
 * off; 1: every wait). Both return the previous value; a negative argument
 * only reads it. Recorded only while profiling is on (HEAPPROF or
 * HEAPPROF_HTTP). */
HEAPPROF_API int heapprof_mutex_fraction(int n);
HEAPPROF_API long heapprof_block_rate(long ns);

/* Execution traces (see the README, "Execution traces"): what each thread
 * did over time (CPU samples with stacks, label scopes as nested regions,
 * thread creation, renames and exit, sampled allocations and the heap's
 * estimated in-use bytes), written by heapprof_trace_stop as Chrome Trace
 * Event JSON to the path given to start (gzipped when it ends in .gz),
 * atomically. They work whether HEAPPROF is set or not. One trace runs at a
 * time: start returns -EBUSY while another runs (the endpoint's,
 * HEAPPROF_TRACE's or an earlier start's), -ENOTSUP when the reporting half
 * cannot be loaded, -EINVAL for a NULL or empty path. stop returns 0,
 * -ENOENT when no trace started by heapprof_trace_start runs, or the error
 * of writing the file. A trace still running at exit is written then. */
HEAPPROF_API int heapprof_trace_start(const char *path);
HEAPPROF_API int heapprof_trace_stop(void);

/* A leak check now, while the program runs (the check made at exit, in a
 * copy of the process: the program's threads are held only while the copy
 * is made). Memory is lost when nothing points to it any more (definitely),
 * or only other lost memory does (indirectly); the rest is reachable. In
 * sampled mode the counts are estimates, and "indirect" is not told apart
 * (see the README, "Leak checks while the program runs"). */
struct heapprof_leak_counts {
    uint64_t definite_objects, definite_bytes;
    uint64_t indirect_objects, indirect_bytes;
    uint64_t reachable_objects, reachable_bytes;
    bool estimated; /* sampled mode: unbiased estimates, not exact counts */
};
/* Runs the check; fills counts (when not NULL) and, when path is not NULL,
 * writes the result atomically: the leak summary as text when path ends in
 * ".txt", otherwise a gzipped pprof heap profile whose in-use samples carry
 * the label leak=definite, indirect or reachable. Returns 0, -ENOTSUP when
 * profiling is off, -EBUSY while another check runs (the endpoint's, a
 * periodic one), or another negative errno (-ENOMEM: not enough memory for
 * the check's copy, said on stderr). Blocks the calling thread for the
 * check's length (about a second per GiB of heap in exact mode). */
HEAPPROF_API int heapprof_leak_check(const char *path, struct heapprof_leak_counts *counts);

#ifdef __cplusplus
}
#endif

#endif /* HEAPPROF_H */
