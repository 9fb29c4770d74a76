/* The live set: which pointers are sampled objects not yet freed.
 *
 * Every free() must learn whether its pointer was sampled, without a lock
 * and without writing shared memory in the common case, and without ever
 * missing one. In sampled mode over glibc's allocator, sampled malloc,
 * calloc and realloc blocks carry a header that free() recognises by the
 * pointer alone (interpose/alloc.c); they are kept here, marked HEADED, and
 * left out of the filters. For the rest (exact mode, where every
 * allocation is sampled, the aligned family, and every sampled block over
 * jemalloc or mimalloc) two layers do it:
 *
 * 1. Filters, in two levels (hp.h). The first is a bitmap of the 512-byte
 *    blocks of address space that hold a live sample: 512K bits, 64 KiB,
 *    blocks mapped to bits in address order (blocks 256 MiB apart share
 *    one), so that the frees of a working set read a few cache lines of it,
 *    and a bit that is zero for nearly every block of a program whose
 *    samples are a few per megabyte. Each bit has a count of live samples
 *    beside it, kept under the lock of the shard (below) that the bit's
 *    blocks belong to. Where the bit is set, the second level: 2^18 16-bit
 *    counters in 64-byte lines of 32, the line chosen by the page, the
 *    counter by the address's offset in the page, so that frees of nearby
 *    objects touch the same few lines. Inserting a sampled pointer sets both
 *    before malloc returns the pointer; removing it undoes them. free()
 *    reads them: a zero means "certainly not sampled" and the free goes
 *    straight to the real allocator. No false negatives: the writes are
 *    sequenced before the pointer is returned, and any thread that frees the
 *    pointer got it through some synchronisation that also carries them. A
 *    set bit or nonzero counter can be another pointer's (a false positive);
 *    that costs a locked lookup. Unlike a Bloom filter of bits, counts can be
 *    decremented, so the filters do not fill up over a long run. The 16-bit
 *    counters cannot overflow in practice: that would take 65536 live
 *    samples on one counter.
 * 2. Sharded open-addressing tables (256 shards, one spin lock each, linear
 *    probing with backward-shift deletion) map a sampled pointer to its
 *    bucket and its requested size. A shard holds the pointers of the blocks
 *    of some words of the bitmap (32 KiB of address space each); threads that allocate from
 * different regions, as allocators' per-thread heaps and caches make them, use different shards and
 * never contend on one lock; exact mode (every allocation sampled) lives here too. A slot is 16
 * bytes (pointer, bucket number, size) and a shard is kept between 3/8 and 3/4 full, so a live
 * sampled object costs 21 to 43 bytes. Sizes of 4 GiB and more, which a slot cannot hold, go to a
 * short list beside the shard.
 *
 * The in-use values of a profile are summed from here (hp_live_sum), each
 * object weighted by 1/p(size) as when it was allocated, so a free only
 * touches its shard and the filters, never the bucket.
 *
 * The alternatives were weighed: a header on every allocation would change
 * every block of the program and break with foreign frees (headers only on
 * sampled blocks change one in thousands; see interpose/alloc.c for the
 * foreign frees it still guards against); serving sampled objects from a
 * dedicated range would make heapprof an allocator of its own and change
 * the heap it profiles (it is meant to sit over any allocator); a plain
 * bitset loses frees to collisions.
 */
#include "heads.h"
#include "record.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <string.h>

enum {
    SHARD_BITS = 8,
    NSHARDS = 1 << SHARD_BITS,
    MIN_SLOTS = 64,
};

uint64_t hp_block_bits[(1u << HP_BLOCK_BITS) / 64];
/* Live samples per bit of hp_block_bits: a bit is set when its count leaves
 * zero and cleared when it returns to it. The pages of one word of the
 * bitmap belong to one shard of the live set (shard_of), whose lock guards
 * their counts, so no lock is shared by all threads. */
