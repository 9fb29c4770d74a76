/* rb_heads: the malloc family on sampled objects, which carry a header
 * (src/interpose/alloc.c), for tests/robust/robust.py (checks heads-*).
 *
 * Usage:
 *   rb_heads churn     two threads malloc, calloc, realloc (growing,
 *                      shrinking, to 0), the aligned family and free, from a
 *                      fixed seed, and hand a quarter of their blocks to the
 *                      other thread to free. Every block is filled to its
 *                      malloc_usable_size and its contents checked before
 *                      each realloc and free; calloc's blocks must be zero.
 *                      Then heads_keep allocates 100 blocks of 64 to 6400
 *                      bytes by malloc, calloc and realloc and keeps them.
 *                      Prints what it did (the same with and without
 *                      heapprof), `kept N BYTES`, and exits 0; a wrong byte
 *                      or size exits 1 with a line saying where.
 *   rb_heads deepbind PLUGIN
 *                      allocates 1000 blocks (some of 4 MiB, sampled at any
 *                      rate), then dlopens PLUGIN with RTLD_DEEPBIND, whose
 *                      free and realloc are the C library's, not heapprof's
 *                      (but for heapprof's rebinding), and hands it those
 *                      blocks to realloc and free, and 1000 more made after
 *                      the dlopen. Prints `freed`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS = 256, STEPS = 200000, HANDOFF = 64 };

struct block {
    unsigned char *p;
    size_t size; /* requested */
    unsigned char tag;
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fail(const char *what, size_t at, size_t size)
{
    printf("FAIL %s at byte %zu of %zu\n", what, at, size);
    fflush(stdout);
    exit(1);
}

/* Fills the whole usable block: a usable size larger than the block's real
 * room would overwrite the allocator's next chunk. */
static void fill(struct block *b)
{
    size_t usable = malloc_usable_size(b->p);
    if (usable < b->size)
        fail("malloc_usable_size below the size", usable, b->size);
    memset(b->p, b->tag, usable);
}

static void verify(const struct block *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b->p[i] != b->tag)
            fail("contents", i, n);
}

/* A size from 1 byte to 64 KiB, mostly small, some large. */
static size_t pick_size(uint64_t *s)
{
    unsigned shift = (unsigned)(next_rand(s) % 17);
    return 1 + (size_t)(next_rand(s) % ((size_t)1 << shift));
}

/* Blocks handed between the two threads, freed by the other. */
static pthread_mutex_t hand_mu = PTHREAD_MUTEX_INITIALIZER;
static struct block handed[2][HANDOFF];
static int handed_n[2];
static long counts[2][8];

static void hand_over(int self, struct block *b)
{
    pthread_mutex_lock(&hand_mu);
    struct block *box = handed[1 - self];
    if (handed_n[1 - self] < HANDOFF) {
        box[handed_n[1 - self]++] = *b;
        b->p = NULL;
    }
    pthread_mutex_unlock(&hand_mu);
}

static void take_handed(int self)
{
    pthread_mutex_lock(&hand_mu);
    for (int i = 0; i < handed_n[self]; i++) {
        verify(&handed[self][i], handed[self][i].size);
        free(handed[self][i].p);
    }
    handed_n[self] = 0;
    pthread_mutex_unlock(&hand_mu);
}

