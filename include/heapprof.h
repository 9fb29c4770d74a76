/* heapprof: a sampling heap profiler that writes pprof profiles.
 *
 * Most programs need nothing from this header: link with -lheapprof (or
 * preload libheapprof.so) and set HEAPPROF=out.pb.gz. The functions below let
 * a program take profiles itself. They are safe to call when profiling is off
 * (HEAPPROF unset); they then report that with -ENOTSUP or false.
 */
#ifndef HEAPPROF_H
#define HEAPPROF_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEAPPROF_VERSION_MAJOR 0
#define HEAPPROF_VERSION_MINOR 1
#define HEAPPROF_VERSION_PATCH 0
#define HEAPPROF_VERSION "0.1.0"

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

#ifdef __cplusplus
}
#endif

#endif /* HEAPPROF_H */
