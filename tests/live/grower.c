/* A program whose heap grows at one site while another stays flat, for the
 * heap-over-time tests (HEAPPROF_TIMELINE, /debug/pprof/timeline):
 *
 *   grower [SECONDS] [twins]
 *
 * flat_site() allocates 4 MiB at start, in 64 KiB blocks, and keeps it;
 * then, for SECONDS (default 3), grow_site() adds a 64 KiB block every
 * 10 ms and keeps it (about 6.4 MB a second), and churn_site() allocates
 * and frees a 64 KiB block, so it never holds much. Prints "grower: done"
 * and exits 0.
 *
 * With `twins`, four more sites grow as grow_site does, in pairs whose
 * stacks read alike by their function names alone: grow_twins() keeps a
 * block from each of its two malloc calls (the stacks differ in
 * grow_twins' frame), and deep_a() and deep_b() each call chain(), which
 * recurses 9 levels before it allocates (the stacks differ only in the
 * frame below the nine chain frames). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline))
enum { BLOCK = 64 * 1024 };

static char *flat[64];
static char **grown;
static size_t ngrown, capgrown;

SITE static void flat_site(void)
{
    for (int i = 0; i < 64; i++) {
        flat[i] = malloc(BLOCK);
        memset(flat[i], 'f', BLOCK);
    }
}

SITE static void grow_site(void)
{
    if (ngrown == capgrown) {
        size_t cap = capgrown ? 2 * capgrown : 1024;
        char **g = realloc(grown, cap * sizeof *g);
        if (!g)
            return;
        grown = g;
        capgrown = cap;
    }
    grown[ngrown] = malloc(BLOCK);
    memset(grown[ngrown], 'g', BLOCK);
    ngrown++;
}

SITE static void churn_site(void)
{
    char *p = malloc(BLOCK);
    memset(p, 'c', BLOCK);
    free(p);
}

static void keep(char *p)
{
    if (!p)
        return;
    memset(p, 't', BLOCK / 4);
    if (ngrown == capgrown) {
        size_t cap = capgrown ? 2 * capgrown : 1024;
        char **g = realloc(grown, cap * sizeof *g);
        if (!g)
            return;
        grown = g;
        capgrown = cap;
    }
    grown[ngrown++] = p;
}

SITE static void grow_twins(void)
{
    keep(malloc(BLOCK / 4));
    keep(malloc(BLOCK / 4));
}

SITE static void chain(int n)
{
    if (n > 0)
        chain(n - 1);
    else
        keep(malloc(BLOCK / 4));
}

SITE static void deep_a(void)
{
    chain(9);
}

SITE static void deep_b(void)
{
    chain(9);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    int twins = argc > 2 && !strcmp(argv[2], "twins");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    flat_site();
    while (seconds_since(&t0) < seconds) {
        grow_site();
        churn_site();
        if (twins) {
            grow_twins();
            deep_a();
            deep_b();
        }
        usleep(10000);
    }
    printf("grower: done\n");
    return 0;
}
