/* Lock contention and blocking: what the mutex and block profiles hold.
 *
 * The hooks (interpose/locks.c, interpose/blocking.c) decide cheaply
 * whether an event is kept, then hand it here with its weight: the stack
 * of the thread that waited is captured and its estimate added to one
 * table, shared by both profiles.
 *
 * Sampling, as Go's runtime does it:
 *  - mutex (SetMutexProfileFraction): one contention in `fraction` is kept,
 *    drawn before the wait so that the others are never timed; a kept one
 *    stands for `fraction` events of its delay (count and delay times
 *    fraction: an unbiased estimate of both totals).
 *  - block (SetBlockProfileRate): every wait is timed; one of d ns is kept
 *    with probability p = min(1, d/rate), and counts 1/p events of d/p ns
 *    (so a kept short wait adds `rate` ns), unbiased for the same reason.
 *
 * The table: open addressing on the stack's hash, at most MAX_STACKS
 * stacks (mapped on first use, so a program that never turns either
 * profile on pays nothing); when it is full, further stacks go to one
 * [other] slot. Entries are never removed, so a slot names the same stack
 * in every snapshot, which is what a ?seconds=N delta subtracts by. Its
 * lock is a spin lock held only to find a slot and add two numbers (a
 * leaf: docs/locks.md); the stack is captured before it is taken.
 */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

int hp_mutex_fraction;
int64_t hp_block_rate;

enum { MAX_STACKS = 4096, OTHER = MAX_STACKS - 1 };

struct entry {
    uint32_t hash; /* 0: empty */
    uint8_t kind;
    uint8_t depth;
    uint32_t epoch;
    double count, delay;
    uintptr_t ips[HP_MAX_FRAMES];
};
static struct entry *table; /* MAX_STACKS entries, mapped on first use */
static int table_lock;      /* a spin lock: a leaf */
static bool folded;
static uint32_t used; /* slots taken, under the lock */

static HP_TLS uint64_t rng_state;

/* xorshift64*: per thread, seeded from the thread's own address and the
 * clock. Its low bits are good enough for a 1-in-N draw. */
uint64_t hp_cont_random(void)
{
    uint64_t x = rng_state;
    if (HP_UNLIKELY(!x))
        x = ((uint64_t)(uintptr_t)&rng_state * 0x9e3779b97f4a7c15ull) ^ (uint64_t)hp_mono_ns() ^ 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void lock(void)
{
    while (__atomic_exchange_n(&table_lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&table_lock, __ATOMIC_RELAXED))
            ;
}

static void unlock(void)
{
    __atomic_store_n(&table_lock, 0, __ATOMIC_RELEASE);
}

static struct entry *get_table(void)
{
    struct entry *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (t)
        return t;
    t = hp_os_map(sizeof(struct entry) * MAX_STACKS);
    if (!t)
        return NULL;
    struct entry *expected = NULL;
    if (!__atomic_compare_exchange_n(&table, &expected, t, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        hp_os_unmap(t, sizeof(struct entry) * MAX_STACKS);
        return expected;
    }
    return t;
}

static void add(enum hp_cont_kind kind, void **ips, int depth, double count, double delay)
{
    struct entry *t = get_table();
    if (!t)
        return;
    uint32_t h = hp_hash_bytes(ips, (size_t)depth * sizeof *ips) ^ (uint32_t)kind;
    if (!h)
        h = 1;
    lock();
    struct entry *e = NULL;
    for (uint32_t i = 0, at = h % OTHER; i < OTHER; i++, at = (at + 1) % OTHER) {
        struct entry *c = &t[at];
        if (!c->hash) {
            /* Never fill past three quarters: probes stay short. */
            if (used >= OTHER / 4 * 3)
                break;
            used++;
            c->hash = h;
            c->kind = (uint8_t)kind;
            c->depth = (uint8_t)depth;
            c->epoch = __atomic_load_n(&hp_dl_epoch, __ATOMIC_RELAXED);
            memcpy(c->ips, ips, (size_t)depth * sizeof *ips);
            e = c;
            break;
        }
        if (c->hash == h && c->kind == kind && c->depth == depth &&
            !memcmp(c->ips, ips, (size_t)depth * sizeof *ips)) {
            e = c;
            break;
        }
    }
    if (!e) {
        /* [other]: one per kind would need two slots; the kind of the
         * first event decides, the other kind's overflow is dropped. */
        e = &t[OTHER];
        if (!e->hash) {
            e->hash = 1;
            e->kind = (uint8_t)kind;
        }
        folded = true;
        if (e->kind != kind)
            e = NULL;
    }
    if (e) {
        e->count += count;
        e->delay += delay;
    }
    unlock();
}

/* An event kept by a hook: charged to the stack that waited. Nothing is
 * recorded for heapprof's own threads and work (busy), nor before
 * profiling is on (no unwinder, no reader). */
void hp_cont_record(enum hp_cont_kind kind, double count, double delay)
{
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) != HP_STATE_ON || hp_thread.busy)
        return;
    bool was = hp_busy_begin();
    void *ips[HP_MAX_FRAMES];
    int depth = hp_stack_capture(ips, HP_MAX_FRAMES);
    add(kind, ips, depth, count, delay);
    hp_busy_end(was);
}

