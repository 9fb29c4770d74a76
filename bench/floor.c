/* The floor: a bare malloc interposer that does nothing but forward.
 *
 * Preloaded before another allocator (LD_PRELOAD="libhpfloor.so
 * libjemalloc.so.2"), it costs what any interposer must: one more PLT call
 * and an indirect call through a pointer found with dlsym(RTLD_NEXT). That is
 * the least heapprof can cost over another allocator; bench/run.py reports
 * heapprof's overhead next to this one's.
 *
 * It has what heapprof's hooks need to exist at all and nothing more: a
 * static pool for the calloc that dlsym makes before the real calloc is
 * known, recognised by free. valloc and pvalloc go through the next
 * allocator's memalign, as heapprof's do (an allocator preloaded behind this
 * one may lack them, and glibc's would hand out blocks the other's free
 * cannot take), so the floor does the same work as heapprof there too.
 *
 * Built with FLOOR_UNWIND (libhpfloor_unwind.so), it also does the one thing
 * every sampling profiler must: a per-thread countdown of the bytes
 * allocated, and at each sample point (exponential gaps of mean 512 KiB, as
 * heapprof's) a libunwind backtrace into a buffer on the stack, which is then
 * dropped. That is the floor for heapprof's sampled path: what remains above
 * it is heapprof's own bookkeeping.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#ifdef FLOOR_UNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <math.h>

static __thread __attribute__((tls_model("initial-exec"))) struct {
    long long countdown;
    unsigned long long rng;
    int busy;
} th;

static long long gap(void)
{
    if (!th.rng)
        th.rng = 0x9e3779b97f4a7c15ull ^ (unsigned long long)(size_t)&th;
    th.rng ^= th.rng << 13;
    th.rng ^= th.rng >> 7;
    th.rng ^= th.rng << 17;
    double u = (double)((th.rng >> 11) + 1) * 0x1.0p-53;
    return (long long)(-log(u) * 524288.0);
}

/* The sample point: a backtrace, as a sampling profiler takes one. */
__attribute__((noinline)) static void sample(void)
{
    if (th.busy)
        return;
    th.busy = 1;
    void *ips[80];
    unw_backtrace(ips, 80);
    __asm__ volatile("" ::"r"(ips) : "memory");
    th.countdown = gap();
    th.busy = 0;
}

static inline void count(size_t n)
{
    if (__builtin_expect((th.countdown -= (long long)n) < 0, 0))
        sample();
}
#else
static inline void count(size_t n)
{
    (void)n;
}
#endif

static void *(*next_malloc)(size_t);
static void (*next_free)(void *);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_memalign)(size_t, size_t);
static size_t (*next_malloc_usable_size)(void *);

/* dlsym's own allocations, before the next allocator is known. Never freed:
 * there are only a few, at start-up. */
static _Alignas(64) char pool[16 << 10];
static size_t pool_used;
static int resolving;

static int in_pool(const void *p)
{
    return (const char *)p >= pool && (const char *)p < pool + sizeof pool;
}

static void *pool_alloc(size_t n)
{
    size_t start = (__atomic_fetch_add(&pool_used, (n + 15) & ~(size_t)15, __ATOMIC_RELAXED));
    if (start + n > sizeof pool)
        return NULL;
    return pool + start; /* static storage: already zero */
}

static void resolve(void)
{
    __atomic_store_n(&resolving, 1, __ATOMIC_RELAXED);
    next_free = dlsym(RTLD_NEXT, "free");
    next_calloc = dlsym(RTLD_NEXT, "calloc");
    next_realloc = dlsym(RTLD_NEXT, "realloc");
    next_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    next_memalign = dlsym(RTLD_NEXT, "memalign");
    next_malloc_usable_size = dlsym(RTLD_NEXT, "malloc_usable_size");
    /* malloc last: the others test it to know all are set. */
    __atomic_store_n(&next_malloc, dlsym(RTLD_NEXT, "malloc"), __ATOMIC_RELEASE);
    __atomic_store_n(&resolving, 0, __ATOMIC_RELAXED);
}

/* False while dlsym runs: the caller then serves from the pool. */
static inline int ready(void)
{
    if (__builtin_expect(__atomic_load_n(&next_malloc, __ATOMIC_ACQUIRE) != NULL, 1))
        return 1;
    if (__atomic_load_n(&resolving, __ATOMIC_RELAXED))
        return 0;
    resolve();
    return 1;
}

EXPORT void *malloc(size_t n)
{
    if (!ready())
        return pool_alloc(n);
    count(n);
    return next_malloc(n);
}

EXPORT void free(void *p)
{
    if (!p || in_pool(p))
        return;
    next_free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
    if (!ready()) {
        size_t total;
        if (__builtin_mul_overflow(n, size, &total))
            return NULL;
        return pool_alloc(total);
    }
    count(n * size);
    return next_calloc(n, size);
}

EXPORT void *realloc(void *p, size_t n)
{
    if (!ready())
        return NULL; /* dlsym never reallocates */
    if (in_pool(p)) {
        /* A pool block's size is unknown, but it lies within the pool. */
        void *q = next_malloc(n);
        if (q) {
            size_t room = (size_t)(pool + sizeof pool - (char *)p);
            memcpy(q, p, room < n ? room : n);
        }
        return q;
    }
    count(n);
    return next_realloc(p, n);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (!ready())
        return ENOMEM;
    return next_posix_memalign(out, align, n);
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (!ready())
        return NULL;
    return next_aligned_alloc(align, n);
}

EXPORT void *memalign(size_t align, size_t n)
{
    if (!ready())
        return NULL;
    return next_memalign(align, n);
}

EXPORT void *valloc(size_t n)
{
    if (!ready())
        return NULL;
    return next_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

EXPORT void *pvalloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rounded = n == 0 ? page : (n + page - 1) & ~(page - 1);
    if (rounded < n) {
        errno = ENOMEM;
        return NULL;
    }
    if (!ready())
        return NULL;
    return next_memalign(page, rounded);
}

EXPORT size_t malloc_usable_size(void *p)
{
    if (!p || in_pool(p) || !ready())
        return 0;
    return next_malloc_usable_size(p);
}

/* pthread_mutex_lock, forwarded: the floor for heapprof's lock hook
 * (bench/locks.py), one PLT call and one indirect call more than the
 * program alone. */
static int (*next_mutex_lock)(pthread_mutex_t *);

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    int (*f)(pthread_mutex_t *) = __atomic_load_n(&next_mutex_lock, __ATOMIC_ACQUIRE);
    if (__builtin_expect(f == NULL, 0)) {
        f = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
        __atomic_store_n(&next_mutex_lock, f, __ATOMIC_RELEASE);
    }
    return f(m);
}