static uint32_t block_count[1u << HP_BLOCK_BITS];
/* hp_block_set.n, the flag every free reads first, says whether any bit is
 * set. Its line is written only when that changes, so that threads freeing
 * while others sample do not keep losing it (with a count in its place,
 * written at every sample, the window of 1000 live objects on two threads
 * over mimalloc lost 8 points). The count of set bits sits in a line of its
 * own beside the lock under which the flag is made to agree with it: the
 * count is raised before a bit is set and lowered after it is cleared, and
 * whoever moves it to or from zero then sets the flag from the count as it
 * is under the lock, so the last to do so sees every bit still set. One who
 * raises it from one or more must still see the flag up before its bit
 * counts: the one who raised it from zero may not have taken the lock yet,
 * or a lowering that read zero before may be storing 0 under it. It reads
 * the lock free and the flag 1, after its own raise, or else takes the lock
 * and sets the flag itself: a lowering that takes the lock later reads a
 * count that includes its raise. (Without this, a sample whose raise found
 * the count at 1 could hand out its pointer while the flag was still 0, and
 * a free of it in that window went unfiltered: sampled aligned blocks of
 * tests/robust's stress run left in use, once.) While a sampled object's
 * bit is set the flag is therefore 1, and a free that got the pointer after
 * its malloc returned sees it so: no free is missed. */
__attribute__((weak)) struct hp_block_set hp_block_set; /* interpose/alloc.c's, in the library */
static struct {
    unsigned long count;
    int lock;
} __attribute__((aligned(64))) block_set;

/* The live set's spin locks: block_set's (below) and the shards'. A
 * shard's lock is held for a probe and a few writes, by threads that
 * sample or free a sampled object: a spin lock, which never puts a thread to
 * sleep in the kernel as a contended mutex does (measured: the mutex's
 * futex calls were a fifth of the run at a rate of 16 KiB over jemalloc).
 * Should the holder have been preempted, it yields, and then sleeps (a
 * real-time thread's yield would not let a lower-priority holder run; a
 * fork holds every shard while it runs). */
static void spin_take(int *lock)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
            if (++spins < 1000) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            } else if (spins < 1100) {
                sched_yield();
            } else {
                struct timespec pause = {0, 50000};
                hp_nanosleep(&pause, NULL);
            }
        }
}

static void block_set_lock(void)
{
    spin_take(&block_set.lock);
}

static void block_set_add(long delta)
{
    unsigned long old =
        __atomic_fetch_add(&block_set.count, (unsigned long)delta, __ATOMIC_SEQ_CST);
    if (delta > 0 ? old != 0 && !__atomic_load_n(&block_set.lock, __ATOMIC_SEQ_CST) &&
                        __atomic_load_n(&hp_block_set.n, __ATOMIC_SEQ_CST)
                  : old != (unsigned long)-delta)
        return;
    block_set_lock();
    unsigned long want = __atomic_load_n(&block_set.count, __ATOMIC_RELAXED) != 0;
    if (__atomic_load_n(&hp_block_set.n, __ATOMIC_RELAXED) != want) {
        __atomic_store_n(&hp_block_set.n, want, __ATOMIC_RELEASE);
        hp_free_route(want);
    }
    __atomic_store_n(&block_set.lock, 0, __ATOMIC_RELEASE);
}

/* interpose/alloc.c's, in the library; this one for the unit tests, which
 * link the recording half without the hooks. */
__attribute__((weak)) void hp_free_route(bool filtered)
{
    (void)filtered;
}

void hp_live_route(void)
{
    block_set_lock();
    hp_free_route(__atomic_load_n(&hp_block_set.n, __ATOMIC_RELAXED) != 0);
    __atomic_store_n(&block_set.lock, 0, __ATOMIC_RELEASE);
}

