/* rb_stress: everything at once for a bounded time, for the robustness tests
 * (tests/robust/robust.py, checks stress-default and stress-exact).
 *
 * Usage: rb_stress SECONDS PLUGIN
 * For SECONDS seconds:
 *   4 workers   malloc/calloc/aligned allocations of random sizes (now and
 *               then 64 KiB to 1 MiB), realloc, frees of their own blocks, and
 *               frees of blocks other workers put in a shared exchange
 *   a forker    forks every 150 ms; each child allocates (stress_child),
 *               frees, and ends with exit(0) (a profile) or, every third one,
 *               with _exit(0) (none)
 *   a loader    dlopens PLUGIN, calls plugin_churn, dlcloses it, again and
 *               again
 * Then the workers stop, the main thread frees every block still held, and
 * only stress_leak's blocks (LEAKS x 333 bytes, allocated at start) remain.
 *
 * Output, for the test to hold heapprof's exact mode to (one line each):
 *   child PID exit|_exit    per child
 *   site NAME ALLOCS BYTES  per allocation site: calls that returned a block,
 *                           and the bytes they asked for (realloc counts as an
 *                           allocation of its new size)
 *   leak stress_leak OBJECTS BYTES
 * Exits 0, or 1 if something failed (said on stderr).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline))

enum { WORKERS = 4, HELD = 256, EXCHANGE = 1024, LEAKS = 7, LEAK_SIZE = 333, MAX_CHILDREN = 64 };

enum site { S_ALLOC, S_CALLOC, S_ALIGNED, S_REALLOC, NSITES };
static const char *const site_names[NSITES] = {"stress_alloc", "stress_calloc", "stress_aligned",
                                               "stress_realloc"};

struct counts {
    uint64_t allocs[NSITES];
    uint64_t bytes[NSITES];
};

struct worker {
    pthread_t tid;
    uint64_t rng;
    void *held[HELD];
    struct counts c;
};

static struct worker workers[WORKERS];
static volatile int stop;
static int failed;

/* Blocks handed from one worker to another. */
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static void *exchange[EXCHANGE];
static size_t exchange_n;

static void *leaks[LEAKS];
static const char *plugin_path;

static void fail(const char *what)
{
    fprintf(stderr, "rb_stress: %s: %s\n", what, strerror(errno));
    __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t random_size(uint64_t *rng)
{
    uint64_t r = next(rng);
    if (r % 100 == 0)
        return 65536 + (size_t)(r >> 8) % (1 << 20); /* now and then a large block */
    return 1 + (size_t)(r >> 8) % 4096;
}

static void count(struct worker *w, enum site s, size_t size)
{
    w->c.allocs[s]++;
    w->c.bytes[s] += size;
}

SITE static void *stress_alloc(struct worker *w, size_t size)
{
    void *p = malloc(size);
    if (p) {
        memset(p, 1, size < 64 ? size : 64);
        count(w, S_ALLOC, size);
    }
    return p;
}

SITE static void *stress_calloc(struct worker *w, size_t size)
{
    void *p = calloc(size, 1);
    if (p)
        count(w, S_CALLOC, size);
    return p;
}

SITE static void *stress_aligned(struct worker *w, size_t size)
{
    void *p = NULL;
    if (next(&w->rng) & 1) {
        if (posix_memalign(&p, 64, size) != 0)
            p = NULL;
    } else {
        p = aligned_alloc(256, (size + 255) & ~(size_t)255);
        size = (size + 255) & ~(size_t)255;
    }
    if (p) {
        memset(p, 2, size < 64 ? size : 64);
        count(w, S_ALIGNED, size);
    }
    return p;
}

SITE static void *stress_realloc(struct worker *w, void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q) {
        memset(q, 3, size < 64 ? size : 64);
        count(w, S_REALLOC, size);
    }
    return q;
}

/* Puts p in the exchange for another worker to free; false when full. */
static bool give(void *p)
{
    bool ok = false;
    pthread_mutex_lock(&exchange_lock);
    if (exchange_n < EXCHANGE) {
        exchange[exchange_n++] = p;
        ok = true;
    }
    pthread_mutex_unlock(&exchange_lock);
    return ok;
}

