/* Exactly 10,000 distinct allocation stacks: the program that measures how
 * long heapprof takes to write a profile that size, and how big it is.
 *
 * usage: stacks10k [PROFILE]
 * Ten functions (f0 .. f9) call one another four levels deep, the function
 * at each level chosen by one decimal digit of the path number, and the last
 * allocates 64 bytes: paths 0000 .. 9999 are 10,000 stacks that differ in
 * their return addresses. Run it with HEAPPROF_RATE=1 so every one is
 * recorded. With PROFILE given and heapprof loaded, it calls heapprof_dump
 * once, with all 10,000 objects still live, and prints how long the call
 * took (wall and CPU) and the file's size: the same work as the exit dump (snapshot,
 * symbolize, encode, gzip, write), timed alone. heapprof_dump is looked up
 * at run time so the same binary runs without heapprof, as the baseline.
 * Nothing else here allocates (output goes through write(2) from a stack
 * buffer), so the profile holds the 10,000 stacks plus whatever the C
 * library allocates at start-up.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { LEVELS = 4, NPATHS = 10000 };

typedef void *(*fn)(unsigned path, int level);
static fn fns[10];

/* The work after the call keeps it a call (not a jump), so each level keeps
 * its frame. */
#define F(n)                                                                                       \
    __attribute__((noinline)) static void *f##n(unsigned path, int level)                          \
    {                                                                                              \
        void *r;                                                                                   \
        if (level == LEVELS) {                                                                     \
            r = malloc(64);                                                                        \
        } else {                                                                                   \
            unsigned d = path;                                                                     \
            for (int i = 0; i < level; i++)                                                        \
                d /= 10;                                                                           \
            r = fns[d % 10](path, level + 1);                                                      \
        }                                                                                          \
        __asm__ volatile("" : "+r"(r));                                                            \
        return r;                                                                                  \
    }
F(0)
F(1)
F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9)

    static fn fns[10] = {f0, f1, f2, f3, f4, f5, f6, f7, f8, f9};

static void say(const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    static void *objs[NPATHS];
    /* The function at level k (1..4) is digit k-1 of the path: main picks
     * level 1's, and the function at level k picks level k+1's. */
    for (unsigned p = 0; p < NPATHS; p++)
        objs[p] = fns[p % 10](p, 1);
    char line[256];
    if (argc > 1) {
        int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "heapprof_dump");
        if (!dump) {
            say("dump=unavailable\n");
        } else {
            double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
            int r = dump(argv[1]);
            double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
            struct stat st;
            long long size = r == 0 && stat(argv[1], &st) == 0 ? (long long)st.st_size : -1;
            snprintf(line, sizeof line, "dump_ms=%.3f dump_cpu_ms=%.3f dump_rc=%d bytes=%lld\n",
                     (t1 - t0) * 1e3, (c1 - c0) * 1e3, r, size);
            say(line);
        }
    }
    for (unsigned p = 0; p < NPATHS; p++)
        free(objs[p]);
    snprintf(line, sizeof line, "stacks=%d\n", NPATHS);
    say(line);
    return 0;
}
