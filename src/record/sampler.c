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

/* -1, so that a thread's first allocation, even of zero bytes, takes the
 * slow path and sets the thread up. */
HP_TLS struct hp_thread hp_thread = {.countdown = -1, .counted_at = -1};

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

/* log and expm1 come from the C library's libm, loaded when first needed
 * (profiling on): linking libm would load it into every process that
 * preloads heapprof, profiling or not, which costs a process start about
 * 7% more. */
static double (*log_fn)(double), (*expm1_fn)(double);

static bool load_math(void)
{
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    double (*l)(double) = h ? (double (*)(double))dlsym(h, "log") : NULL;
    double (*e)(double) = h ? (double (*)(double))dlsym(h, "expm1") : NULL;
    if (!l || !e)
        return false;
    __atomic_store_n(&expm1_fn, e, __ATOMIC_RELEASE);
    __atomic_store_n(&log_fn, l, __ATOMIC_RELEASE);
    return true;
}

bool hp_math_init(void)
{
    if (__atomic_load_n(&log_fn, __ATOMIC_ACQUIRE) || load_math())
        return true;
    hp_log("heapprof: cannot load log and expm1 from libm.so.6; profiling is off");
    return false;
}

/* Only ever called with profiling on, that is after hp_math_init found
 * them, or from the unit tests, which load them here. */
static double math_log(double x)
{
    double (*f)(double) = __atomic_load_n(&log_fn, __ATOMIC_ACQUIRE);
    if (HP_UNLIKELY(!f)) {
        if (!load_math())
            return 0;
        f = log_fn;
    }
    return f(x);
}

static double math_expm1(double x)
{
    double (*f)(double) = __atomic_load_n(&expm1_fn, __ATOMIC_ACQUIRE);
    if (HP_UNLIKELY(!f)) {
        if (!load_math())
            return -1;
        f = expm1_fn;
    }
    return f(x);
}

int64_t hp_sampler_gap(uint64_t rng[4], long rate)
{
    if (rate <= 1)
        return 0;
    /* u uniform in (0, 1]: 53 random bits, never 0 so log(u) is finite. */
    double u = (double)((hp_rng_next(rng) >> 11) + 1) * 0x1.0p-53;
    double gap = -math_log(u) * (double)rate;
    if (gap >= 9.0e18)
        return INT64_MAX / 2;
    return (int64_t)gap;
}

double hp_unbias_scale(uint64_t size, long rate)
{
    if (rate <= 1 || size == 0)
        return 1.0;
    double x = (double)size / (double)rate;
    if (x < 0.05) {
        /* 1 / (1 - exp(-x)) = 1/x + 1/2 + x/12 - x^3/720 + x^5/30240 - ...
         * (Bernoulli numbers); the next term, x^7/1209600, is below 1e-16
         * of the sum here. Most samples are of objects far smaller than the
         * rate, and this is several times cheaper than expm1. */
        double x2 = x * x;
        return 1.0 / x + 0.5 + x * (1.0 / 12 - x2 * (1.0 / 720 - x2 * (1.0 / 30240)));
    }
    /* 1 / (1 - exp(-s/R)), with expm1 for precision. */
    return 1.0 / -math_expm1(-x);
}

/* ---- bytes allocated ----
 *
 * What the program allocated in all, for the leak summary: how much a
 * sampled "no leaks" rests on. The fast path only takes each allocation's
 * size off the thread's countdown, so what a thread allocated is how far
 * its countdown went down. A thread adds that to the shared total at each
 * slow path (once per sample: one atomic add, no more shared writes than
 * sampling makes) and when it exits; hp_allocated_bytes adds what the
 * threads still running have not added yet. What heapprof itself allocates
 * while busy is taken out (hp_busy_end, and below). */
enum { MAX_COUNTED = 1024 };
static uint64_t allocated;                     /* what threads have added */
static struct hp_thread *counted[MAX_COUNTED]; /* threads running, set up */
static int counted_lock;                       /* a spin lock */
static pthread_key_t counted_key;
static bool counted_key_made;
static pthread_once_t counted_once = PTHREAD_ONCE_INIT;

static void counted_take(void)
{
    while (__atomic_exchange_n(&counted_lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&counted_lock, __ATOMIC_RELAXED))
            ;
}