/* Under the lock of p's shard. */
static void block_add(const void *p, int delta)
{
    uint32_t i = hp_block_index(p);
    uint64_t bit = (uint64_t)1 << (i % 64);
    if (delta > 0 && block_count[i]++ == 0) {
        block_set_add(1);
        __atomic_fetch_or(&hp_block_bits[i / 64], bit, __ATOMIC_RELEASE);
    } else if (delta < 0 && --block_count[i] == 0) {
        __atomic_fetch_and(&hp_block_bits[i / 64], ~bit, __ATOMIC_RELEASE);
        block_set_add(-1);
    }
}
uint16_t hp_filter[(1u << HP_FILTER_LINE_BITS) * HP_FILTER_PER_LINE];

struct slot {
    uintptr_t key;   /* 0: empty */
    uint32_t bucket; /* and, above VERDICT_SHIFT, the leak check's verdict */
    uint32_t size;   /* HUGE: the size is in the shard's huge list */
};
#define HUGE UINT32_MAX
/* Bucket numbers stay below HP_MAX_BUCKETS (2^24). */
enum {
    VERDICT_SHIFT = 28,
    HEADED = 1u << 27, /* a headed object: not in the filters */
    BUCKET_MASK = HEADED - 1,
    KEEP_MASK = (1u << VERDICT_SHIFT) - 1, /* all but the verdict */
};

struct huge {
    struct huge *next;
    uintptr_t key;
    uint64_t size;
};

struct shard {
    int lock; /* a spin lock: see shard_lock */
    struct slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
    struct huge *huge;
} __attribute__((aligned(64)));

/* Statically initialised: malloc runs before any constructor does. */
static struct shard shards[NSHARDS];

/* Biased locking. Most programs that exact mode is used on touch the live
 * set from one thread, and each insert and removal paid a locked exchange
 * for its shard (about 30% of each one's time in python3, by perf
 * annotate). The first thread to use the live set owns it: while no other
 * thread has used it, the owner takes no lock, only counts its open
 * sections in a line of its own. Another thread's first use revokes the
 * bias, for good: it marks the bias as being revoked, makes every CPU pass a
 * barrier (hp_asym_heavy, record/asym.c), waits for the owner's count to
 * reach zero, and then marks it revoked; from then on every thread takes
 * the shard locks. Until then every thread waits, the owner too, unless it
 * is inside one of its own sections (a signal handler's free, say), where it
 * may go on without a lock, since the revoker waits for it. The owner
 * raises its count before it reads the state, ordered for the compiler
 * only: after the barrier, either its raised count is visible to the
 * revoker, or its read comes later and sees the revocation. A thread is
 * known by the address of its thread-local block: a thread that gets the
 * block of an owner that exited takes over a bias no one else holds. glibc starts
 * threads of its own (timers, mq_notify) without going through
 * pthread_create's symbol, so the bias cannot be decided from the threads
 * heapprof has seen; revoking at the first use by another thread does not
 * need to know them. */
enum { BIASED, REVOKING, LOCKED };
static struct {
    int state;         /* BIASED, REVOKING, LOCKED (for good) */
    const void *owner; /* the owner's &hp_thread; NULL: none yet */
} bias __attribute__((aligned(64)));
static struct {
    int depth; /* the owner's open sections */
} owner_in __attribute__((aligned(64)));

static void wait_locked(void)
{
    while (__atomic_load_n(&bias.state, __ATOMIC_ACQUIRE) != LOCKED)
        sched_yield();
}

static void revoke(void)
{
    int expected = BIASED;
    if (!__atomic_compare_exchange_n(&bias.state, &expected, REVOKING, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_ACQUIRE)) {
        wait_locked();
        return;
    }
    /* Should the barrier fail (mprotect refused on a page of heapprof's
     * own, which only a full table of mappings would do), the owner's count
     * is trusted after a pause long enough for any store to drain. */
    bool fenced = false;
    for (int i = 0; i < 3 && !(fenced = hp_asym_heavy()); i++)
        sched_yield();
    for (int rounds = fenced ? 1 : 2; rounds > 0; rounds--) {
        while (__atomic_load_n(&owner_in.depth, __ATOMIC_ACQUIRE))
            sched_yield();
        if (rounds > 1) {
            struct timespec pause = {0, 10000000};
            hp_nanosleep(&pause, NULL);
        }
    }
    __atomic_store_n(&bias.state, LOCKED, __ATOMIC_RELEASE);
}

