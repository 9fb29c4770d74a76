/* A deep-stack workload with many distinct call sites: what a sampled
 * allocation costs when the unwinder has far to walk and the stack table
 * keeps growing.
 *
 * usage: deep_stack ITERS [SIZE]
 * Each step picks one of 16384 call paths and recurses through four
 * functions (step_a .. step_d, chosen two bits of the path number at a time)
 * to a depth of 8 to 32 frames, where it allocates 16..4096 bytes. The
 * path number fixes both the depth and the sequence of functions, so the
 * 16384 paths are 16384 distinct stacks. A window of 1000 objects stays
 * live, as in malloc_bench's window mode. With SIZE, every allocation is SIZE
 bytes, so that the number of samples a rate gives is known in advance
 (bench/run.py derives the cost of one sample from it). Prints the loop's
 seconds.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "report.h"

enum { NPATHS = 1 << 14, WINDOW = 1000, MIN_DEPTH = 8, DEPTHS = 25 };

struct walk {
    unsigned path;
    int depth;
    uint32_t size;
};

typedef uintptr_t (*step_fn)(const struct walk *w, int level);
static step_fn steps[4];

/* Each step does work after its call, so the call cannot become a jump that
 * would drop the frame from the stack. */
static uintptr_t descend(const struct walk *w, int level)
{
    if (level == w->depth) {
        char *p = malloc(w->size);
        p[0] = (char)level;
        return (uintptr_t)p;
    }
    unsigned choice = (w->path >> (2 * (level % 7))) & 3;
    uintptr_t r = steps[choice](w, level + 1);
    __asm__ volatile("" : "+r"(r));
    return r;
}

__attribute__((noinline)) static uintptr_t step_a(const struct walk *w, int level)
{
    uintptr_t r = descend(w, level);
    __asm__ volatile("" : "+r"(r));
    return r;
}

__attribute__((noinline)) static uintptr_t step_b(const struct walk *w, int level)
{
    uintptr_t r = descend(w, level);
    __asm__ volatile("" : "+r"(r));
    return r;
}

__attribute__((noinline)) static uintptr_t step_c(const struct walk *w, int level)
{
    uintptr_t r = descend(w, level);
    __asm__ volatile("" : "+r"(r));
    return r;
}

__attribute__((noinline)) static uintptr_t step_d(const struct walk *w, int level)
{
    uintptr_t r = descend(w, level);
    __asm__ volatile("" : "+r"(r));
    return r;
}

static step_fn steps[4] = {step_a, step_b, step_c, step_d};

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || atol(argv[1]) < 1 || (argc == 3 && atol(argv[2]) < 1)) {
        fprintf(stderr, "usage: %s ITERS [SIZE]\n", argv[0]);
        return 2;
    }
    long iters = atol(argv[1]);
    uint32_t fixed = argc == 3 ? (uint32_t)atol(argv[2]) : 0;
    static void *ring[WINDOW];
    uint64_t s = 0x2545f4914f6cdd1dull, bytes = 0;
    struct bench_clock t0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < iters; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        unsigned path = (unsigned)(s % NPATHS);
        int e = 4 + (int)((s >> 20) % 8);
        uint32_t size = (1u << e) + (uint32_t)((s >> 32) % ((1u << e) + 1));
        if (size > 4096)
            size = 4096;
        if (fixed)
            size = fixed;
        struct walk w = {path, MIN_DEPTH + (int)(path % DEPTHS), size};
        long k = i % WINDOW;
        free(ring[k]);
        ring[k] = (void *)steps[path & 3](&w, 1);
        bytes += size;
    }
    for (int i = 0; i < WINDOW; i++)
        free(ring[i]);
    struct bench_clock t1 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
    bench_report(t1.wall - t0.wall, t1.cpu - t0.cpu, iters, (unsigned long long)bytes);
    return 0;
}
