/* The cost of one stack capture: libunwind's unw_backtrace (with the
 * per-thread cache heapprof sets up) beside heapprof's fast unwinder
 * (record/unwind.c), on the same 30-frame stack, warm caches. The fast
 * unwinder takes the frames a stack shares with the thread's last capture
 * without walking them again, which a capture repeated from one stack
 * always can: so it is also timed on stacks that change below their
 * outermost frames from one capture to the next ("changed"), two
 * recursions of the same depth through different functions, taken in
 * turn; the recursion's own cost, timed without the capture, is taken
 * off.
 *
 *   unwind_bench [DEPTH [ITERATIONS [RUNS]]]
 *
 * Each run times ITERATIONS captures of each kind, alternating kinds run by
 * run, and prints CPU ns per capture (the thread's CPU clock: other
 * processes on a shared machine do not count); the last line gives the
 * medians. It also
 * checks that both unwinders return the same frames, and says so.
 *
 * Linked with heapprof's internal archive (no malloc interposition), so the
 * fast unwinder is called directly, as hp_stack_capture calls it.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include "record.h"

#include <libunwind.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROOM = 80 };

static long iterations = 200000;
static int runs = 9;
static double fast_ns[64], slow_ns[64], changed_ns[64];
static int frames_fast, frames_slow, frames_changed;
static int depth_left; /* the recursions' depth */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static __attribute__((noinline)) double time_fast(void)
{
    void *ips[ROOM];
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
        frames_fast = hp_unwind_capture(ips, ROOM);
        __asm__ volatile("" ::"r"(ips) : "memory");
    }
    return (now() - t0) / (double)iterations;
}

static __attribute__((noinline)) double time_slow(void)
{
    void *ips[ROOM];
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
        frames_slow = unw_backtrace(ips, ROOM);
        __asm__ volatile("" ::"r"(ips) : "memory");
    }
    return (now() - t0) / (double)iterations;
}

/* Two recursions alike but for their functions: a capture at the bottom
 * of one shares only the frames above them with a capture at the bottom
 * of the other. */
static void *volatile sink;
static __attribute__((noinline)) void take_here(void)
{
    void *ips[ROOM];
    frames_changed = hp_unwind_capture(ips, ROOM);
    sink = ips[0];
}
#define RECURSION(name, step)                                                                      \
    static __attribute__((noinline)) int name(int left, bool take)                                 \
    {                                                                                              \
        if (left <= 0) {                                                                           \
            if (take)                                                                              \
                take_here();                                                                       \
            return 0;                                                                              \
        }                                                                                          \
        int r = name(left - 1, take);                                                              \
        __asm__ volatile("" ::: "memory");                                                         \
        return r + step;                                                                           \
    }
RECURSION(rec_a, 1)
RECURSION(rec_b, 2)

static __attribute__((noinline)) double time_recursions(bool take)
{
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
        if (i & 1)
            rec_a(depth_left, take);
        else
            rec_b(depth_left, take);
    }
    return (now() - t0) / (double)iterations;
}

/* Both from the same frame: the fast unwinder's first frame is its
 * caller's own return address, libunwind's its caller's too. */
static __attribute__((noinline)) void same_frames(void)
{
    void *a[ROOM], *b[ROOM];
    int na = hp_unwind_capture(a, ROOM);
    int nb = unw_backtrace(b, ROOM);
    /* The fast unwinder starts one frame lower (its own caller inside
     * hp_unwind_capture), and frame 0 of each is its own call site here:
     * the rest must be the same. */
    bool same = na == nb + 1 && nb > 1 && !memcmp(a + 2, b + 1, (size_t)(nb - 1) * sizeof *a);
    printf("frames: fast %d, libunwind %d: %s\n", na, nb,
           na < 0 ? "the fast unwinder fell back"
           : same ? "the same"
                  : "DIFFERENT");
}

static __attribute__((noinline)) void measure(void)
{
    same_frames();
    for (int r = 0; r < runs; r++) {
        if (r % 2) {
            slow_ns[r] = time_slow();
            fast_ns[r] = time_fast();
        } else {
            fast_ns[r] = time_fast();
            slow_ns[r] = time_slow();
        }
        printf("run %d: fast %.1f ns (%d frames), libunwind %.1f ns (%d frames)\n", r, fast_ns[r],
               frames_fast, slow_ns[r], frames_slow);
    }
    double f = median(fast_ns, runs), s = median(slow_ns, runs);
    printf("median of %d runs of %ld: fast %.1f ns, libunwind %.1f ns per %d-frame capture "
           "(%.1fx)\n",
           runs, iterations, f, s, frames_slow, s / f);
}

/* From main, so that the stacks are as deep as the others. */
static __attribute__((noinline)) void measure_changed(void)
{
    for (int r = 0; r < runs; r++) {
        changed_ns[r] = time_recursions(true) - time_recursions(false);
        printf("run %d: fast on changed stacks %.1f ns (%d frames)\n", r, changed_ns[r],
               frames_changed);
    }
    printf("median of %d runs of %ld: fast on changed stacks %.1f ns per %d-frame capture\n", runs,
           iterations, median(changed_ns, runs), frames_changed);
}

/* Recursion down to the wanted depth: every level keeps its frame. */
static __attribute__((noinline)) int descend(int left)
{
    if (left <= 0) {
        measure();
        return 0;
    }
    int r = descend(left - 1);
    __asm__ volatile("" ::: "memory");
    return r + 1;
}

int main(int argc, char **argv)
{
    int frames = argc > 1 ? atoi(argv[1]) : 30;
    if (argc > 2)
        iterations = atol(argv[2]);
    if (argc > 3)
        runs = atoi(argv[3]);
    if (runs < 1 || runs > 64 || iterations < 1 || frames < 8 || frames > ROOM) {
        fprintf(stderr, "usage: unwind_bench [FRAMES (8-80) [ITERATIONS [RUNS (1-64)]]]\n");
        return 2;
    }
    hp_cfg.max_memory = 64 << 20;
    hp_unwind_init("fast", 16 << 20);
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    unw_set_cache_size(unw_local_addr_space, 4096, 0);
    /* main, __libc_start_call_main, __libc_start_main, _start, measure and
     * the timing function are six of the frames. */
    descend(frames - 6);
    /* main and the three below it, measure_changed, time_recursions,
     * take_here and the capture's own frame are eight. */
    depth_left = frames - 8;
    measure_changed();
    return 0;
}