static void counted_drop(void)
{
    __atomic_store_n(&counted_lock, 0, __ATOMIC_RELEASE);
}

/* Adds what the thread allocated since it last did. */
static void count_allocated(struct hp_thread *t)
{
    int64_t d = t->counted_at - t->countdown;
    t->counted_at = t->countdown;
    if (d > 0)
        __atomic_add_fetch(&allocated, (uint64_t)d, __ATOMIC_RELAXED);
}

/* At thread exit (a key's destructor, run on the thread). */
static void count_exit(void *slot)
{
    struct hp_thread *t = &hp_thread;
    count_allocated(t);
    size_t i = (size_t)(uintptr_t)slot - 1;
    counted_take();
    if (i < MAX_COUNTED && counted[i] == t)
        counted[i] = NULL;
    counted_drop();
}

static void make_counted_key(void)
{
    counted_key_made = pthread_key_create(&counted_key, count_exit) == 0;
}

/* A thread being set up: listed, so that what it allocates is counted
 * while it runs and at its exit. Past MAX_COUNTED threads at once, a
 * thread's bytes are counted at its samples only. */
static void count_join(struct hp_thread *t)
{
    pthread_once(&counted_once, make_counted_key);
    if (!counted_key_made)
        return;
    size_t i = 0;
    counted_take();
    while (i < MAX_COUNTED && counted[i])
        i++;
    if (i < MAX_COUNTED)
        counted[i] = t;
    counted_drop();
    if (i == MAX_COUNTED)
        return;
    int64_t mark = t->countdown;
    t->busy = true; /* pthread_setspecific may allocate */
    pthread_setspecific(counted_key, (void *)(uintptr_t)(i + 1));
    t->busy = false;
    t->counted_at -= mark - t->countdown;
}

uint64_t hp_allocated_bytes(void)
{
    uint64_t total = __atomic_load_n(&allocated, __ATOMIC_RELAXED);
    struct hp_thread *self = &hp_thread;
    counted_take();
    for (size_t i = 0; i < MAX_COUNTED; i++) {
        struct hp_thread *t = counted[i];
        if (!t)
            continue;
        /* The calling thread is busy (a dump): what it allocated since is
         * the dump's. Other threads are read as they run: their figures
         * can be a few allocations behind. */
        int64_t now =
            t == self && t->busy ? t->busy_mark : __atomic_load_n(&t->countdown, __ATOMIC_RELAXED);
        int64_t d = __atomic_load_n(&t->counted_at, __ATOMIC_RELAXED) - now;
        if (d > 0)
            total += (uint64_t)d;
    }
    counted_drop();
    return total;
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
        if (hp_state != HP_STATE_ON && hp_state != HP_STATE_OFF)
            hp_init();
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
        count_join(t);
        if (hp_cfg.leak_scan && !hp_cfg.leaks_off) {
            int64_t mark = t->countdown;
            t->busy = true;
            hp_threads_seen();
            t->busy = false;
            t->counted_at -= mark - t->countdown;
        }
        /* The countdown started at -1 and already lost `size`. */
        count_allocated(t);
        t->countdown += hp_sampler_gap(t->rng, hp_cfg.rate);
        t->counted_at = t->countdown;
        if (t->countdown >= 0 && hp_cfg.rate > 1)
            return false;
    }
    count_allocated(t);
    if (hp_cfg.rate <= 1) {
        /* Exact mode: -1 makes every allocation, zero-byte ones included,
         * take this path. */
        t->countdown = t->counted_at = -1;
        return true;
    }
    t->countdown = t->counted_at = hp_sampler_gap(t->rng, hp_cfg.rate);
    return true;
}

/* A child after fork must not repeat its parent's random stream. Only the
 * forking thread lives on in it: the others' bytes are added (the child's
 * totals include what it inherited, as its profile does) and their entries
 * dropped. */
void hp_sampler_child(void)
{
    counted_lock = 0;
    for (size_t i = 0; i < MAX_COUNTED; i++) {
        struct hp_thread *t = counted[i];
        if (!t || t == &hp_thread)
            continue;
        count_allocated(t);
        counted[i] = NULL;
    }
    if (hp_thread.ready && hp_state == HP_STATE_ON)
        hp_rng_seed(hp_thread.rng, thread_seed() ^ ((uint64_t)getpid() << 32));
}
