/* The sampler: which allocations are recorded, and what each one stands for.
 *
 * Allocations are sampled by a Poisson process over allocated bytes with mean
 * R bytes between samples (HEAPPROF_RATE), as Go's runtime, tcmalloc and
 * jemalloc do. Each thread keeps a countdown of bytes to the next sample
 * point, drawn from an exponential distribution of mean R. An allocation of
 * s bytes decrements it; it is sampled when the countdown crosses zero, and a
 * fresh gap is then drawn. Because the exponential distribution is
 * memoryless, an allocation of s bytes is sampled with probability
 *
 *     p(s) = 1 - exp(-s/R),
 *
 * independently of what came before it on the thread. A sampled object of
 * size s therefore stands for 1/p(s) objects in expectation, which is the
 * weight applied when the profile is written (hp_unbias_scale). Sizes are the
 * sizes requested by the caller, not the allocator's rounded-up sizes, so
 * the profile is the same over any allocator. A zero-byte allocation has
 * p(0) = 0: it is only recorded in exact mode (R = 1), where every allocation
 * is recorded with weight 1.
 */
#include "record.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

/* xoshiro256** (Blackman and Vigna): fast, 256 bits of state, passes
 * BigCrush; seeded through splitmix64 so nearby seeds give unrelated
 * streams. */
static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void hp_rng_seed(uint64_t rng[4], uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng[i] = splitmix64(&seed);
}

uint64_t hp_rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

int64_t hp_sampler_gap(uint64_t rng[4], long rate)
{
    if (rate <= 1)
        return 0;
    /* u uniform in (0, 1]: 53 random bits, never 0 so log(u) is finite. */
    double u = (double)((hp_rng_next(rng) >> 11) + 1) * 0x1.0p-53;
    double gap = -hp_math_log(u) * (double)rate;
    if (gap >= 9.0e18)
        return INT64_MAX / 2;
    return (int64_t)gap;
}

static uint64_t thread_seed(void)
{
    static uint64_t thread_counter;
    uint64_t n = __atomic_add_fetch(&thread_counter, 1, __ATOMIC_RELAXED);
    if (hp_cfg.seed_set)
        return hp_cfg.seed * 0x9e3779b97f4a7c15ull + n;
    uint64_t x = (uint64_t)hp_mono_ns();
    x ^= (uint64_t)getpid() << 16;
    x ^= (uint64_t)(uintptr_t)&hp_thread;
    return x * 0x9e3779b97f4a7c15ull + n;
}

/* Notes the thread's stack for the leak check (record/threads.c); what that
 * allocates is heapprof's, not counted as the program's. */
static void note_thread(struct hp_thread *t)
{
    int64_t mark = t->countdown;
    t->busy = true;
    hp_threads_seen();
    t->busy = false;
    t->counted_at -= mark - t->countdown;
}

/* The thread's next countdown. A listed thread keeps what it allocated
 * pending (what counted_at is above the countdown), for hp_allocated_bytes
 * to add, rather than adding it to the shared total at every sample: in
 * exact mode that atomic add was 2% of the run. */
static void restart(struct hp_thread *t, int64_t next)
{
    if (t->listed) {
        t->counted_at += next - t->countdown;
        t->countdown = next;
    } else {
        hp_count_allocated(t);
        t->countdown = t->counted_at = next;
    }
}

/* Called after the fast path's countdown went below zero. */
bool hp_sampler_take(size_t size)
{
    struct hp_thread *t = &hp_thread;
    if (t->busy) {
        /* heapprof's own allocation: give the bytes back, record nothing. */
        t->countdown += (int64_t)size;
        return false;
    }
    if (HP_UNLIKELY(!t->ready)) {
        if (hp_state != HP_STATE_ON) {
            /* Off (or still initialising): never come back here. */
            if (hp_state == HP_STATE_OFF) {
                t->countdown = INT64_MAX;
                t->ready = true;
            } else {
                t->countdown = -1;
            }
            return false;
        }
        hp_rng_seed(t->rng, thread_seed());
        t->ready = true;
        /* Counted from here: what came before (the countdown was reset to
         * -1 while heapprof started) is not. */
        t->counted_at = t->countdown + (int64_t)size;
        hp_count_join(t);
        if (hp_cfg.leak_scan && !hp_cfg.leaks_off)
            note_thread(t);
        /* The countdown started at -1 and already lost `size`. */
        hp_count_allocated(t);
        t->countdown += hp_sampler_gap(t->rng, hp_cfg.rate);
        t->counted_at = t->countdown;
        if (t->countdown >= 0 && hp_cfg.rate > 1)
            return false;
    }
    if (HP_UNLIKELY(hp_threads_pending)) /* not noted at its first sample: again */
        note_thread(t);
    if (hp_cfg.rate <= 1) {
        /* Exact mode: -1 makes every allocation, zero-byte ones included,
         * take this path. */
        restart(t, -1);
        return true;
    }
    restart(t, hp_sampler_gap(t->rng, hp_cfg.rate));
    return true;
}

/* A child after fork must not repeat its parent's random stream. Only the
 * forking thread lives on in it: the others' bytes are added (the child's
 * totals include what it inherited, as its profile does) and their entries
 * dropped. */
void hp_sampler_child(void)
{
    hp_thread_child();
    if (hp_thread.ready && hp_state == HP_STATE_ON)
        hp_rng_seed(hp_thread.rng, thread_seed() ^ ((uint64_t)getpid() << 32));
}