/* The owner's sections: entered only by the owner. */
static inline bool owner_inside(void)
{
    return __atomic_load_n(&owner_in.depth, __ATOMIC_RELAXED) > 0 &&
           __atomic_load_n(&bias.owner, __ATOMIC_RELAXED) == (const void *)&hp_thread;
}

/* True if the caller is the owner and may go on without a lock; it then
 * calls bias_leave. */
static inline bool bias_enter(void)
{
    int state = __atomic_load_n(&bias.state, __ATOMIC_ACQUIRE);
    if (HP_UNLIKELY(state != BIASED)) {
        if (state == LOCKED)
            return false;
        if (!owner_inside()) {
            wait_locked();
            return false;
        }
    } else {
        const void *me = &hp_thread;
        const void *owner = __atomic_load_n(&bias.owner, __ATOMIC_RELAXED);
        if (HP_UNLIKELY(owner != me) &&
            (owner || !__atomic_compare_exchange_n(&bias.owner, &owner, me, false, __ATOMIC_ACQ_REL,
                                                   __ATOMIC_RELAXED))) {
            revoke();
            return false;
        }
    }
    int depth = owner_in.depth;
    __atomic_store_n(&owner_in.depth, depth + 1, __ATOMIC_RELAXED);
    hp_asym_light();
    if (HP_LIKELY(__atomic_load_n(&bias.state, __ATOMIC_RELAXED) == BIASED) || depth > 0)
        return true; /* inside its own section, the revoker waits for it */
    __atomic_store_n(&owner_in.depth, depth, __ATOMIC_RELEASE);
    wait_locked();
    return false;
}

static inline void bias_leave(void)
{
    __atomic_store_n(&owner_in.depth, owner_in.depth - 1, __ATOMIC_RELEASE);
}

/* Returns whether the lock was taken as the owner, for shard_unlock. */
static inline bool shard_lock(struct shard *s)
{
    if (bias_enter())
        return true;
    spin_take(&s->lock);
    return false;
}

static inline void shard_unlock(struct shard *s, bool biased)
{
    if (biased)
        bias_leave();
    else
        __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

/* By the word of the block bitmap that p's block is on: 64 blocks in a row
 * (32 KiB of address space) share a shard, whose lock guards the word's
 * counts. Consecutive words go to consecutive shards, so that the words of
 * one shard lie 8 MiB apart and its table's runs of slots (home) spread
 * evenly. glibc puts each thread's heap at a multiple of 64 MiB, and two
 * threads' heaps hold blocks at the same offsets: by the low bits alone
 * their samples went to the same shards and contended for their locks
 * (2-thread churn over glibc at HEAPPROF_RATE=16384: 78% of
 * hp_live_insert's samples on the lock). Bits 26 and 27 of the address
 * therefore turn the sequence by a quarter: four heaps in a row, as mmap
 * places them, start on four different quarters. (A hash of the word's
 * number separated them too, but python3 in exact mode ran 46% slower with
 * it, its inserts and removals several times as long.) */
static inline struct shard *shard_of(const void *p)
{
    uint32_t word = hp_block_index(p) / 64;
    return &shards[(word + (word >> 11) * (NSHARDS / 4)) & (NSHARDS - 1)];
}

/* Objects close in memory get slots close in the table: the objects of one
 * 32 KiB region (all in the same shard) go to a run of 1024 slots, by their
 * offset in 32-byte steps, that starts at a hash of the region. A program
 * allocates and frees neighbours together, so an insert or a removal mostly
 * touches a line of the table that a recent one did. A hash of the whole
 * address sent each to a random line of a table that, in exact mode, is
 * tens of megabytes: perf put half of hp_live_insert's and hp_live_remove's
 * time on the probe's first load, and the two were 14% of python3's run in
 * exact mode. 32 bytes is glibc's smallest chunk, so its objects never share
 * a home; an allocator with 16-byte objects puts two on one, which linear
 * probing takes in its stride. The region's hash uses a second multiplier:
 * the bits already used for filter and shard would make regions collide. */
static inline size_t home(const struct shard *s, uintptr_t key)
{
    uint64_t region = (uint64_t)(key >> 15) * 0xbf58476d1ce4e5b9ull;
    return (size_t)((region >> 17) + ((key >> 5) & 1023)) & (s->cap - 1);
}

static bool grow(struct shard *s)
{
    size_t ncap = s->cap ? s->cap * 2 : MIN_SLOTS;
    struct slot *ns = hp_alloc(ncap * sizeof *ns);
    if (!ns)
        return false;
    struct slot *old = s->slots;
    size_t ocap = s->cap;
    s->slots = ns;
    s->cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].key)
            continue;
        size_t j = home(s, old[i].key);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = old[i];
    }
    hp_free(old, ocap * sizeof *old);
    return true;
}

