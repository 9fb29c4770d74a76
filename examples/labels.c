/* labels: a server-like program whose heap samples say who allocated them.
 *
 * Three worker threads, named worker-0 to worker-2 (pthread_setname_np),
 * handle requests of three kinds. Around each request the worker pushes the
 * label kind=get|put|scan (heapprof_label_push), and around each group of
 * requests tenant=a|b, so labels nest; a few allocations are made outside
 * any label. Each request allocates buffers of varied sizes and keeps one in
 * seven alive until exit; the rest are freed before the request ends.
 *
 * The program counts what it allocates per (thread, tenant, kind) and
 * prints it, so that tests can hold heapprof's profile to it exactly
 * (HEAPPROF_RATE=1):
 *     truth thread=worker-1 tenant=a kind=put alloc_objects=N alloc_bytes=N
 *           inuse_objects=N inuse_bytes=N
 * (one line each; tenant and kind are "-" where no label was pushed). With
 * `limits` it also checks the API's limits and prints what push returned.
 *
 * Usage: labels [limits | wait]
 * With `wait` it then waits until its standard input is closed, so that a
 * test can read its live profile (HEAPPROF_HTTP) with the counts known.
 * Built linked against heapprof (it calls heapprof.h); with profiling off
 * the pushes are no-ops that return 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heapprof.h"

enum { WORKERS = 3, REQUESTS = 300, KEEP_EVERY = 7 };
static const char *const kinds[] = {"get", "put", "scan"};
static const char *const tenants[] = {"a", "b"};

struct count {
    char tenant[8], kind[8];
    uint64_t alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
};
/* Per worker: every (tenant, kind) and the unlabeled ("-", "-"). */
struct worker {
    pthread_t thread;
    int index;
    struct count counts[2 * 3 + 1];
    void **kept;
    size_t nkept, capkept;
};

static struct count *count_of(struct worker *w, const char *tenant, const char *kind)
{
    for (int i = 0; i < 7; i++) {
        struct count *c = &w->counts[i];
        if (!c->tenant[0]) {
            snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
            snprintf(c->kind, sizeof c->kind, "%s", kind);
            return c;
        }
        if (!strcmp(c->tenant, tenant) && !strcmp(c->kind, kind))
            return c;
    }
    abort();
}

/* Keeps p alive until exit. The list grows under the labels in force too,
 * but from its own stack (keep_alive as the leaf): the counts are request_alloc's. */
__attribute__((noinline)) static void keep_alive(struct worker *w, void *p)
{
    if (w->nkept == w->capkept) {
        w->capkept = w->capkept ? 2 * w->capkept : 64;
        w->kept = realloc(w->kept, w->capkept * sizeof *w->kept);
        if (!w->kept)
            abort();
    }
    w->kept[w->nkept++] = p;
}

/* One allocation of size bytes, counted under (tenant, kind); kept alive
 * when keep. */
__attribute__((noinline)) static void request_alloc(struct worker *w, const char *tenant,
                                                    const char *kind, size_t size, int keep)
{
    char *p = malloc(size);
    if (!p)
        abort();
    memset(p, 1, size < 64 ? size : 64);
    struct count *c = count_of(w, tenant, kind);
    c->alloc_objects++;
    c->alloc_bytes += size;
    if (!keep) {
        free(p);
        return;
    }
    c->inuse_objects++;
    c->inuse_bytes += size;
    keep_alive(w, p);
}

static void must_push(const char *key, const char *value)
{
    int r = heapprof_label_push(key, value);
    if (r != 0) {
        fprintf(stderr, "labels: heapprof_label_push(%s, %s): %d\n", key, value, r);
        exit(1);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    /* Named before its first allocation: a rename applies to what follows. */
    char name[16];
    snprintf(name, sizeof name, "worker-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    unsigned x = 12345u + (unsigned)w->index * 977u;
    for (int g = 0; g < REQUESTS / 10; g++) {
        const char *tenant = tenants[g % 2];
        must_push("tenant", tenant);
        for (int r = 0; r < 10; r++) {
            const char *kind = kinds[(g * 10 + r + w->index) % 3];
            must_push("kind", kind);
            for (int a = 0; a < 4; a++) {
                x = x * 1103515245u + 12345u;
                size_t size = 16 + (x >> 16) % 4000;
                request_alloc(w, tenant, kind, size, (x >> 8) % KEEP_EVERY == 0);
            }
            heapprof_label_pop();
        }
        heapprof_label_pop();
        /* Between groups, outside any label. */
        request_alloc(w, "-", "-", 100 + (size_t)g, g % 5 == 0);
    }
    return NULL;
}

/* The API's limits: prints each push's result, pops as many times. */
static void limits(void)
{
    char longkey[HEAPPROF_LABEL_KEY_MAX + 2], longvalue[HEAPPROF_LABEL_VALUE_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    memset(longvalue, 'v', sizeof longvalue - 1);
    longvalue[sizeof longvalue - 1] = 0;
    printf("limits null-key %d\n", heapprof_label_push(NULL, "x"));
    heapprof_label_pop();
    printf("limits long-key %d\n", heapprof_label_push(longkey, "x"));
    heapprof_label_pop();
    printf("limits long-value %d\n", heapprof_label_push("k", longvalue));
    heapprof_label_pop();
    int last = 0;
    for (int i = 0; i <= HEAPPROF_LABELS_MAX; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        last = heapprof_label_push(key, "v");
    }
    printf("limits one-too-many %d\n", last);
    for (int i = 0; i <= HEAPPROF_LABELS_MAX; i++)
        heapprof_label_pop();
    printf("limits balanced %d\n", heapprof_label_push("k", "v"));
    heapprof_label_pop();
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "limits"))
        limits();
    static struct worker workers[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        workers[i].index = i;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            return 1;
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < WORKERS; i++)
        for (int k = 0; k < 7 && workers[i].counts[k].tenant[0]; k++) {
            const struct count *c = &workers[i].counts[k];
            printf("truth thread=worker-%d tenant=%s kind=%s alloc_objects=%llu "
                   "alloc_bytes=%llu inuse_objects=%llu inuse_bytes=%llu\n",
                   i, c->tenant, c->kind, (unsigned long long)c->alloc_objects,
                   (unsigned long long)c->alloc_bytes, (unsigned long long)c->inuse_objects,
                   (unsigned long long)c->inuse_bytes);
        }
    if (argc > 1 && !strcmp(argv[1], "wait")) {
        /* Rewrite the title, as servers do (setproctitle): the endpoint's
         * cmdline must still give the arguments the program started with. */
        memset(argv[0], 'x', strlen(argv[0]));
        fflush(stdout);
        char buf[64];
        while (fread(buf, 1, sizeof buf, stdin) > 0)
            ;
    }
    return 0;
}
