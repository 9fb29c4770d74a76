/* The stack table: every call stack heapprof has sampled, stored as a tree
 * of frames, and per (stack, size class) a bucket of cumulative counts.
 *
 * Memory is bounded by the program's code, not by its run time:
 *
 * - Stacks are paths in a tree of frames (a trie from the outermost frame
 *   inwards, as heaptrack keeps its traces): a node is one return address
 *   under its caller's node, 32 bytes. Stacks that share their outer frames
 *   (recursion, deep call paths) share those nodes, so a new stack that
 *   differs from a known one in its last frame costs one node. A stack is
 *   named by its innermost node (its leaf).
 * - Buckets are keyed by (stack, size class), the class being the size's
 *   binary order of magnitude ([2^(k-1), 2^k) for class k), not by the exact
 *   size: a stack has at most 65 buckets, and in practice a handful, however
 *   many distinct sizes it allocates. Since one bucket now holds objects of
 *   different sizes, unbiasing is done per sample, not per bucket: a
 *   sampled object of s bytes adds 1/p(s) to the bucket's object estimate
 *   and s/p(s) to its byte estimate (Horvitz-Thompson; jemalloc unbiases
 *   the same way), which is unbiased for any mix of sizes. In-use values are
 *   not kept here: a snapshot sums the same weights over the live set, which
 *   holds each sampled object's size (live.c), so a free never writes a
 *   bucket.
 * - Everything here counts against HEAPPROF_MAX_MEMORY. When a new frame or
 *   bucket would pass it, the stack is folded into one stack, "[other]",
 *   made at start-up; heapprof says so once on stderr and in the profile's
 *   comment, and the estimates stay whole.
 *
 * Concurrency. Nodes and buckets live in chunked arrays that never move and
 * are never freed. A node's children and buckets are lists that grow at
 * their head, and the children of wide nodes are also in an insert-only
 * open-addressing index whose slots are written once: lookups need no lock.
 * Inserts take the table lock. An index that grows is copied; the old copy
 * stays mapped (a reader may still be probing it; it then misses and retries
 * under the lock), which at most doubles the index's memory and is counted.
 * Each thread also keeps the stack it recorded last, with its nodes: a new
 * stack is matched from its outermost frame against it, and only the frames
 * that differ are looked up, which in exact mode (every allocation
 * recorded) is most of the work saved. Counts are kept in per-thread
 * stripes (below).
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

enum {
    NODE_CHUNK_BITS = 13, /* 8192 nodes of 32 bytes: 256 KiB a chunk */
    NODE_CHUNK = 1 << NODE_CHUNK_BITS,
    NODE_DIR = 2048, /* 16M nodes, what the index can number */
    BUCKET_CHUNK_BITS = 13,
    BUCKET_CHUNK = 1 << BUCKET_CHUNK_BITS,
    BUCKET_DIR = 2048, /* at most 16M buckets: live.c keeps 24-bit numbers */
    MIN_INDEX = 1024,
    /* A node with more children than this has them in the index too. */
    WIDE = 8,
};

/* A frame. Its children are a list from the newest, linked through
 * next_sibling: a node has few callees, and in a program that walks the same
 * paths again, nodes made one after another are read one after another. A
 * node with more than WIDE children is looked up in the index instead. Its
 * buckets (one per size class seen with this node as the leaf) are a list
 * too. Lists grow at their head: a reader without the lock sees a whole
 * list, perhaps without its newest entry. */
struct node {
    uintptr_t ip;          /* return address; HP_OTHER_IP for the [other] stack */
    uint32_t parent;       /* caller's node; 0 (the root) for the outermost frame */
    uint32_t epoch;        /* dlclose calls seen when the node was made */
    uint32_t first_child;  /* newest child, 0: none */
    uint32_t next_sibling; /* next older child of the parent */
    uint32_t first_bucket; /* newest bucket of the stack that ends here */
    uint32_t kids;         /* number of children */
};

/* An insert-only index of the children of wide nodes. A slot holds the
 * node's number (24 bits; nodes are numbered from 1, so 0 is an empty slot)
 * and the top 8 bits of its hash, so that a probe reads the node (a cache
 * miss) only once in 256 times when it is not the one. */