/* Under the shard's lock: the size of the object in slot i. */
static uint64_t slot_size(const struct shard *s, const struct slot *sl)
{
    if (sl->size != HUGE)
        return sl->size;
    for (const struct huge *h = s->huge; h; h = h->next)
        if (h->key == sl->key)
            return h->size;
    return 0;
}

/* Under the shard's lock: stores size for slot sl; false if it cannot. */
static bool set_size(struct shard *s, struct slot *sl, uint64_t size)
{
    if (size < HUGE) {
        sl->size = (uint32_t)size;
        return true;
    }
    struct huge *h = hp_alloc(sizeof *h);
    if (!h)
        return false;
    h->key = sl->key;
    h->size = size;
    h->next = s->huge;
    s->huge = h;
    sl->size = HUGE;
    return true;
}

static void drop_huge(struct shard *s, uintptr_t key)
{
    for (struct huge **hp = &s->huge; *hp; hp = &(*hp)->next)
        if ((*hp)->key == key) {
            struct huge *h = *hp;
            *hp = h->next;
            hp_free(h, sizeof *h);
            return;
        }
}

bool hp_live_all;

void hp_live_init(bool all)
{
    if (!all)
        return;
    /* Exact mode: nearly every free is of a sampled object, and the filters
     * would only cost a global lock per allocation. Every page is marked,
     * for good, and the filters are neither kept nor read. */
    hp_live_all = true;
    block_set_add(1); /* for good */
    for (size_t i = 0; i < sizeof hp_block_bits / sizeof hp_block_bits[0]; i++)
        __atomic_store_n(&hp_block_bits[i], ~(uint64_t)0, __ATOMIC_RELEASE);
}

void hp_live_pin(const void *p, size_t len)
{
    const uintptr_t block = (uintptr_t)1 << HP_BLOCK_SHIFT;
    for (uintptr_t a = (uintptr_t)p & ~(block - 1); a < (uintptr_t)p + len; a += block) {
        struct shard *s = shard_of((const void *)a);
        bool b = shard_lock(s);
        block_add((const void *)a, 1);
        shard_unlock(s, b);
    }
}

bool hp_live_insert(void *p, struct hp_live_rec rec)
{
    struct shard *s = shard_of(p);
    uintptr_t key = (uintptr_t)p;
    bool b = shard_lock(s);
    if ((s->count + 1) * 4 > s->cap * 3 && !grow(s)) {
        /* Out of memory for the profiler's own tables: the object is not
         * tracked, so it never counts as in use (its free will not be
         * found, which is consistent). */
        shard_unlock(s, b);
        return false;
    }
    size_t i = home(s, key);
    while (s->slots[i].key && s->slots[i].key != key)
        i = (i + 1) & (s->cap - 1);
    struct slot *sl = &s->slots[i];
    /* Whether the filters count p before and after; they differ only when
     * p was already live, its free never seen (a block released behind the
     * hooks' back, e.g. by a foreign free): the old object is then
     * forgotten, as if freed. */
    bool counted = sl->key && !(sl->bucket & HEADED), counts = !rec.headed;
    if (!sl->key)
        s->count++;
    else if (sl->size == HUGE)
        drop_huge(s, key);
    if (!hp_live_all && counted != counts) {
        if (counts)
            __atomic_fetch_add(hp_filter_slot(p), 1, __ATOMIC_RELAXED);
        else
            __atomic_fetch_sub(hp_filter_slot(p), 1, __ATOMIC_RELAXED);
        block_add(p, counts ? 1 : -1);
    }
    sl->key = key;
    sl->bucket = rec.bucket | (rec.headed ? HEADED : 0);
    bool ok = set_size(s, sl, rec.size);
    if (!ok)
        sl->size = 0;
    shard_unlock(s, b);
    return ok;
}

