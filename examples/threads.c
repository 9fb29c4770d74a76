/* threads: a multi-threaded program for heapprof's end-to-end tests. Four
 * threads allocate at once; each frees half of its blocks itself and hands the
 * other half to the main thread, which frees them (cross-thread frees), and
 * each leaks a few blocks.
 *
 * Usage: threads [exit N]   (exit N: finish with exit(N) instead of 0)
 *
 * Truth, per function, as heapprof counts requests (cumulative). Columns:
 * alloc_objects alloc_space inuse_objects inuse_space.
 *
 *   worker        256  32768   0     0   4 threads x 64 x malloc(128); 32 freed
 *                                        by the thread, 32 by the main thread
 *   thread_leak    20   1440  20  1440   4 threads x 5 x malloc(72), leaked
 *
 * Leaks: 1 stack (thread_leak, called from thread_main), 20 objects, 1440
 * bytes. The tests keep this table too (tests/e2e.py): change both.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HEAPPROF_LINKED
#include "heapprof.h"
#endif

#define SITE __attribute__((noinline))

enum { NTHREADS = 4, BLOCKS = 64, BLOCK_SIZE = 128, LEAKS = 5, LEAK_SIZE = 72 };

struct job {
    int id;
    void *handoff[BLOCKS / 2]; /* blocks the main thread frees */
    uint64_t sum;
};

/* Leaked blocks stay reachable here; heapprof reports them as never freed. */
static void *leaked[NTHREADS][LEAKS];

/* All threads start allocating together, so the allocator sees contention. */
static pthread_barrier_t start;

static void *must(void *p)
{
    if (!p) {
        fputs("threads: out of memory\n", stderr);
        exit(99);
    }
    return p;
}

static uint64_t mix(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void worker(struct job *job);
void thread_leak(struct job *job);

SITE void worker(struct job *job)
{
    void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = must(malloc(BLOCK_SIZE));
        memset(blocks[i], job->id * BLOCKS + i, BLOCK_SIZE);
        job->sum = mix(job->sum, blocks[i], BLOCK_SIZE);
    }
    for (int i = 0; i < BLOCKS; i++) {
        if (i % 2 == 0)
            free(blocks[i]);
        else
            job->handoff[i / 2] = blocks[i];
    }
}

SITE void thread_leak(struct job *job)
{
    for (int i = 0; i < LEAKS; i++) {
        leaked[job->id][i] = must(malloc(LEAK_SIZE));
        memset(leaked[job->id][i], 'k' + job->id, LEAK_SIZE);
        job->sum = mix(job->sum, leaked[job->id][i], LEAK_SIZE);
    }
}

static void *thread_main(void *arg)
{
    struct job *job = arg;
    pthread_barrier_wait(&start);
    worker(job);
    thread_leak(job);
    /* Keeps thread_leak's call from being the last one, so thread_main stays
     * on its stack whatever the optimiser does. */
    __asm__ volatile("" : : "r"(job) : "memory");
    return NULL;
}

int main(int argc, char **argv)
{
    int status = -1;
    if (argc >= 3 && !strcmp(argv[1], "exit"))
        status = atoi(argv[2]);
#ifdef HEAPPROF_LINKED
    /* The linked build calls the API so the link really needs the library. */
    (void)heapprof_enabled();
#endif

    static struct job jobs[NTHREADS];
    pthread_t tids[NTHREADS];
    pthread_barrier_init(&start, NULL, NTHREADS);
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t].id = t;
        jobs[t].sum = 1469598103934665603ull;
        if (pthread_create(&tids[t], NULL, thread_main, &jobs[t]) != 0) {
            fputs("threads: pthread_create failed\n", stderr);
            return 96;
        }
    }
    uint64_t total = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(tids[t], NULL);
        /* The cross-thread frees: blocks another thread allocated. */
        uint64_t h = jobs[t].sum;
        for (int i = 0; i < BLOCKS / 2; i++) {
            h = mix(h, jobs[t].handoff[i], BLOCK_SIZE);
            free(jobs[t].handoff[i]);
        }
        total = total * 1000003 + h;
    }
    pthread_barrier_destroy(&start);

    printf("threads: %d threads, checksum %016llx\n", NTHREADS, (unsigned long long)total);
    fflush(stdout);
    if (status >= 0)
        exit(status);
    return 0;
}
