/* leaky: a C program that leaks on purpose, from named functions with exactly
 * known request sizes, so the end-to-end tests can compare heapprof's exact
 * mode (HEAPPROF_RATE=1) with the truth below. It exercises every entry point
 * of the malloc family.
 *
 * Usage: leaky [chdir DIR] [exit N]
 *   chdir DIR  change directory before working (tests that a relative HEAPPROF
 *              path is resolved against the start-up directory)
 *   exit N     finish with exit(N) instead of returning 0
 *
 * Truth, per function, as heapprof counts requests (cumulative: a function
 * counts every allocation made while it is on the stack). Columns:
 * alloc_objects alloc_space inuse_objects inuse_space.
 *
 *   leak_buffers   10  10000  10  10000   10 x malloc(1000), never freed
 *   leak_names      4     39   4     39   strdup of 6+6+8+19 bytes, never freed
 *                                         (leaf frame is libc's strdup)
 *   leak_table      1   2000   1   2000   calloc(50, 40), never freed
 *   grow_log        9   8176   1   4096   malloc(16), then realloc to 32, 64,
 *                                         ..., 4096 (each realloc frees the old
 *                                         block); the final block is leaked
 *   churn         100  25600   0      0   100 x malloc(256), each freed
 *   aligned_work    6   2276   0      0   posix_memalign(64,1024),
 *                                         aligned_alloc(128,512),
 *                                         memalign(256,300), valloc(100),
 *                                         pvalloc(100), reallocarray(NULL,10,24);
 *                                         all freed
 *
 * Never freed: 4 stacks (leak_buffers, leak_names, leak_table, grow_log), 16
 * objects, 16135 bytes. Of them, at exit, the leak check finds leak_table's
 * and grow_log's blocks lost (nothing points to them: 2 objects, 6096 bytes,
 * definitely lost) and the rest still reachable from the globals below. The
 * tests keep this table too (tests/e2e.py): change both.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HEAPPROF_LINKED
#include "heapprof.h"
#endif

/* noinline keeps every site a frame of its own; the build also passes
 * -fno-optimize-sibling-calls so no site's call turns into a jump. */
#define SITE __attribute__((noinline))

/* leak_buffers' and leak_names' blocks stay reachable from here (main
 * hands the arrays to escape(), so the compiler keeps the stores); nothing
 * keeps leak_table's and grow_log's. */
static void *leaked_buffers[10];
static char *leaked_names[4];

static uint64_t checksum = 1469598103934665603ull;
static int usable_ok;

static void mix(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        checksum ^= c[i];
        checksum *= 1099511628211ull;
    }
}

/* Makes the compiler treat p as used by unknown code, so no allocation whose
 * block is never read is optimised away. */
static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void *must(void *p)
{
    if (!p) {
        fputs("leaky: out of memory\n", stderr);
        exit(99);
    }
    return p;
}

void leak_buffers(void);
void leak_names(void);
void leak_table(void);
void grow_log(void);
void churn(void);
void aligned_work(void);

SITE void leak_buffers(void)
{
    for (int i = 0; i < 10; i++) {
        unsigned char *p = must(malloc(1000));
        memset(p, 'a' + i, 1000);
        mix(p, 1000);
        leaked_buffers[i] = p;
    }
}

/* The sources are read through a volatile pointer so the compiler cannot
 * turn strdup of a known string into malloc + memcpy: the leaf frame must be
 * libc's strdup. */
static const char *const name_src[4] = {"alpha", "bravo", "charlie", "delta-echo-foxtrot"};

SITE void leak_names(void)
{
    const char *const *volatile src = name_src;
    for (int i = 0; i < 4; i++) {
        leaked_names[i] = must(strdup(src[i]));
        mix(leaked_names[i], strlen(leaked_names[i]) + 1);
    }
}

SITE void leak_table(void)
{
    int *t = must(calloc(50, 40));
    for (int i = 0; i < 500; i++)
        t[i] = i * 7;
    mix(t, 2000);
}

SITE void grow_log(void)
{
    size_t size = 16;
    char *log = must(malloc(size));
    memset(log, 'L', size);
    while (size < 4096) {
        size *= 2;
        log = must(realloc(log, size));
        memset(log + size / 2, 'L' + (int)(size % 7), size / 2);
    }
    mix(log, size);
}

SITE void churn(void)
{
    for (int i = 0; i < 100; i++) {
        unsigned char *p = must(malloc(256));
        memset(p, i, 256);
        mix(p, 256);
        free(p);
    }
}

SITE void aligned_work(void)
{
    void *blocks[6];
    if (posix_memalign(&blocks[0], 64, 1024) != 0)
        must(NULL);
    blocks[1] = must(aligned_alloc(128, 512));
    blocks[2] = must(memalign(256, 300));
    blocks[3] = must(valloc(100));
    blocks[4] = must(pvalloc(100));
    blocks[5] = must(reallocarray(NULL, 10, 24));
    static const size_t sizes[6] = {1024, 512, 300, 100, 100, 240};
    static const size_t aligns[6] = {64, 128, 256, 4096, 4096, 16};
    for (int i = 0; i < 6; i++) {
        /* The alignment promise is part of the contract heapprof must keep. */
        if ((uintptr_t)blocks[i] % aligns[i] != 0) {
            fprintf(stderr, "leaky: block %d misaligned\n", i);
            exit(98);
        }
        memset(blocks[i], 'A' + i, sizes[i]);
        mix(blocks[i], sizes[i]);
    }
    /* The answer depends on the allocator, so only its sanity is printed
     * (later, by main: stdio allocates its buffer on first use, which would
     * land in this function's counts). */
    usable_ok = malloc_usable_size(blocks[2]) >= 300;
    for (int i = 0; i < 6; i++)
        free(blocks[i]);
}

int main(int argc, char **argv)
{
    int status = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "chdir")) {
            if (chdir(argv[i + 1]) != 0) {
                perror("leaky: chdir");
                return 97;
            }
        } else if (!strcmp(argv[i], "exit")) {
            status = atoi(argv[i + 1]);
        }
    }
#ifdef HEAPPROF_LINKED
    /* The linked build calls the API so the link really needs the library;
     * the answer is not printed, so both builds print the same. */
    (void)heapprof_enabled();
#endif

    leak_buffers();
    leak_names();
    leak_table();
    grow_log();
    churn();
    aligned_work();
    escape(leaked_buffers);
    escape(leaked_names);

    printf("leaky: usable size %s\n", usable_ok ? "ok" : "too small");
    printf("leaky: checksum %016llx\n", (unsigned long long)checksum);
    fflush(stdout);
    if (status >= 0)
        exit(status);
    return 0;
}