struct hp_live_rec hp_live_remove(void *p)
{
    struct shard *s = shard_of(p);
    uintptr_t key = (uintptr_t)p;
    struct hp_live_rec rec = {0, false, 0};
    bool b = shard_lock(s);
    if (s->cap) {
        size_t mask = s->cap - 1;
        size_t i = home(s, key);
        while (s->slots[i].key && s->slots[i].key != key)
            i = (i + 1) & mask;
        if (s->slots[i].key == key) {
            rec.bucket = s->slots[i].bucket & BUCKET_MASK;
            rec.headed = (s->slots[i].bucket & HEADED) != 0;
            rec.size = slot_size(s, &s->slots[i]);
            if (s->slots[i].size == HUGE)
                drop_huge(s, key);
            /* Backward-shift deletion keeps probe chains unbroken without
             * tombstones. */
            size_t j = i;
            for (;;) {
                j = (j + 1) & mask;
                if (!s->slots[j].key)
                    break;
                size_t k = home(s, s->slots[j].key);
                /* Move j back to i unless its home lies cyclically in (i, j]. */
                if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
                    s->slots[i] = s->slots[j];
                    i = j;
                }
            }
            s->slots[i].key = 0;
            s->slots[i].bucket = 0;
            s->slots[i].size = 0;
            s->count--;
            if (!hp_live_all && !rec.headed) {
                __atomic_fetch_sub(hp_filter_slot(p), 1, __ATOMIC_RELAXED);
                block_add(p, -1);
            }
        }
    }
    shard_unlock(s, b);
    return rec;
}

/* The key of a lost object's entry: bucket and verdict, definite or indirect. */
static inline size_t lost_key(uint32_t slot_bucket)
{
    uint32_t v = slot_bucket >> VERDICT_SHIFT;
    if (v != HP_V_DEFINITE && v != HP_V_INDIRECT)
        return SIZE_MAX;
    return (size_t)(slot_bucket & BUCKET_MASK) * 2 + (v - HP_V_DEFINITE);
}

uint32_t hp_live_lost_pairs(uint32_t *lost, uint32_t n)
{
    uint32_t count = 0;
    for (int k = 0; k < NSHARDS; k++) {
        struct shard *s = &shards[k];
        bool b = shard_lock(s);
        for (size_t i = 0; i < s->cap; i++) {
            size_t key = lost_key(s->slots[i].bucket);
            if (s->slots[i].key && key != SIZE_MAX && key / 2 < n && lost[key] == UINT32_MAX)
                lost[key] = count++;
        }
        shard_unlock(s, b);
    }
    return count;
}

