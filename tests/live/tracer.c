/* Three named threads doing known work in known label scopes, for the
 * execution trace's tests (test_trace.py).
 *
 *   tracer PATH   waits for a line on stdin, then traces (heapprof_trace_start)
 *                 one round of the work below, stops the trace (written to
 *                 PATH), prints "done RC" and waits for stdin to close.
 *   tracer -      the threads repeat the round until stdin closes (for the
 *                 endpoint); prints "ready" once they run.
 *
 * A round: thread "trc-light" runs LIGHT_N scopes work=light, each burning
 * CPU in burn_light for UNIT; "trc-heavy" runs HEAVY_N scopes work=heavy in
 * burn_heavy for 4 UNIT; "trc-alloc" runs ALLOC_N scopes work=alloc, each
 * with one nested scope step=inner, allocating ALLOC_BLOCKS blocks of
 * 256 KiB it keeps (so the heap's in-use bytes grow) and burning in
 * burn_alloc. It prints its truth: "truth light=N heavy=N alloc=N inner=N".
 */
#define _GNU_SOURCE
#include <heapprof.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LIGHT_N = 6, HEAVY_N = 3, ALLOC_N = 4, ALLOC_BLOCKS = 8 };
#define UNIT_NS 20000000LL /* 20 ms of CPU */

static volatile int stop;
static volatile unsigned long sink;
static int forever;
static void *kept[ALLOC_N * ALLOC_BLOCKS * 64];
static int nkept;
static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;

static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static __attribute__((noinline)) void spin(long long ns)
{
    long long end = cpu_ns() + ns;
    unsigned long x = sink;
    while (cpu_ns() < end)
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005UL + 1442695040888963407UL;
    sink = x;
}

static __attribute__((noinline)) void burn_light(void)
{
    spin(UNIT_NS);
}

static __attribute__((noinline)) void burn_heavy(void)
{
    spin(4 * UNIT_NS);
}

static __attribute__((noinline)) void burn_alloc(void)
{
    spin(UNIT_NS);
}

static __attribute__((noinline)) void *alloc_block(void)
{
    void *p = malloc(256 << 10);
    memset(p, 1, 256 << 10);
    return p;
}

static void *light(void *arg)
{
    pthread_setname_np(pthread_self(), "trc-light");
    pthread_barrier_t *b = arg;
    do {
        if (!forever)
            pthread_barrier_wait(b);
        for (int i = 0; i < LIGHT_N; i++) {
            heapprof_label_push("work", "light");
            burn_light();
            heapprof_label_pop();
        }
        if (!forever)
            pthread_barrier_wait(b);
    } while (forever && !stop);
    return NULL;
}

static void *heavy(void *arg)
{
    pthread_setname_np(pthread_self(), "trc-heavy");
    pthread_barrier_t *b = arg;
    do {
        if (!forever)
            pthread_barrier_wait(b);
        for (int i = 0; i < HEAVY_N; i++) {
            heapprof_label_push("work", "heavy");
            burn_heavy();
            heapprof_label_pop();
        }
        if (!forever)
            pthread_barrier_wait(b);
    } while (forever && !stop);
    return NULL;
}

static void *allocer(void *arg)
{
    pthread_setname_np(pthread_self(), "trc-alloc");
    pthread_barrier_t *b = arg;
    do {
        if (!forever)
            pthread_barrier_wait(b);
        for (int i = 0; i < ALLOC_N; i++) {
            heapprof_label_push("work", "alloc");
            heapprof_label_push("step", "inner");
            for (int k = 0; k < ALLOC_BLOCKS; k++) {
                void *p = alloc_block();
                pthread_mutex_lock(&kept_mu);
                if (nkept < (int)(sizeof kept / sizeof kept[0]))
                    kept[nkept++] = p;
                else
                    free(p);
                pthread_mutex_unlock(&kept_mu);
            }
            burn_alloc();
            heapprof_label_pop();
            heapprof_label_pop();
        }
        if (!forever)
            pthread_barrier_wait(b);
    } while (forever && !stop);
    return NULL;
}

static void *stdin_watch(void *arg)
{
    (void)arg;
    char buf[256];
    while (fgets(buf, sizeof buf, stdin))
        ;
    stop = 1;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tracer PATH|-\n");
        return 2;
    }
    forever = !strcmp(argv[1], "-");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("truth light=%d heavy=%d alloc=%d inner=%d\n", LIGHT_N, HEAVY_N, ALLOC_N, ALLOC_N);
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 4);
    pthread_t t[3];
    pthread_create(&t[0], NULL, light, &b);
    pthread_create(&t[1], NULL, heavy, &b);
    pthread_create(&t[2], NULL, allocer, &b);
    if (forever) {
        printf("ready\n");
        stdin_watch(NULL);
        for (int i = 0; i < 3; i++)
            pthread_join(t[i], NULL);
        return 0;
    }
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 0;
    int r = heapprof_trace_start(argv[1]);
    if (r) {
        printf("done %d\n", r);
    } else {
        pthread_barrier_wait(&b);
        pthread_barrier_wait(&b);
        printf("done %d\n", heapprof_trace_stop());
    }
    while (fgets(line, sizeof line, stdin))
        ;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return 0;
}
