/* A program whose heap grows at one site while another stays flat, for the
 * heap-over-time tests (HEAPPROF_TIMELINE, /debug/pprof/timeline):
 *
 *   grower [SECONDS] [twins]
 *
 * flat_site() allocates 4 MiB at start, in 64 KiB blocks, and keeps it;
 * then, for SECONDS (default 3), grow_site() adds a 64 KiB block every
 * 10 ms and keeps it (about 6.4 MB a second), and churn_site() allocates
 * and frees a 64 KiB block, so it never holds much. It runs at least
 * MIN_ROUNDS rounds (6.4 MB) however long they take: on a busy machine the
 * 10 ms sleeps last longer, and the heap must still have grown. Prints
 * "grower: done" and exits 0.
 *
 * With GROWER_HOLD=1 in the environment (for tests, which must not race
 * the clock), the grower ends only when its stdin does: after its rounds it
 * prints "grower: holding" and waits for the end of its stdin; with
 * SECONDS 0 it grows until then.
 *
 * With `twins`, four more sites grow as grow_site does, in pairs whose
 * stacks read alike by their function names alone: grow_twins() keeps a
 * block from each of its two malloc calls (the stacks differ in
 * grow_twins' frame), and deep_a() and deep_b() each call chain(), which
 * recurses 9 levels before it allocates (the stacks differ only in the
 * frame below the nine chain frames). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline))
enum { BLOCK = 64 * 1024, MIN_ROUNDS = 100 };

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

/* GROWER_HOLD: true once stdin has ended (or failed); wait: block until
 * then, else only look. */
static int stdin_ended(int wait)
{
    char buf[512];
    for (;;) {
        struct pollfd p = {0, POLLIN, 0};
        int r = poll(&p, 1, wait ? -1 : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0;
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    int twins = argc > 2 && !strcmp(argv[2], "twins");
    const char *h = getenv("GROWER_HOLD");
    int hold = h && *h && strcmp(h, "0") != 0;
    int until_eof = hold && seconds <= 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    flat_site();
    for (long rounds = 0; until_eof ? !stdin_ended(0)
                                    : (seconds > 0 && (seconds_since(&t0) < seconds ||
                                                       rounds < MIN_ROUNDS));
         rounds++) {
        grow_site();
        churn_site();
        if (twins) {
            grow_twins();
            deep_a();
            deep_b();
        }
        usleep(10000);
    }
    if (hold && !until_eof) {
        printf("grower: holding\n");
        fflush(stdout);
        stdin_ended(1);
    }
    printf("grower: done\n");
    return 0;
}
