/* bigheap: a heap of a given size for the leak check's cost (bench/leakcheck.py).
 *
 * Usage: bigheap MIB [MEAN_BYTES] [hold]
 *
 * Allocates objects of uniform random size 16..2*MEAN (default 1024) until
 * MIB MiB are live. Every object's words are filled; one word in eight holds
 * a pointer to an earlier object (a graph for the marking to follow, as a
 * real heap's is), the rest small integers. A global array (itself a heap
 * object) keeps 99% of the objects; every hundredth is dropped from it and
 * nothing else is made to point to it on purpose. Prints one line:
 * objects=N bytes=B. Exits without freeing anything; with `hold`, only once
 * its stdin ends, so that a live leak check (bench/live_leaks.py, through
 * HEAPPROF_HTTP) can be asked of the heap in the meantime.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

void **kept;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bigheap MIB [MEAN_BYTES] [hold]\n");
        return 2;
    }
    size_t total = (size_t)atol(argv[1]) << 20;
    size_t mean = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    size_t cap = 2 * total / (mean + 16) + 16; /* objects average (16 + 2 MEAN) / 2 bytes */
    kept = calloc(cap, sizeof *kept);
    if (!kept)
        return 1;
    size_t n = 0, bytes = 0;
    while (bytes < total && n < cap) {
        size_t size = 16 + next() % (2 * mean - 15);
        uint64_t *o = malloc(size);
        if (!o)
            return 1;
        for (size_t w = 0; w < size / 8; w++)
            o[w] = (w % 8 == 7 && n) ? (uint64_t)(uintptr_t)kept[next() % n] : next() % 1000;
        kept[n++] = o;
        bytes += size;
    }
    for (size_t i = 0; i < n; i += 100)
        kept[i] = NULL;
    printf("objects=%zu bytes=%zu\n", n, bytes);
    if (argc > 3 && !strcmp(argv[3], "hold")) {
        fflush(stdout);
        char buf[256];
        while (read(0, buf, sizeof buf) > 0)
            ;
    }
    return 0;
}
