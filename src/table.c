/* The stack table: one entry per distinct call stack, and per (stack, object
 * size) a bucket counting sampled allocations and frees.
 *
 * Buckets are keyed by size as well as stack, as Go's runtime keys them, so
 * every object in a bucket has the same size and Go's per-bucket unbiasing
 * (which divides by the sampling probability of the bucket's average size)
 * is exact for it: for mixed sizes under one stack, averaging first would
 * bias the estimate, since 1/p(s) is not linear in s.
 *
 * Entries are never removed: a stack's counts are cumulative, and the
 * profile needs every stack that ever allocated. Both tables sit behind one
 * mutex, taken only on the sampled path (after unwinding) and by a dump.
 */
#include "hp.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hp_stack *stacks;   /* uthash head, keyed by the addresses */
static struct hp_stack *all_stacks;
static struct hp_bucket *buckets; /* uthash head, keyed by (stack, size) */
static struct hp_bucket *all_buckets;
static uint32_t nstacks;

void hp_table_lock(void)
{
    pthread_mutex_lock(&table_lock);
}

void hp_table_unlock(void)
{
    pthread_mutex_unlock(&table_lock);
}

void hp_table_child(void)
{
    pthread_mutex_init(&table_lock, NULL);
}

static struct hp_stack *find_stack(void **ips, int depth)
{
    struct hp_stack *s;
    size_t keylen = (size_t)depth * sizeof(void *);
    HASH_FIND(hh, stacks, ips, keylen, s);
    if (s)
        return s;
    s = hp_alloc(sizeof *s + keylen);
    if (!s)
        return NULL;
    s->depth = (uint32_t)depth;
    memcpy(s->ips, ips, keylen);
    HASH_ADD_KEYPTR(hh, stacks, s->ips, keylen, s);
    if (!s->hh.tbl) { /* uthash ran out of memory: it did not add s */
        hp_free(s, sizeof *s + keylen);
        return NULL;
    }
    s->id = ++nstacks;
    s->next_all = all_stacks;
    all_stacks = s;
    return s;
}

struct hp_bucket *hp_table_record(void **ips, int depth, uint64_t size)
{
    struct hp_bucket *b = NULL;
    pthread_mutex_lock(&table_lock);
    struct hp_stack *s = find_stack(ips, depth);
    if (s) {
        struct hp_bucket_key key;
        memset(&key, 0, sizeof key);
        key.stack = s;
        key.size = size;
        HASH_FIND(hh, buckets, &key, sizeof key, b);
        if (!b && (b = hp_alloc(sizeof *b)) != NULL) {
            b->key = key;
            HASH_ADD(hh, buckets, key, sizeof key, b);
            if (!b->hh.tbl) {
                hp_free(b, sizeof *b);
                b = NULL;
            } else {
                b->next_all = all_buckets;
                all_buckets = b;
            }
        }
        if (b)
            __atomic_fetch_add(&b->allocs, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&table_lock);
    return b;
}

struct hp_bucket *hp_table_buckets(void)
{
    return all_buckets;
}

uint32_t hp_table_nstacks(void)
{
    return nstacks;
}

int hp_snapshot_take(struct hp_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->rate = hp_cfg.rate;
    pthread_mutex_lock(&table_lock);
    size_t n = 0;
    for (struct hp_bucket *b = all_buckets; b; b = b->next_all)
        n++;
    s->buckets = n ? hp_arena_alloc(&s->arena, n * sizeof *s->buckets) : NULL;
    if (n && !s->buckets) {
        pthread_mutex_unlock(&table_lock);
        return -ENOMEM;
    }
    size_t i = 0;
    for (struct hp_bucket *b = all_buckets; b; b = b->next_all, i++) {
        s->buckets[i].stack = b->key.stack;
        s->buckets[i].size = b->key.size;
        s->buckets[i].allocs = __atomic_load_n(&b->allocs, __ATOMIC_RELAXED);
        s->buckets[i].frees = __atomic_load_n(&b->frees, __ATOMIC_RELAXED);
        /* A free racing with this copy may be counted before its alloc was
         * visible; never report more frees than allocations. */
        if (s->buckets[i].frees > s->buckets[i].allocs)
            s->buckets[i].frees = s->buckets[i].allocs;
    }
    s->nbuckets = n;
    pthread_mutex_unlock(&table_lock);
    return 0;
}

void hp_snapshot_release(struct hp_snapshot *s)
{
    hp_arena_release(&s->arena);
}