static void *churn(void *arg)
{
    int self = (int)(intptr_t)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(self + 1);
    struct block *slots = calloc(SLOTS, sizeof *slots);
    for (long step = 0; step < STEPS; step++) {
        struct block *b = &slots[next_rand(&s) % SLOTS];
        unsigned op = (unsigned)(next_rand(&s) % 8);
        counts[self][op]++;
        if (!b->p) {
            b->size = pick_size(&s);
            b->tag = (unsigned char)(1 + next_rand(&s) % 255);
            if (op == 0) {
                b->p = calloc(1, b->size);
                if (!b->p)
                    fail("calloc", 0, b->size);
                for (size_t i = 0; i < b->size; i++)
                    if (b->p[i])
                        fail("calloc's zeros", i, b->size);
            } else if (op == 1) {
                size_t align = (size_t)16 << (next_rand(&s) % 9); /* 16 to 4096 */
                /* (Alignment not checked: mimalloc 2.0.9 alone misses some.) */
                if (posix_memalign((void **)&b->p, align, b->size))
                    fail("posix_memalign", 0, b->size);
            } else if (op == 2) {
                b->p = realloc(NULL, b->size);
            } else {
                b->p = malloc(b->size);
            }
            if (!b->p)
                fail("allocation", 0, b->size);
            fill(b);
            continue;
        }
        verify(b, b->size);
        if (op <= 2) {
            /* Grow, shrink, or go to zero. */
            size_t size = op == 2 && next_rand(&s) % 8 == 0 ? 0 : pick_size(&s);
            unsigned char *q = realloc(b->p, size);
            if (size == 0) {
                free(q); /* NULL from glibc, which freed the block */
                b->p = NULL;
                continue;
            }
            if (!q)
                fail("realloc", 0, size);
            b->p = q;
            verify(b, size < b->size ? size : b->size);
            b->size = size;
            fill(b);
        } else if (op == 3) {
            hand_over(self, b);
            if (b->p) {
                free(b->p);
                b->p = NULL;
            }
        } else if (op == 4) {
            take_handed(self);
        } else {
            free(b->p);
            b->p = NULL;
        }
    }
    for (int i = 0; i < SLOTS; i++)
        free(slots[i].p);
    free(slots);
    return NULL;
}

static size_t kept_bytes;
static void *kept[100];

__attribute__((noinline)) static void heads_keep(void)
{
    for (int i = 0; i < 100; i++) {
        size_t size = 64 * (size_t)(i + 1);
        if (i % 3 == 0) {
            kept[i] = malloc(size);
        } else if (i % 3 == 1) {
            kept[i] = calloc(size / 16, 16);
        } else {
            kept[i] = realloc(NULL, size);
        }
        if (!kept[i])
            fail("heads_keep", 0, size);
        memset(kept[i], i, size);
        kept_bytes += size;
    }
}

static int run_churn(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, churn, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int self = 0; self < 2; self++) {
        take_handed(self);
        printf("thread %d:", self);
        for (int op = 0; op < 8; op++)
            printf(" %ld", counts[self][op]);
        printf("\n");
    }
    heads_keep();
    printf("kept 100 %zu\n", kept_bytes);
    return 0;
}

static int run_deepbind(const char *plugin)
{
    enum { N = 1000 };
    static char *before[N];
    for (int i = 0; i < N; i++) {
        before[i] = malloc(i % 100 == 0 ? (size_t)4 << 20 : 100 + (size_t)i);
        memset(before[i], 1, 100);
    }
    void *h = dlopen(plugin, RTLD_NOW | RTLD_DEEPBIND);
    if (!h) {
        printf("dlopen: %s\n", dlerror());
        return 1;
    }
    void (*plugin_free)(void *) = (void (*)(void *))dlsym(h, "rb_deep_free");
    void *(*plugin_realloc)(void *, size_t) =
        (void *(*)(void *, size_t))dlsym(h, "rb_deep_realloc");
    if (!plugin_free || !plugin_realloc) {
        printf("dlsym: %s\n", dlerror());
        return 1;
    }
    for (int i = 0; i < N; i++) {
        char *p = before[i];
        if (i % 2)
            p = plugin_realloc(p, 5000 + (size_t)i);
        for (int k = 0; k < 100; k++)
            if (p[k] != 1)
                fail("contents after the plugin's realloc", (size_t)k, 100);
        plugin_free(p);
    }
    for (int i = 0; i < N; i++) {
        char *p = malloc(100 + (size_t)i);
        if (i % 2)
            p = realloc(p, 5000 + (size_t)i);
        memset(p, 1, 100);
        plugin_free(p);
    }
    printf("freed\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "churn"))
        return run_churn();
    if (argc == 3 && !strcmp(argv[1], "deepbind"))
        return run_deepbind(argv[2]);
    fprintf(stderr, "usage: %s churn | deepbind PLUGIN\n", argv[0]);
    return 2;
}