void hp_live_sum(struct hp_snap_bucket *sb, const uint32_t *pos, uint32_t n, long rate,
                 const uint32_t *lost, size_t lost_at)
{
    for (int k = 0; k < NSHARDS; k++) {
        struct shard *s = &shards[k];
        bool b = shard_lock(s);
        for (size_t i = 0; i < s->cap; i++) {
            const struct slot *sl = &s->slots[i];
            uint32_t bucket = sl->bucket & BUCKET_MASK;
            if (!sl->key || bucket >= n)
                continue; /* empty, or a bucket newer than the snapshot */
            uint64_t size = slot_size(s, sl);
            double w = hp_unbias_scale(size, rate);
            size_t at = pos[bucket];
            if (lost) {
                size_t key = lost_key(sl->bucket);
                if (key != SIZE_MAX && lost[key] != UINT32_MAX)
                    at = lost_at + lost[key];
            }
            struct hp_snap_bucket *out = &sb[at];
            out->live++;
            out->w[HP_INUSE_OBJECTS] += w;
            out->w[HP_INUSE_SPACE] += w * (double)size;
            /* With w = 1/p: s^2 (1-p)/p^2 = s^2 (w^2 - w). */
            out->var_inuse += (double)size * (double)size * (w * w - w);
        }
        shard_unlock(s, b);
    }
}

size_t hp_live_count_frozen(void)
{
    size_t n = 0;
    for (int k = 0; k < NSHARDS; k++)
        n += shards[k].count;
    return n;
}

size_t hp_live_copy_frozen(struct hp_live_obj *out, size_t max)
{
    size_t n = 0;
    for (int k = 0; k < NSHARDS; k++) {
        const struct shard *s = &shards[k];
        for (size_t i = 0; i < s->cap && n < max; i++)
            if (s->slots[i].key) {
                out[n].start = s->slots[i].key;
                out[n].size = slot_size(s, &s->slots[i]);
                n++;
            }
    }
    return n;
}

bool hp_live_set_verdict(const void *p, enum hp_verdict v)
{
    struct shard *s = shard_of(p);
    uintptr_t key = (uintptr_t)p;
    bool found = false;
    bool b = shard_lock(s);
    if (s->cap) {
        size_t i = home(s, key);
        while (s->slots[i].key && s->slots[i].key != key)
            i = (i + 1) & (s->cap - 1);
        if (s->slots[i].key == key) {
            s->slots[i].bucket = (s->slots[i].bucket & KEEP_MASK) | ((uint32_t)v << VERDICT_SHIFT);
            found = true;
        }
    }
    shard_unlock(s, b);
    return found;
}

/* The timeline's cheaper walk (report/timeline.c): only the in-use bytes,
 * per bucket, into bytes[bucket]. */
void hp_live_inuse(double *bytes, uint32_t n, long rate)
{
    for (int k = 0; k < NSHARDS; k++) {
        struct shard *s = &shards[k];
        bool b = shard_lock(s);
        for (size_t i = 0; i < s->cap; i++) {
            const struct slot *sl = &s->slots[i];
            uint32_t bucket = sl->bucket & BUCKET_MASK;
            if (!sl->key || bucket >= n)
                continue;
            uint64_t size = slot_size(s, sl);
            bytes[bucket] += hp_unbias_scale(size, rate) * (double)size;
        }
        shard_unlock(s, b);
    }
}

size_t hp_live_bytes(void)
{
    size_t total = 0;
    for (int k = 0; k < NSHARDS; k++)
        total += __atomic_load_n(&shards[k].cap, __ATOMIC_RELAXED) * sizeof(struct slot);
    return total;
}

/* Whether hp_live_lock_all's holder is the owner (then no shard's lock is
 * taken). Written only by the holder of every shard. */
static bool all_biased;

void hp_live_lock_all(void)
{
    if (bias_enter()) {
        all_biased = true;
        return;
    }
    for (int i = 0; i < NSHARDS; i++)
        spin_take(&shards[i].lock);
    all_biased = false;
}

void hp_live_unlock_all(void)
{
    if (all_biased) {
        bias_leave();
        return;
    }
    for (int i = NSHARDS - 1; i >= 0; i--)
        shard_unlock(&shards[i], false);
}

void hp_live_child(void)
{
    /* The forking thread held every shard, by its locks or as the owner. */
    owner_in.depth = 0;
    for (int i = 0; i < NSHARDS; i++)
        shards[i].lock = 0;
}

size_t hp_usable_size(void *p)
{
    size_t off = head_of(p);
    return hp_real.malloc_usable_size((char *)p - off) - off;
}
