/* A program with a known peak, for the peak-profile test: build_peak()
 * allocates 8 MiB in 1 MiB blocks and frees them all, then steady()
 * allocates 1 MiB that stays. The exit profile shows steady only; the peak
 * profile must show build_peak's 8 MiB (at least 16/17 of it, the bound
 * heapprof documents). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE __attribute__((noinline))

static char *blocks[8];

SITE static void build_peak(void)
{
    for (int i = 0; i < 8; i++) {
        blocks[i] = malloc(1 << 20);
        memset(blocks[i], i, 1 << 20);
    }
}

SITE static void release_peak(void)
{
    for (int i = 0; i < 8; i++)
        free(blocks[i]);
}

static char *kept;

SITE static void steady(void)
{
    kept = malloc(1 << 20);
    memset(kept, 1, 1 << 20);
}

int main(void)
{
    build_peak();
    release_peak();
    steady();
    printf("peak: done %d\n", kept[100]);
    free(kept);
    return 0;
}