/* A wait of d ns that the block profile's rate may keep. With fd >= 0, a
 * kept wait on a non-blocking descriptor is dropped (it did not block):
 * asked only of the waits kept, since fcntl is a system call. */
void hp_cont_block(int64_t rate, int64_t d, int fd)
{
    if (d <= 0 || fd == HP_CONT_NEVER)
        return;
    double p = 1;
    if (d < rate) {
        if ((int64_t)(hp_cont_random() % (uint64_t)rate) >= d)
            return;
        p = (double)d / (double)rate;
    }
    if (fd >= 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_NONBLOCK))
            return;
    }
    hp_cont_record(HP_CONT_BLOCK, 1 / p, (double)d / p);
}

int hp_cont_snapshot(enum hp_cont_kind kind, struct hp_cont_profile *p)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->rate = kind == HP_CONT_MUTEX ? __atomic_load_n(&hp_mutex_fraction, __ATOMIC_RELAXED)
                                    : __atomic_load_n(&hp_block_rate, __ATOMIC_RELAXED);
    p->time_ns = hp_now_ns();
    struct entry *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (!t)
        return 0;
    /* Copied without the lock first, to size the arena, then under it:
     * hp_arena_alloc must not run under a spin lock a hook may wait on. */
    size_t n = 0;
    for (size_t i = 0; i < MAX_STACKS; i++)
        n += __atomic_load_n(&t[i].hash, __ATOMIC_RELAXED) != 0;
    n += 64; /* stacks added meanwhile */
    p->stacks = hp_arena_alloc(&p->arena, n * sizeof *p->stacks);
    if (!p->stacks)
        return -ENOMEM;
    lock();
    for (size_t i = 0; i < MAX_STACKS && p->nstacks < n; i++) {
        const struct entry *e = &t[i];
        if (!e->hash || e->kind != kind)
            continue;
        struct hp_cont_stack *s = &p->stacks[p->nstacks++];
        s->count = e->count;
        s->delay = e->delay;
        s->slot = (uint32_t)i;
        s->epoch = e->epoch;
        s->depth = e->depth;
        memcpy(s->ips, e->ips, (size_t)e->depth * sizeof *e->ips);
    }
    p->folded = folded;
    unlock();
    return 0;
}

void hp_cont_delta(struct hp_cont_profile *p, const struct hp_cont_profile *base)
{
    /* Both are in slot order: one merge. */
    size_t j = 0, out = 0;
    for (size_t i = 0; i < p->nstacks; i++) {
        struct hp_cont_stack *s = &p->stacks[i];
        while (j < base->nstacks && base->stacks[j].slot < s->slot)
            j++;
        if (j < base->nstacks && base->stacks[j].slot == s->slot) {
            s->count -= base->stacks[j].count;
            s->delay -= base->stacks[j].delay;
        }
        if (s->count > 0.5 || s->delay > 0.5)
            p->stacks[out++] = *s;
    }
    p->nstacks = out;
}

/* In a child after fork: only the forking thread runs, and the lock may
 * have been held by another. */
void hp_cont_child(void)
{
    table_lock = 0;
}
