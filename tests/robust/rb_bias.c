/* rb_bias: a second thread's first allocations while the first thread is in
 * the middle of its own, for the robustness tests (tests/robust/robust.py,
 * check bias). The live set lets the first thread that uses it go without
 * locks until another thread uses it (record/live.c): that other thread
 * must wait for the first to leave the tables, and from then on both lock.
 * Here the main thread allocates and frees in a loop; two workers start
 * allocating only once that loop runs, so their first uses fall among the
 * main thread's, and one of them may meet the bias while the other revokes
 * it. All three trade blocks through shared slots, so each frees blocks of
 * the others', and one arena serves them all, so that their blocks share the
 * live set's shards.
 *
 * Usage: rb_bias ITERS
 * Truth per function, columns alloc_objects alloc_space inuse_objects
 * inuse_space:
 *   bias_main    ITERS  48*ITERS  0  0
 *   bias_worker  2*ITERS  160*ITERS  0  0
 *   bias_leak    3      72        3  72
 * Prints `bias ITERS`; exits 0.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE __attribute__((noinline))

enum { SLOTS = 64 };

static void *slots[SLOTS];
static int running;
static long iters;
void *volatile kept[3];

SITE static void *bias_main(void)
{
    return malloc(48);
}

SITE static void *bias_worker(void)
{
    return malloc(80);
}

SITE static void bias_leak(int i)
{
    kept[i] = malloc(24);
}

/* Puts p in a slot and frees what was there. */
static void trade(void *p, long i)
{
    memset(p, 1, 8);
    free(__atomic_exchange_n(&slots[(i * 7) % SLOTS], p, __ATOMIC_ACQ_REL));
}

static void *worker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&running, __ATOMIC_ACQUIRE))
        ;
    for (long i = 0; i < iters; i++)
        trade(bias_worker(), i);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (iters = atol(argv[1])) < 1) {
        fprintf(stderr, "usage: %s ITERS\n", argv[0]);
        return 2;
    }
    mallopt(M_ARENA_MAX, 1);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, NULL)) {
            fprintf(stderr, "%s: cannot create a thread\n", argv[0]);
            return 1;
        }
    for (long i = 0; i < iters; i++) {
        trade(bias_main(), i);
        if (i == 64)
            __atomic_store_n(&running, 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&running, 1, __ATOMIC_RELEASE); /* ITERS of 64 or fewer */
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++)
        free(slots[i]);
    for (int i = 0; i < 3; i++)
        bias_leak(i);
    printf("bias %ld\n", iters);
    return 0;
}
