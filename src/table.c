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
#include <math.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hp_stack *stacks; /* uthash head, keyed by the addresses */
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

/* hash: hp_hash_bytes of the addresses, computed once by the caller. */
static struct hp_stack *find_stack(void **ips, int depth, unsigned hash)
{
    struct hp_stack *s;
    size_t keylen = (size_t)depth * sizeof(void *);
    HASH_FIND_BYHASHVALUE(hh, stacks, ips, keylen, hash, s);
    if (s)
        return s;
    s = hp_alloc(sizeof *s + keylen);
    if (!s)
        return NULL;
    s->depth = (uint32_t)depth;
    memcpy(s->ips, ips, keylen);
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, stacks, s->ips, keylen, hash, s);
    if (!s->hh.tbl) { /* uthash ran out of memory: it did not add s */
        hp_free(s, sizeof *s + keylen);
        return NULL;
    }
    s->id = ++nstacks;
    s->epoch = __atomic_load_n(&hp_dl_epoch, __ATOMIC_ACQUIRE);
    s->next_all = all_stacks;
    all_stacks = s;
    return s;
}

/* Two caches in front of the tables, both looked up without the table
 * lock. Buckets are never freed and their counters are atomic, so a cached
 * pointer always stays good; a hit is checked against the bucket's own stack
 * and size, so a stale or overwritten entry only costs a miss.
 * - per thread, the 8 buckets this thread sampled last: a loop that keeps
 *   allocating from one place finds its bucket in the first-level cache;
 * - for the process, 4096 slots picked by the same hash, each holding the
 *   last bucket seen there: the many (stack, size) pairs of a program that
 *   allocates every size from a few places mostly skip the lock and the
 *   walks along the hash chains, which each miss the cache. */
enum { TCACHE = 8, GCACHE_BITS = 12 };
struct tcache_entry {
    unsigned hash;
    uint64_t size;
    struct hp_bucket *bucket;
};
static HP_TLS struct tcache_entry tcache[TCACHE];
static struct hp_bucket *gcache[1u << GCACHE_BITS];

static bool is_bucket_of(const struct hp_bucket *b, void **ips, int depth, uint64_t size)
{
    return b->key.size == size && b->key.stack->depth == (uint32_t)depth &&
           !memcmp(b->key.stack->ips, ips, (size_t)depth * sizeof(void *));
}

struct hp_bucket *hp_table_record(void **ips, int depth, uint64_t size)
{
    size_t keylen = (size_t)depth * sizeof(void *);
    unsigned stack_hash = hp_hash_bytes(ips, keylen);
    unsigned hash = stack_hash ^ (unsigned)(size * 0x9e3779b9u);
    struct tcache_entry *te = &tcache[hash % TCACHE];
    struct hp_bucket *b = te->bucket;
    if (b && te->hash == hash && is_bucket_of(b, ips, depth, size)) {
        __atomic_fetch_add(&b->allocs, 1, __ATOMIC_RELAXED);
        return b;
    }
    struct hp_bucket **gslot = &gcache[(hash * 0x9e3779b1u) >> (32 - GCACHE_BITS)];
    b = __atomic_load_n(gslot, __ATOMIC_ACQUIRE);
    if (!b || !is_bucket_of(b, ips, depth, size)) {
        b = NULL;
        pthread_mutex_lock(&table_lock);
        struct hp_stack *s = find_stack(ips, depth, stack_hash);
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
        }
        pthread_mutex_unlock(&table_lock);
        if (!b)
            return NULL;
        /* Release: a thread that loads the pointer sees the bucket whole. */
        __atomic_store_n(gslot, b, __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(&b->allocs, 1, __ATOMIC_RELAXED);
    te->hash = hash;
    te->size = size;
    te->bucket = b;
    return b;
}

/* The copy of the tables at the last peak: bucket and its counts then.
 * Guarded by table_lock. */
struct peak_entry {
    const struct hp_bucket *bucket;
    uint64_t allocs, frees;
};
static struct peak_entry *peak;
static size_t npeak, peak_cap;

size_t hp_table_pcs_in(uintptr_t lo, uintptr_t hi, uintptr_t **out)
{
    pthread_mutex_lock(&table_lock);
    size_t n = 0;
    for (struct hp_stack *s = all_stacks; s; s = s->next_all)
        for (uint32_t d = 0; d < s->depth; d++)
            n += (uintptr_t)s->ips[d] >= lo && (uintptr_t)s->ips[d] < hi;
    *out = n ? hp_alloc(n * sizeof **out) : NULL;
    size_t i = 0;
    if (*out)
        for (struct hp_stack *s = all_stacks; s; s = s->next_all)
            for (uint32_t d = 0; d < s->depth; d++)
                if ((uintptr_t)s->ips[d] >= lo && (uintptr_t)s->ips[d] < hi)
                    (*out)[i++] = (uintptr_t)s->ips[d];
    pthread_mutex_unlock(&table_lock);
    return i;
}

void hp_peak_capture(void)
{
    pthread_mutex_lock(&table_lock);
    size_t n = 0;
    for (struct hp_bucket *b = all_buckets; b; b = b->next_all)
        n++;
    if (n > peak_cap) {
        /* Grow geometrically so that repeated captures rarely reallocate. */
        size_t cap = n * 2;
        struct peak_entry *np = hp_alloc(cap * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&table_lock);
            return;
        }
        hp_free(peak, peak_cap * sizeof *peak);
        peak = np;
        peak_cap = cap;
    }
    size_t i = 0;
    for (struct hp_bucket *b = all_buckets; b; b = b->next_all, i++) {
        peak[i].bucket = b;
        peak[i].allocs = __atomic_load_n(&b->allocs, __ATOMIC_RELAXED);
        peak[i].frees = __atomic_load_n(&b->frees, __ATOMIC_RELAXED);
    }
    npeak = n;
    pthread_mutex_unlock(&table_lock);
}

