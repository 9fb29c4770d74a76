/* The cost of an uncontended pthread_mutex_lock/unlock pair: each of T
 * threads locks and unlocks its own mutex (on its own cache line) N times.
 * Prints "ns_per_pair X" (wall time of the slowest thread over N) and
 * "cpu_ns_per_pair X" (the process's CPU time over T*N). bench/locks.py
 * runs it alone, under the forwarding floor and under heapprof.
 *
 *   lock_bench THREADS ITERATIONS
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct slot {
    _Alignas(64) pthread_mutex_t mu;
    long n;
    double ns;
};

static double now(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *run(void *arg)
{
    struct slot *s = arg;
    double t0 = now(CLOCK_MONOTONIC);
    for (long i = 0; i < s->n; i++) {
        pthread_mutex_lock(&s->mu);
        __asm__ volatile("" ::: "memory");
        pthread_mutex_unlock(&s->mu);
    }
    s->ns = now(CLOCK_MONOTONIC) - t0;
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    long n = argc > 2 ? atol(argv[2]) : 50000000;
    if (threads < 1 || threads > 64 || n < 1)
        return 2;
    struct slot *slots = aligned_alloc(64, sizeof(struct slot) * (size_t)threads);
    pthread_t t[64];
    double c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < threads; i++) {
        pthread_mutex_init(&slots[i].mu, NULL);
        slots[i].n = n;
        pthread_create(&t[i], NULL, run, &slots[i]);
    }
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (slots[i].ns > worst)
            worst = slots[i].ns;
    }
    double cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("ns_per_pair %.3f\ncpu_ns_per_pair %.3f\n", worst / (double)n,
           cpu / ((double)n * threads));
    free(slots);
    return 0;
}
