/* rb_threads: many short-lived threads, each allocating, with blocks freed
 * by threads other than the one that allocated them, for the robustness
 * tests (tests/robust/robust.py, check threads). In exact mode
 * (HEAPPROF_RATE=1) heapprof's counts must equal the truth below.
 *
 * Usage: rb_threads ROUNDS THREADS
 * Each round creates THREADS threads and joins them all. Thread i of round r:
 *   thread_churn    50 x malloc(64), each freed at once
 *   thread_handoff  8 x malloc(256), left for thread (i+THREADS-1)%THREADS of
 *                   round r+1 to free (the main thread frees the last round's)
 *   thread_grow     malloc(16) then realloc to 32, 64, ..., 4096, then free
 *   thread_leak     1 x calloc(1, 40), never freed
 * Truth per function (cumulative), N = ROUNDS*THREADS, columns alloc_objects
 * alloc_space inuse_objects inuse_space:
 *   thread_churn    50N  3200N  0  0
 *   thread_handoff   8N  2048N  0  0
 *   thread_grow      9N  8176N  0  0
 *   thread_leak      1N    40N  N  40N
 * Prints `threads N checksum X`; exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE __attribute__((noinline))

enum { MAX_THREADS = 64, HANDOFF = 8 };

struct slot {
    void *blocks[HANDOFF];
};

struct job {
    int index;
    struct slot *mine;    /* this round's blocks, for the next round */
    struct slot *inherit; /* the previous round's blocks of another thread */
    void *leaked;
    uint64_t sum;
};

static void *must(void *p)
{
    if (!p) {
        fputs("rb_threads: out of memory\n", stderr);
        exit(99);
    }
    return p;
}

static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

SITE static void thread_churn(struct job *j)
{
    for (int i = 0; i < 50; i++) {
        unsigned char *p = must(malloc(64));
        memset(p, i, 64);
        j->sum += p[63];
        free(p);
    }
}

SITE static void thread_handoff(struct job *j)
{
    for (int i = 0; i < HANDOFF; i++) {
        j->mine->blocks[i] = must(malloc(256));
        memset(j->mine->blocks[i], j->index, 256);
    }
}

SITE static void thread_grow(struct job *j)
{
    char *p = must(malloc(16));
    memset(p, 1, 16);
    for (size_t size = 32; size <= 4096; size *= 2) {
        p = must(realloc(p, size));
        memset(p, 2, size);
    }
    j->sum += (unsigned char)p[4095];
    free(p);
}

SITE static void thread_leak(struct job *j)
{
    j->leaked = must(calloc(1, 40));
    escape(j->leaked);
}

static void *thread_main(void *arg)
{
    struct job *j = arg;
    /* Blocks another thread allocated in the previous round. */
    if (j->inherit)
        for (int i = 0; i < HANDOFF; i++) {
            j->sum += ((unsigned char *)j->inherit->blocks[i])[0];
            free(j->inherit->blocks[i]);
        }
    thread_churn(j);
    thread_handoff(j);
    thread_grow(j);
    thread_leak(j);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fputs("usage: rb_threads ROUNDS THREADS\n", stderr);
        return 2;
    }
    int rounds = atoi(argv[1]), nthreads = atoi(argv[2]);
    if (rounds < 1 || nthreads < 1 || nthreads > MAX_THREADS) {
        fputs("rb_threads: bad arguments\n", stderr);
        return 2;
    }
    static struct slot slots[2][MAX_THREADS];
    static struct job jobs[MAX_THREADS];
    /* Kept reachable: heapprof reports them as never freed all the same. */
    void **leaks = must(calloc((size_t)rounds * (size_t)nthreads, sizeof *leaks));
    uint64_t sum = 0;
    pthread_t tids[MAX_THREADS];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < nthreads; i++) {
            jobs[i] = (struct job){
                .index = i,
                .mine = &slots[r % 2][i],
                .inherit = r ? &slots[(r + 1) % 2][(i + 1) % nthreads] : NULL,
            };
            if (pthread_create(&tids[i], NULL, thread_main, &jobs[i]) != 0) {
                fputs("rb_threads: pthread_create failed\n", stderr);
                return 1;
            }
        }
        for (int i = 0; i < nthreads; i++) {
            pthread_join(tids[i], NULL);
            sum += jobs[i].sum;
            leaks[r * nthreads + i] = jobs[i].leaked;
        }
    }
    for (int i = 0; i < nthreads; i++)
        for (int k = 0; k < HANDOFF; k++)
            free(slots[(rounds - 1) % 2][i].blocks[k]);
    printf("threads %d checksum %llu\n", rounds * nthreads, (unsigned long long)sum);
    escape(leaks);
    return 0;
}