static void fill(struct hp_snap_bucket *sb, const struct hp_bucket *b, uint64_t allocs,
                 uint64_t frees)
{
    sb->stack = b->key.stack;
    sb->size = b->key.size;
    sb->bucket = b;
    /* A free racing with the copy may be counted before its allocation is
     * visible; never report more frees than allocations. */
    if (frees > allocs)
        frees = allocs;
    sb->allocs = (int64_t)allocs;
    sb->live = (int64_t)(allocs - frees);
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
    for (struct hp_bucket *b = all_buckets; b; b = b->next_all, i++)
        fill(&s->buckets[i], b, __atomic_load_n(&b->allocs, __ATOMIC_RELAXED),
             __atomic_load_n(&b->frees, __ATOMIC_RELAXED));
    s->nbuckets = n;
    pthread_mutex_unlock(&table_lock);
    hp_snapshot_estimate(s);
    return 0;
}

int hp_snapshot_peak(struct hp_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->rate = hp_cfg.rate;
    pthread_mutex_lock(&table_lock);
    if (!npeak) {
        pthread_mutex_unlock(&table_lock);
        return -ENOENT;
    }
    s->buckets = hp_arena_alloc(&s->arena, npeak * sizeof *s->buckets);
    if (!s->buckets) {
        pthread_mutex_unlock(&table_lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < npeak; i++)
        fill(&s->buckets[i], peak[i].bucket, peak[i].allocs, peak[i].frees);
    s->nbuckets = npeak;
    pthread_mutex_unlock(&table_lock);
    hp_snapshot_estimate(s);
    return 0;
}

static int by_bucket(const void *x, const void *y)
{
    const struct hp_snap_bucket *a = x, *b = y;
    return a->bucket < b->bucket ? -1 : a->bucket > b->bucket;
}

int hp_snapshot_delta(struct hp_snapshot *s, const struct hp_snapshot *base)
{
    /* Buckets are never removed, so every bucket of base is in s. Sort both
     * by bucket address and walk them together. */
    struct hp_snap_bucket *old = NULL;
    if (base->nbuckets) {
        old = hp_arena_alloc(&s->arena, base->nbuckets * sizeof *old);
        if (!old)
            return -ENOMEM;
        memcpy(old, base->buckets, base->nbuckets * sizeof *old);
        qsort(old, base->nbuckets, sizeof *old, by_bucket);
    }
    qsort(s->buckets, s->nbuckets, sizeof *s->buckets, by_bucket);
    size_t j = 0, out = 0;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct hp_snap_bucket b = s->buckets[i];
        while (j < base->nbuckets && old[j].bucket < b.bucket)
            j++;
        if (j < base->nbuckets && old[j].bucket == b.bucket) {
            b.allocs -= old[j].allocs;
            b.live -= old[j].live;
        }
        if (b.allocs || b.live)
            s->buckets[out++] = b;
    }
    s->nbuckets = out;
    hp_snapshot_estimate(s);
    return 0;
}

static int by_stack_size(const void *x, const void *y)
{
    const struct hp_snap_bucket *a = x, *b = y;
    if (a->stack->id != b->stack->id)
        return a->stack->id < b->stack->id ? -1 : 1;
    return a->size < b->size ? -1 : a->size > b->size;
}

/* Each bucket stands for count / p(size) objects, p(s) = 1 - exp(-s/R)
 * (Go's unbiasing; exact per bucket since its objects share one size). The
 * profile needs integers. Go truncates every bucket, which loses up to one
 * object per bucket: when a stack's objects have many sizes near or above
 * the rate, nearly every bucket holds one sample of weight 1.0-1.6 and the
 * object estimate comes out some 14% low (measured by tests/stats). Here
 * the buckets of one stack share their rounding: each gets the rounded
 * running total minus what the buckets before it got, so every stack's
 * total is its exact estimate rounded to the nearest integer, and the
 * per-bucket values still sum to it. */
void hp_snapshot_estimate(struct hp_snapshot *s)
{
    qsort(s->buckets, s->nbuckets, sizeof *s->buckets, by_stack_size);
    double exact[4] = {0, 0, 0, 0};
    int64_t given[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct hp_snap_bucket *b = &s->buckets[i];
        if (i == 0 || b->stack != s->buckets[i - 1].stack) {
            memset(exact, 0, sizeof exact);
            memset(given, 0, sizeof given);
        }
        double scale = hp_unbias_scale(b->size, s->rate);
        exact[0] += (double)b->allocs * scale;
        exact[1] += (double)b->allocs * (double)b->size * scale;
        exact[2] += (double)b->live * scale;
        exact[3] += (double)b->live * (double)b->size * scale;
        for (int k = 0; k < 4; k++) {
            int64_t total = llround(exact[k]);
            b->est[k] = total - given[k];
            given[k] = total;
        }
    }
}

void hp_snapshot_release(struct hp_snapshot *s)
{
    hp_arena_release(&s->arena);
}
