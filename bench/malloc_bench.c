/* malloc/free microbenchmarks: the allocator's fast path under a profiler.
 *
 * usage: malloc_bench MODE THREADS ITERS
 *   fixed   malloc(32), write it, free it: the cheapest pair there is, so
 *           any fixed cost a profiler adds per call shows at full size.
 *   mixed   the same with sizes from 16 to 4096 bytes, log-uniform (small
 *           sizes common, as in real programs; 755 bytes on average).
 *   window  mixed sizes, 1000 objects kept live per thread: each step frees
 *           the oldest and allocates a new one, so frees see many distinct
 *           addresses, as they do in a program with a working set.
 * Each of THREADS threads does ITERS steps. Prints the wall seconds from the
 * first loop's start to the last one's end and the CPU seconds of the loops
 * (start-up and exit, where a profiler writes its output, excluded), the
 * steps, the bytes allocated and the peak RSS (report.h).
 *
 * With BENCH_LABELS=1 in the environment, each thread pushes two labels
 * (heapprof_label_push, found with dlsym, so the program runs without
 * heapprof too) before its loop: what labels cost on the sampled path.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"

enum { NSIZES = 1 << 14, WINDOW = 1000 };

enum mode { FIXED, MIXED, WINDOWED };

struct job {
    pthread_t thread;
    enum mode mode;
    long iters;
    unsigned seed;
    uint64_t bytes;
    uint64_t sink;
    struct bench_clock start, end; /* taken by the thread around its loop */
};

static pthread_barrier_t start_line;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Sizes are drawn before the loop so the loop measures the allocator, not
 * the random number generator. */
static void fill_sizes(uint32_t *sizes, unsigned seed)
{
    uint64_t s = 0x9e3779b97f4a7c15ull ^ seed;
    for (int i = 0; i < NSIZES; i++) {
        int e = 4 + (int)(xorshift(&s) % 8); /* 16 .. 2048 */
        uint32_t base = 1u << e;
        uint32_t n = base + (uint32_t)(xorshift(&s) % (base + 1));
        sizes[i] = n > 4096 ? 4096 : n;
    }
}

static void *run(void *arg)
{
    struct job *j = arg;
    /* Looked up only when asked for: a dlsym that fails (every run without
     * heapprof) leaves its error record, 24 and 81 bytes, allocated in this
     * thread, and runs with and without heapprof must start from the same
     * heap. */
    if (getenv("BENCH_LABELS")) {
        int (*push)(const char *, const char *) =
            (int (*)(const char *, const char *))dlsym(RTLD_DEFAULT, "heapprof_label_push");
        if (push) {
            push("tenant", "bench");
            push("kind", j->mode == WINDOWED ? "window" : "pairs");
        }
    }
    uint32_t sizes[NSIZES]; /* 64 KiB: thread stacks are 8 MiB */
    void *ring[WINDOW] = {0};
    uint64_t bytes = 0, sink = 0;
    fill_sizes(sizes, j->seed);
    if (j->mode == WINDOWED) {
        /* Fill the window before the clock starts. */
        for (int i = 0; i < WINDOW; i++) {
            ring[i] = malloc(sizes[i]);
            memset(ring[i], 1, 1);
        }
    }
    /* A program's heap always holds other objects of the size it allocates.
     * Without one, mimalloc finds the page empty at every free of the fixed
     * loop and retires it, and its next malloc takes the generic path: the
     * loop then measured whether some other block of that size class
     * happened to be live (the error record above was, in 32-byte pages,
     * in every configuration but heapprof's), not the allocator's fast
     * path. */
    char *neighbour = malloc(32);
    memset(neighbour, 0, 32);
    pthread_barrier_wait(&start_line);
    j->start = bench_now(CLOCK_THREAD_CPUTIME_ID);
    switch (j->mode) {
    case FIXED:
        for (long i = 0; i < j->iters; i++) {
            char *p = malloc(32);
            p[0] = (char)i;
            sink += (uint8_t)p[0];
            free(p);
        }
        bytes = (uint64_t)j->iters * 32;
        break;
    case MIXED:
        for (long i = 0; i < j->iters; i++) {
            uint32_t n = sizes[i & (NSIZES - 1)];
            char *p = malloc(n);
            p[0] = (char)i;
            sink += (uint8_t)p[0];
            free(p);
            bytes += n;
        }
        break;
    case WINDOWED:
        for (long i = 0; i < j->iters; i++) {
            uint32_t n = sizes[(i + WINDOW) & (NSIZES - 1)];
            long k = i % WINDOW;
            free(ring[k]);
            char *p = malloc(n);
            p[0] = (char)i;
            sink += (uint8_t)p[0];
            ring[k] = p;
            bytes += n;
        }
        for (int i = 0; i < WINDOW; i++)
            free(ring[i]);
        break;
    }
    j->end = bench_now(CLOCK_THREAD_CPUTIME_ID);
    free(neighbour);
    j->bytes = bytes;
    j->sink = sink;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s fixed|mixed|window THREADS ITERS\n", argv[0]);
        return 2;
    }
    enum mode mode;
    if (!strcmp(argv[1], "fixed"))
        mode = FIXED;
    else if (!strcmp(argv[1], "mixed"))
        mode = MIXED;
    else if (!strcmp(argv[1], "window"))
        mode = WINDOWED;
    else {
        fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
        return 2;
    }
    int nthreads = atoi(argv[2]);
    long iters = atol(argv[3]);
    if (nthreads < 1 || nthreads > 64 || iters < 1) {
        fprintf(stderr, "%s: bad THREADS or ITERS\n", argv[0]);
        return 2;
    }
    struct job jobs[64];
    /* Each worker times its own loop, from the barrier on: a clock read by
     * the main thread could start late, after a worker that was scheduled
     * first has already finished. */
    pthread_barrier_init(&start_line, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (struct job){.mode = mode, .iters = iters, .seed = (unsigned)t + 1};
        if (pthread_create(&jobs[t].thread, NULL, run, &jobs[t]) != 0) {
            fprintf(stderr, "%s: cannot create a thread\n", argv[0]);
            return 1;
        }
    }
    uint64_t bytes = 0, sink = 0;
    double first = 0, last = 0, cpu = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(jobs[t].thread, NULL);
        bytes += jobs[t].bytes;
        sink += jobs[t].sink;
        if (t == 0 || jobs[t].start.wall < first)
            first = jobs[t].start.wall;
        if (t == 0 || jobs[t].end.wall > last)
            last = jobs[t].end.wall;
        cpu += jobs[t].end.cpu - jobs[t].start.cpu;
    }
    /* Wall: first loop start to last loop end. CPU: the workers' own. */
    bench_report(last - first, cpu, iters * nthreads, (unsigned long long)bytes);
    /* The sink keeps the loops' reads of the blocks from being optimised out. */
    return sink == 42 ? 3 : 0;
}