struct index {
    uint32_t mask;
    uint32_t count;
    struct index *retired; /* the smaller copies it replaced */
    uint32_t slots[];
};
#define SLOT_ID(v) ((v)&0xffffffu)
#define SLOT_TAG(h) ((uint32_t)(h)&0xff000000u)

/* A bucket's counts: sampled allocations and their weights. They are kept
 * in stripes, so that threads sampling the same stack do not write one
 * cache line, and a snapshot adds the stripes up. Stripes 1 to 7 belong to
 * one thread each while it lives (the first threads to sample take them,
 * and give them back when they exit): their owner adds with plain loads and
 * stores, no locked instruction. Other threads share stripe 0 and add
 * atomically. Stripe 0 is made with the buckets, the others when their
 * owner first counts in that chunk of buckets (a thread whose stripe cannot
 * be made counts in stripe 0). */
enum { NSTRIPES = 8 };
struct counts {
    uint64_t allocs;
    double w_objects, w_bytes;
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct counts *count_dir[NSTRIPES][BUCKET_DIR];
static HP_TLS int my_stripe = -1; /* -1: none yet; 0: shared */
static int stripe_owned[NSTRIPES];
static pthread_key_t stripe_key;
static bool stripe_key_made;

static void stripe_release(void *v)
{
    /* Run by the exiting thread; what it still allocates afterwards (in
     * the program's own key destructors) goes to the shared stripe. */
    my_stripe = 0;
    __atomic_store_n(&stripe_owned[(uintptr_t)v - 1], 0, __ATOMIC_RELEASE);
}

static struct node *node_dir[NODE_DIR];
static struct hp_bucket *bucket_dir[BUCKET_DIR];
static uint32_t nnodes = 1;   /* node 0 is the root: the empty stack */
static uint32_t nbuckets = 1; /* bucket 0 means none */
static struct index *child_index;
static size_t table_bytes;
static uint32_t other_node;
static bool folded; /* a stack was folded into [other] */

/* Nearest integer, halves away from zero (as llround, without libm). */
static int64_t round_int(double x)
{
    return (int64_t)(x < 0 ? x - 0.5 : x + 0.5);
}

static void *table_alloc(size_t size)
{
    void *p = hp_alloc(size);
    if (p)
        table_bytes += size;
    return p;
}

static bool over_limit(size_t more)
{
    return table_bytes + more > hp_cfg.max_memory;
}

static inline struct node *node_at(uint32_t i)
{
    return &__atomic_load_n(&node_dir[i >> NODE_CHUNK_BITS],
                            __ATOMIC_ACQUIRE)[i & (NODE_CHUNK - 1)];
}

struct hp_bucket *hp_bucket_at(uint32_t i)
{
    return &__atomic_load_n(&bucket_dir[i >> BUCKET_CHUNK_BITS],
                            __ATOMIC_ACQUIRE)[i & (BUCKET_CHUNK - 1)];
}

static inline unsigned child_hash(uint32_t parent, uintptr_t ip)
{
    uint64_t h = (ip ^ (parent * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    h *= 0x94d049bb133111ebull;
    return (unsigned)(h ^ (h >> 29));
}

static uint32_t index_find(uint32_t parent, uintptr_t ip)
{
    struct index *t = __atomic_load_n(&child_index, __ATOMIC_ACQUIRE);
    if (!t)
        return 0;
    unsigned h = child_hash(parent, ip);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t v = __atomic_load_n(&t->slots[i], __ATOMIC_ACQUIRE);
        if (!v)
            return 0;
        if (SLOT_TAG(v) != SLOT_TAG(h))
            continue;
        const struct node *nd = node_at(SLOT_ID(v));
        if (nd->ip == ip && nd->parent == parent)
            return SLOT_ID(v);
    }
}

/* The child of parent for ip, or 0. Without the lock it may miss a child
 * being added; under it, it is exact. */
static uint32_t find_child(uint32_t parent, uintptr_t ip)
{
    const struct node *p = node_at(parent);
    if (__atomic_load_n(&p->kids, __ATOMIC_ACQUIRE) > WIDE)
        return index_find(parent, ip);
    for (uint32_t c = __atomic_load_n(&p->first_child, __ATOMIC_ACQUIRE); c;) {
        const struct node *nd = node_at(c);
        if (nd->ip == ip)
            return c;
        c = nd->next_sibling;
    }
    return 0;
}

static uint32_t find_bucket(uint32_t stack, unsigned cls, uint32_t labels)
{
    uint32_t b = __atomic_load_n(&node_at(stack)->first_bucket, __ATOMIC_ACQUIRE);
    while (b) {
        const struct hp_bucket *bk = hp_bucket_at(b);
        if (bk->cls == cls && bk->labels == labels)
            return b;
        b = bk->next;
    }
    return 0;
}

static size_t index_size(uint32_t cap)
{
    return sizeof(struct index) + (size_t)cap * sizeof(uint32_t);
}

/* Under the lock: room for more entries, at most 3/4 full. */
static bool index_reserve(uint32_t more, bool limited)
{
    struct index *t = child_index;
    uint32_t cap = t ? t->mask + 1 : MIN_INDEX / 2;
    uint32_t count = t ? t->count : 0;
    while ((count + more) * 4 > cap * 3)
        cap *= 2;
    if (t && cap == t->mask + 1)
        return true;
    if (limited && over_limit(index_size(cap)))
        return false;
    struct index *nt = table_alloc(index_size(cap));
    if (!nt)
        return false;
    nt->mask = cap - 1;
    if (t) {
        for (uint32_t i = 0; i <= t->mask; i++) {
            uint32_t v = t->slots[i];
            if (!v)
                continue;
            const struct node *nd = node_at(SLOT_ID(v));
            uint32_t j = child_hash(nd->parent, nd->ip) & nt->mask;
            while (nt->slots[j])
                j = (j + 1) & nt->mask;
            nt->slots[j] = v;
        }
        nt->count = t->count;
        nt->retired = t;
    }
    /* Release: a reader that loads the new index sees its slots. */
    __atomic_store_n(&child_index, nt, __ATOMIC_RELEASE);
    return true;
}

static void index_put(uint32_t n)
{
    struct index *t = child_index;
    const struct node *nd = node_at(n);
    unsigned hash = child_hash(nd->parent, nd->ip);
    uint32_t i = hash & t->mask;
    while (t->slots[i])
        i = (i + 1) & t->mask;
    __atomic_store_n(&t->slots[i], SLOT_TAG(hash) | n, __ATOMIC_RELEASE);
    t->count++;
}

/* Under the lock: a new node (ip under parent), or 0. */
static uint32_t add_node(uint32_t parent, uintptr_t ip, bool limited)
{
    uint32_t n = nnodes;
    if (n > 0xffffff) /* the index keeps 24 bits */
        return 0;
    if (!node_dir[n >> NODE_CHUNK_BITS]) {
        size_t size = NODE_CHUNK * sizeof(struct node);
        if (limited && over_limit(size))
            return 0;
        struct node *c = table_alloc(size);
        if (!c)
            return 0;
        __atomic_store_n(&node_dir[n >> NODE_CHUNK_BITS], c, __ATOMIC_RELEASE);
    }
    struct node *p = node_at(parent);
    uint32_t kids = p->kids + 1;
    /* The parent becomes wide: its children go to the index, all of them. */
    if (kids > WIDE && !index_reserve(kids == WIDE + 1 ? kids : 1, limited))
        return 0;
    struct node *nd = node_at(n);
    nd->ip = ip;
    nd->parent = parent;
    nd->epoch = __atomic_load_n(&hp_dl_epoch, __ATOMIC_ACQUIRE);
    nd->next_sibling = p->first_child;
    __atomic_store_n(&nnodes, n + 1, __ATOMIC_RELEASE);
    /* Release: a reader that finds the node sees it whole. */
    __atomic_store_n(&p->first_child, n, __ATOMIC_RELEASE);
    if (kids == WIDE + 1)
        for (uint32_t c = n; c; c = node_at(c)->next_sibling)
            index_put(c);
    else if (kids > WIDE)
        index_put(n);
    __atomic_store_n(&p->kids, kids, __ATOMIC_RELEASE);
    return n;
}

/* Under the lock: a new bucket for (stack, cls, labels), or 0. */
static uint32_t add_bucket(uint32_t stack, unsigned cls, uint32_t labels, bool limited)
{
    uint32_t n = nbuckets;
    if (n >= HP_MAX_BUCKETS)
        return 0;
    if (!bucket_dir[n >> BUCKET_CHUNK_BITS]) {
        size_t size = BUCKET_CHUNK * sizeof(struct hp_bucket);
        size_t csize = BUCKET_CHUNK * sizeof(struct counts);
        if (limited && over_limit(size + csize))
            return 0;
        struct hp_bucket *c = table_alloc(size);
        struct counts *cc = c ? table_alloc(csize) : NULL;
        if (!cc) {
            if (c) {
                hp_free(c, size);
                table_bytes -= size;
            }
            return 0;
        }
        __atomic_store_n(&count_dir[0][n >> BUCKET_CHUNK_BITS], cc, __ATOMIC_RELEASE);
        __atomic_store_n(&bucket_dir[n >> BUCKET_CHUNK_BITS], c, __ATOMIC_RELEASE);
    }
    struct node *nd = node_at(stack);
    struct hp_bucket *b = hp_bucket_at(n);
    b->stack = stack;
    b->cls = (uint8_t)cls;
    b->labels = labels;
    b->next = nd->first_bucket;
    /* Release: a thread that finds the bucket in its node's list, or reads
     * the count, sees the bucket whole; every bucket below the count is in
     * its node's list. */
    __atomic_store_n(&nd->first_bucket, n, __ATOMIC_RELEASE);
    __atomic_store_n(&nbuckets, n + 1, __ATOMIC_RELEASE);
    return n;
}

static void note_folded(void)
{
    if (folded)
        return;
    folded = true;
    hp_log("heapprof: the stack table reached HEAPPROF_MAX_MEMORY (%zu bytes); new stacks are "
           "counted under [other] from now on",
           hp_cfg.max_memory);
}

void hp_table_init(void)
{
    if (pthread_key_create(&stripe_key, stripe_release) == 0)
        __atomic_store_n(&stripe_key_made, true, __ATOMIC_RELEASE);
    hp_mutex_lock(&table_lock);
    if (!other_node)
        other_node = add_node(0, HP_OTHER_IP, false);
    pthread_mutex_unlock(&table_lock);
}

/* The size class: 0 for 0 bytes, else the bit length of the size. */
static inline unsigned size_class(uint64_t size)
{
    return size ? 64u - (unsigned)__builtin_clzll(size) : 0u;
}

/* Each thread's last recorded stack and its nodes, outermost frame first:
 * the frames a stack shares with the last one stay where they are, and
 * only the new ones are written. */
static HP_TLS struct {
    int depth;
    void *ips[HP_MAX_FRAMES];
    uint32_t nodes[HP_MAX_FRAMES];
} last;

enum { TCACHE = 16 };
static HP_TLS struct {
    uint32_t stack, bucket, labels;
    unsigned cls;
} tcache[TCACHE];

/* The leaf node of the stack ips[0..depth) (leaf first), adding the frames
 * that are new; the [other] node when the limit stops that. *held: whether
 * it returns with the table lock held, having added nodes: the stack's
 * bucket is then new too, and is added under the same hold (in exact mode
 * on deep_tree nearly every allocation has a stack of its own, and taking
 * the lock twice for it cost a pair of lock calls per allocation). */
static uint32_t stack_node(void **ips, int depth, bool *held)
{
    /* Frames shared with this thread's last stack, from the outermost. */
    int same = 0;
    while (same < depth && same < last.depth && ips[depth - 1 - same] == last.ips[same])
        same++;
    uint32_t node = same ? last.nodes[same - 1] : 0;
    /* The thread's cache now describes ips, filled in as nodes are found. */
    bool locked = false;
    int d;
    for (d = depth - 1 - same; d >= 0; d--) {
        uintptr_t ip = (uintptr_t)ips[d];
        uint32_t child = find_child(node, ip);
        if (!child) {
            if (!locked) {
                hp_mutex_lock(&table_lock);
                locked = true;
                child = find_child(node, ip); /* another thread may have added it */
            }
            if (!child)
                child = add_node(node, ip, true);
            if (!child)
                break;
        }
        last.ips[depth - 1 - d] = (void *)ip;
        last.nodes[depth - 1 - d] = node = child;
    }
    *held = false;
    if (d >= 0) {
        if (locked)
            pthread_mutex_unlock(&table_lock);
        /* Out of room: the stack folds into [other]; the cache keeps only
         * the outer frames that have nodes. */
        last.depth = depth - 1 - d;
        hp_mutex_lock(&table_lock);
        note_folded();
        pthread_mutex_unlock(&table_lock);
        return other_node;
    }
    last.depth = depth;
    *held = locked;
    return node;
}

static void add_double(double *x, double v)
{
    uint64_t *bits = (uint64_t *)x, old = __atomic_load_n(bits, __ATOMIC_RELAXED), nw;
    do {
        double d;
        memcpy(&d, &old, sizeof d);
        d += v;
        memcpy(&nw, &d, sizeof nw);
    } while (
        !__atomic_compare_exchange_n(bits, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

static double load_double(const double *x)
{
    uint64_t bits = __atomic_load_n((const uint64_t *)x, __ATOMIC_RELAXED);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static int stripe_take(void)
{
    if (__atomic_load_n(&stripe_key_made, __ATOMIC_ACQUIRE))
        for (int k = 1; k < NSTRIPES; k++) {
            int expected = 0;
            if (__atomic_compare_exchange_n(&stripe_owned[k], &expected, 1, false, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)) {
                /* Given back by the key's destructor when the thread exits. */
                if (pthread_setspecific(stripe_key, (void *)(uintptr_t)(k + 1)) == 0)
                    return k;
                __atomic_store_n(&stripe_owned[k], 0, __ATOMIC_RELEASE);
                break;
            }
        }
    return 0;
}

/* This thread's counts of bucket b, and whether it owns them alone. */
static struct counts *my_counts(uint32_t b, bool *own)
{
    if (HP_UNLIKELY(my_stripe < 0))
        my_stripe = stripe_take();
    unsigned st = (unsigned)my_stripe, chunk = b >> BUCKET_CHUNK_BITS;
    struct counts *c = __atomic_load_n(&count_dir[st][chunk], __ATOMIC_ACQUIRE);
    if (HP_UNLIKELY(!c)) {
        hp_mutex_lock(&table_lock);
        size_t size = BUCKET_CHUNK * sizeof(struct counts);
        if (!count_dir[st][chunk] && !over_limit(size) && (c = table_alloc(size)) != NULL)
            __atomic_store_n(&count_dir[st][chunk], c, __ATOMIC_RELEASE);
        if (!count_dir[st][chunk])
            st = 0;
        c = count_dir[st][chunk];
        pthread_mutex_unlock(&table_lock);
    }
    *own = st != 0;
    return &c[b & (BUCKET_CHUNK - 1)];
}

static void store_double(double *x, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    __atomic_store_n((uint64_t *)x, bits, __ATOMIC_RELAXED);
}

uint32_t hp_table_record(void **ips, int depth, uint64_t size, uint32_t labels)
{
    if (HP_UNLIKELY(!__atomic_load_n(&node_dir[0], __ATOMIC_ACQUIRE)))
        return 0; /* hp_table_init found no memory for the root */
    bool held;
    uint32_t stack = stack_node(ips, depth, &held);
    unsigned cls = size_class(size);
    unsigned slot = (stack * 0x9e3779b1u + cls * 0x85ebca6bu + labels * 0xc2b2ae35u) >> 28;
    uint32_t b = 0;
    if (!held && tcache[slot].stack == stack && tcache[slot].cls == cls &&
        tcache[slot].labels == labels && tcache[slot].bucket)
        b = tcache[slot].bucket;
    if (!b && !held)
        b = find_bucket(stack, cls, labels);
    if (!b) {
        if (!held)
            hp_mutex_lock(&table_lock);
        b = find_bucket(stack, cls, labels);
        if (!b)
            b = add_bucket(stack, cls, labels, stack != other_node);
        if (!b) {
            /* [other] keeps no labels: its buckets stay at 65 at most. */
            note_folded();
            stack = other_node;
            labels = 0;
            if (!(b = find_bucket(stack, cls, 0)))
                b = add_bucket(stack, cls, 0, false);
        }
        pthread_mutex_unlock(&table_lock);
        if (!b)
            return 0;
    }
    tcache[slot].stack = stack;
    tcache[slot].cls = cls;
    tcache[slot].labels = labels;
    tcache[slot].bucket = b;
    bool own;
    struct counts *c = my_counts(b, &own);
    double w = hp_unbias_scale(size, hp_cfg.rate);
    if (own) {
        /* The only writer: readers see each field whole, if not all three
         * from the same moment (as with atomic adds). */
        __atomic_store_n(&c->allocs, c->allocs + 1, __ATOMIC_RELAXED);
        store_double(&c->w_objects, c->w_objects + w);
        store_double(&c->w_bytes, c->w_bytes + w * (double)size);
    } else {
        __atomic_fetch_add(&c->allocs, 1, __ATOMIC_RELAXED);
        add_double(&c->w_objects, w);
        add_double(&c->w_bytes, w * (double)size);
    }
    return b;
}

int hp_stack_frames(uint32_t stack, struct hp_frame *out, int max)
{
    int d = 0;
    while (stack && d < max) {
        const struct node *nd = node_at(stack);
        out[d].ip = nd->ip;
        out[d].node = stack;
        out[d].epoch = nd->epoch;
        d++;
        stack = nd->parent;
    }
    return d;
}

uint32_t hp_stack_frame(uint32_t node, struct hp_frame *out)
{
    const struct node *nd = node_at(node);
    out->ip = nd->ip;
    out->node = node;
    out->epoch = nd->epoch;
    return nd->parent;
}

uint32_t hp_table_nodes(void)
{
    hp_mutex_lock(&table_lock);
    uint32_t n = nnodes;
    pthread_mutex_unlock(&table_lock);
    return n;
}

bool hp_table_folded(void)
{
    return __atomic_load_n(&folded, __ATOMIC_RELAXED);
}

size_t hp_table_bytes(void)
{
    return __atomic_load_n(&table_bytes, __ATOMIC_RELAXED);
}

void hp_table_lock(void)
{
    hp_mutex_lock(&table_lock);
}

void hp_table_unlock(void)
{
    pthread_mutex_unlock(&table_lock);
}

void hp_table_child(void)
{
    pthread_mutex_init(&table_lock, NULL);
    /* Only this thread lives on: the other threads' stripes are free. */
    for (int k = 1; k < NSTRIPES; k++)
        stripe_owned[k] = k == my_stripe;
}

bool hp_table_has_pc_in(uintptr_t lo, uintptr_t hi)
{
    hp_mutex_lock(&table_lock);
    bool found = false;
    for (uint32_t i = 1; i < nnodes && !found; i++)
        found = node_at(i)->ip >= lo && node_at(i)->ip < hi;
    pthread_mutex_unlock(&table_lock);
    return found;
}

/* ---- the timeline's walk (report/timeline.c) ---- */

/* Cheaper than a snapshot: no bucket array, no pass over the nodes or the
 * count stripes, only the live set's slots. */
uint32_t hp_table_inuse(double *bytes, uint32_t cap)
{
    uint32_t n = __atomic_load_n(&nbuckets, __ATOMIC_ACQUIRE);
    if (n > cap)
        return n;
    memset(bytes, 0, (size_t)n * sizeof *bytes);
    hp_live_inuse(bytes, n, hp_cfg.rate);
    return n;
}

uint32_t hp_bucket_stack(uint32_t bucket)
{
    return hp_bucket_at(bucket)->stack;
}

/* ---- snapshots ---- */

/* The copy of the tables at the last peak: per bucket, the samples and
 * their weights then. Guarded by table_lock. */
struct peak_entry {
    uint32_t bucket;
    int64_t allocs, live;
    double w[HP_NVALUES];
};
static struct peak_entry *peak;
static size_t npeak, peak_cap;

/* Fills s->buckets with every bucket that has something to show, grouped
 * by stack (the order of the stacks' nodes; the profile and the leak
 * summary want each stack's buckets together), with their cumulative
 * counts and the in-use ones summed from the live set. The live set is read
 * first: an object found there has had its allocation counted, so in-use
 * never exceeds allocated. */
static int take(struct hp_snapshot *s, struct hp_arena *a, bool verdicts)
{
    uint32_t n = __atomic_load_n(&nbuckets, __ATOMIC_ACQUIRE);
    uint32_t nn = __atomic_load_n(&nnodes, __ATOMIC_ACQUIRE);
    /* With verdicts, the objects the leak check found lost get entries of
     * their own, one per (bucket, verdict), after the buckets' entries,
     * which keep the counts and the reachable objects: 8 bytes a bucket
     * and an entry per lost pair, not an entry per verdict and bucket. */
    uint32_t *lost = NULL, nlost = 0;
    if (verdicts) {
        lost = hp_arena_alloc(a, (size_t)n * 2 * sizeof *lost);
        if (!lost)
            return -ENOMEM;
        memset(lost, 0xff, (size_t)n * 2 * sizeof *lost);
        nlost = hp_live_lost_pairs(lost, n);
    }
    struct hp_snap_bucket *sb = hp_arena_alloc(a, ((size_t)n + nlost) * sizeof *sb);
    uint32_t *pos = hp_arena_alloc(a, (size_t)n * sizeof *pos);
    if (!sb || !pos)
        return -ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = 0; i < nn; i++)
        for (uint32_t b = __atomic_load_n(&node_at(i)->first_bucket, __ATOMIC_ACQUIRE); b;
             b = hp_bucket_at(b)->next)
            if (b < n) /* not newer than the snapshot */
                pos[b] = k++;
    hp_live_sum(sb, pos, n, hp_cfg.rate, lost, k);
    for (uint32_t b = 1; b < n; b++) {
        struct hp_snap_bucket *e = &sb[pos[b]];
        e->bucket = b;
        e->stack = hp_bucket_at(b)->stack;
        e->labels = hp_bucket_at(b)->labels;
        for (uint32_t v = 0; lost && v < 2; v++) {
            uint32_t at = lost[(size_t)b * 2 + v];
            if (at == UINT32_MAX)
                continue;
            struct hp_snap_bucket *l = &sb[k + at];
            l->bucket = b;
            l->stack = e->stack;
            l->labels = e->labels;
            l->verdict = HP_V_DEFINITE + v;
        }
        for (int st = 0; st < NSTRIPES; st++) {
            const struct counts *cc =
                __atomic_load_n(&count_dir[st][b >> BUCKET_CHUNK_BITS], __ATOMIC_ACQUIRE);
            if (!cc)
                continue;
            const struct counts *c = &cc[b & (BUCKET_CHUNK - 1)];
            e->allocs += (int64_t)__atomic_load_n(&c->allocs, __ATOMIC_RELAXED);
            e->w[HP_ALLOC_OBJECTS] += load_double(&c->w_objects);
            e->w[HP_ALLOC_SPACE] += load_double(&c->w_bytes);
        }
        if (e->live > e->allocs) /* not possible, but never report it */
            e->live = e->allocs;
    }
    s->buckets = sb;
    s->nbuckets = (size_t)k + nlost;
    s->verdicts = verdicts;
    return 0;
}

void hp_peak_capture(void)
{
    struct hp_arena a = {0};
    struct hp_snapshot s;
    memset(&s, 0, sizeof s);
    if (take(&s, &a, false) == 0) {
        hp_mutex_lock(&table_lock);
        if (s.nbuckets > peak_cap) {
            /* Grow geometrically so that repeated captures rarely reallocate.
             * The copy is not the stack table's and does not take from its
             * budget; it may be half as large again as the ceiling, and past
             * that the peak is no longer copied. */
            size_t cap = s.nbuckets * 2;
            struct peak_entry *np =
                cap * sizeof *np <= hp_cfg.max_memory / 2 ? hp_alloc(cap * sizeof *np) : NULL;
            if (np) {
                hp_free(peak, peak_cap * sizeof *peak);
                peak = np;
                peak_cap = cap;
            }
        }
        if (s.nbuckets <= peak_cap) {
            size_t k = 0;
            for (size_t i = 0; i < s.nbuckets; i++) {
                const struct hp_snap_bucket *b = &s.buckets[i];
                if (!b->allocs)
                    continue;
                peak[k].bucket = b->bucket;
                peak[k].allocs = b->allocs;
                peak[k].live = b->live;
                memcpy(peak[k].w, b->w, sizeof b->w);
                k++;
            }
            npeak = k;
        }
        pthread_mutex_unlock(&table_lock);
    }
    hp_arena_release(&a);
}

/* Drops buckets with nothing to show. */
static void compact(struct hp_snapshot *s)
{
    size_t out = 0;
    for (size_t i = 0; i < s->nbuckets; i++)
        if (s->buckets[i].allocs || s->buckets[i].live)
            s->buckets[out++] = s->buckets[i];
    s->nbuckets = out;
}

static int snapshot_take(struct hp_snapshot *s, bool verdicts)
{
    memset(s, 0, sizeof *s);
    s->rate = hp_cfg.rate;
    s->time_ns = hp_now_ns();
    int r = take(s, &s->arena, verdicts);
    if (r)
        return r;
    compact(s);
    hp_snapshot_estimate(s);
    return 0;
}

int hp_snapshot_take(struct hp_snapshot *s)
{
    return snapshot_take(s, false);
}

int hp_snapshot_take_verdicts(struct hp_snapshot *s)
{
    return snapshot_take(s, true);
}

int hp_snapshot_peak(struct hp_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->rate = hp_cfg.rate;
    hp_mutex_lock(&table_lock);
    if (!npeak) {
        pthread_mutex_unlock(&table_lock);
        return -ENOENT;
    }
    s->buckets = hp_arena_alloc(&s->arena, npeak * sizeof *s->buckets);
    if (!s->buckets) {
        pthread_mutex_unlock(&table_lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < npeak; i++) {
        struct hp_snap_bucket *sb = &s->buckets[i];
        sb->bucket = peak[i].bucket;
        sb->stack = hp_bucket_at(peak[i].bucket)->stack;
        sb->labels = hp_bucket_at(peak[i].bucket)->labels;
        sb->allocs = peak[i].allocs;
        sb->live = peak[i].live;
        memcpy(sb->w, peak[i].w, sizeof sb->w);
    }
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
     * by bucket number and walk them together. */
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
            for (int k = 0; k < HP_NVALUES; k++)
                b.w[k] -= old[j].w[k];
        }
        if (b.allocs || b.live)
            s->buckets[out++] = b;
    }
    s->nbuckets = out;
    s->since_ns = base->time_ns;
    hp_snapshot_estimate(s);
    return 0;
}

static int by_stack(const void *x, const void *y)
{
    const struct hp_snap_bucket *a = x, *b = y;
    if (a->stack != b->stack)
        return a->stack < b->stack ? -1 : 1;
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket ? -1 : 1;
    return a->verdict < b->verdict ? -1 : a->verdict > b->verdict;
}

/* The profile needs integers. Go truncates every bucket, which loses up to
 * one object per bucket: when a stack's objects have many sizes near or
 * above the rate, the object estimate comes out low (some 14% measured by
 * tests/stats with Go's per-size buckets). Here the buckets of one stack
 * share their rounding: each gets the rounded running total minus what the
 * buckets before it got, so every stack's total is its exact estimate
 * rounded to the nearest integer, and the per-bucket values still sum to
 * it. */
void hp_snapshot_estimate(struct hp_snapshot *s)
{
    size_t sorted = 1;
    while (sorted < s->nbuckets && s->buckets[sorted - 1].stack <= s->buckets[sorted].stack)
        sorted++;
    if (sorted < s->nbuckets) /* not grouped by stack yet (a delta) */
        qsort(s->buckets, s->nbuckets, sizeof *s->buckets, by_stack);
    double exact[HP_NVALUES] = {0};
    int64_t given[HP_NVALUES] = {0};
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct hp_snap_bucket *b = &s->buckets[i];
        if (i == 0 || b->stack != s->buckets[i - 1].stack) {
            memset(exact, 0, sizeof exact);
            memset(given, 0, sizeof given);
        }
        for (int k = 0; k < HP_NVALUES; k++) {
            exact[k] += b->w[k];
            int64_t total = round_int(exact[k]);
            b->est[k] = total - given[k];
            given[k] = total;
        }
    }
}

uint64_t hp_snap_avg_size(const struct hp_snap_bucket *b)
{
    /* The bucket's objects' average size, estimated: allocated bytes over
     * allocated objects (in-use ones for a delta with no allocations). */
    if (b->w[HP_ALLOC_OBJECTS] > 0)
        return (uint64_t)round_int(b->w[HP_ALLOC_SPACE] / b->w[HP_ALLOC_OBJECTS]);
    if (b->w[HP_INUSE_OBJECTS] > 0)
        return (uint64_t)round_int(b->w[HP_INUSE_SPACE] / b->w[HP_INUSE_OBJECTS]);
    unsigned cls = hp_bucket_at(b->bucket)->cls;
    return cls ? (uint64_t)1 << (cls - 1) : 0;
}

void hp_snapshot_release(struct hp_snapshot *s)
{
    hp_arena_release(&s->arena);
}