static void *take(void)
{
    void *p = NULL;
    pthread_mutex_lock(&exchange_lock);
    if (exchange_n > 0)
        p = exchange[--exchange_n];
    pthread_mutex_unlock(&exchange_lock);
    return p;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        uint64_t r = next(&w->rng);
        unsigned i = (unsigned)(r >> 32) % HELD;
        size_t size = random_size(&w->rng);
        switch (r % 8) {
        case 0:
        case 1:
        case 2:
            free(w->held[i]);
            w->held[i] = stress_alloc(w, size);
            break;
        case 3:
            free(w->held[i]);
            w->held[i] = stress_calloc(w, size);
            break;
        case 4:
            free(w->held[i]);
            w->held[i] = stress_aligned(w, size);
            break;
        case 5:
            if (w->held[i]) {
                void *q = stress_realloc(w, w->held[i], size);
                if (q)
                    w->held[i] = q;
            }
            break;
        case 6:
            /* Another worker frees this one. */
            if (w->held[i] && give(w->held[i]))
                w->held[i] = NULL;
            break;
        case 7:
            free(take());
            break;
        }
    }
    return NULL;
}

SITE static void stress_child(void)
{
    void *keep[32];
    for (int i = 0; i < 32; i++) {
        keep[i] = malloc(100 + (size_t)i);
        if (keep[i])
            memset(keep[i], 4, 100);
    }
    for (int i = 0; i < 32; i += 2)
        free(keep[i]);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *forker_main(void *arg)
{
    (void)arg;
    for (int n = 0; n < MAX_CHILDREN && !__atomic_load_n(&stop, __ATOMIC_RELAXED); n++) {
        sleep_ms(150);
        bool quick = n % 3 == 2;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            fail("fork");
            break;
        }
        if (pid == 0) {
            stress_child();
            if (quick)
                _exit(0);
            exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid) {
            fail("waitpid");
            break;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "rb_stress: child %ld ended with status 0x%x\n", (long)pid, st);
            __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
        }
        printf("child %ld %s\n", (long)pid, quick ? "_exit" : "exit");
    }
    return NULL;
}

static void *loader_main(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        void *h = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "rb_stress: %s\n", dlerror());
            __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
            break;
        }
        unsigned (*churn)(unsigned);
        *(void **)&churn = dlsym(h, "plugin_churn");
        if (churn)
            churn(200);
        dlclose(h);
        sleep_ms(20);
    }
    return NULL;
}

SITE static void stress_leak(void)
{
    for (int i = 0; i < LEAKS; i++) {
        leaks[i] = malloc(LEAK_SIZE);
        if (leaks[i])
            memset(leaks[i], 5, LEAK_SIZE);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fputs("usage: rb_stress SECONDS PLUGIN\n", stderr);
        return 2;
    }
    double seconds = atof(argv[1]);
    plugin_path = argv[2];
    stress_leak();

    for (int i = 0; i < WORKERS; i++) {
        workers[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
            fail("pthread_create");
            return 1;
        }
    }
    pthread_t forker, loader;
    if (pthread_create(&forker, NULL, forker_main, NULL) != 0 ||
        pthread_create(&loader, NULL, loader_main, NULL) != 0) {
        fail("pthread_create");
        return 1;
    }
    sleep_ms((long)(seconds * 1000));
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i].tid, NULL);
    pthread_join(forker, NULL);
    pthread_join(loader, NULL);

    struct counts total = {{0}, {0}};
    for (int i = 0; i < WORKERS; i++) {
        for (int k = 0; k < HELD; k++)
            free(workers[i].held[k]);
        for (int s = 0; s < NSITES; s++) {
            total.allocs[s] += workers[i].c.allocs[s];
            total.bytes[s] += workers[i].c.bytes[s];
        }
    }
    for (void *p; (p = take()) != NULL;)
        free(p);
    for (int s = 0; s < NSITES; s++)
        printf("site %s %llu %llu\n", site_names[s], (unsigned long long)total.allocs[s],
               (unsigned long long)total.bytes[s]);
    int nleaks = 0;
    for (int i = 0; i < LEAKS; i++)
        nleaks += leaks[i] != NULL;
    printf("leak stress_leak %d %d\n", nleaks, nleaks * LEAK_SIZE);
    return __atomic_load_n(&failed, __ATOMIC_RELAXED) ? 1 : 0;
}
