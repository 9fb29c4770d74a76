/* rb_flagrace: sampled blocks without a header, allocated and freed at once
 * on several threads, for the robustness tests (tests/robust/robust.py,
 * check flag-race). Such a block's free is seen only while the flag that
 * every free() reads is up (record/live.c, block_set_add); a sample that
 * raised the count of set bits from one or more once went on before the
 * thread that raised it from zero had put the flag up, and a free in that
 * window went unfiltered: the block stayed in use in the profile and was
 * reported lost. Aligned blocks carry no header, over any allocator.
 *
 * Usage: rb_flagrace ITERS THREADS
 * Each thread: ITERS x (aligned_alloc(64, 64) in flag_race_site, free).
 * Truth: flag_race_site has nothing in use at exit. Prints `flagrace`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SITE __attribute__((noinline))

enum { MAX_THREADS = 16 };

static long iters;

SITE static void *flag_race_site(void)
{
    return aligned_alloc(64, 64);
}

static void *worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++) {
        char *p = flag_race_site();
        if (p)
            p[0] = 1;
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc == 3 ? atoi(argv[2]) : 0;
    if (argc != 3 || (iters = atol(argv[1])) < 1 || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: %s ITERS THREADS (1-%d)\n", argv[0], MAX_THREADS);
        return 2;
    }
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, NULL)) {
            fprintf(stderr, "%s: cannot create a thread\n", argv[0]);
            return 1;
        }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("flagrace\n");
    return 0;
}
