/* The interposed malloc family.
 *
 * Each entry point forwards to the next allocator in the lookup order (glibc,
 * or jemalloc/mimalloc when those are preloaded after heapprof), then does
 * the least it can: an allocation subtracts its size from the thread's
 * countdown and only goes further when that crosses zero; a free reads one
 * bit of the live set's block bitmap and, when it is set, the filter (see
 * record/live.c).
 * Nothing here takes a lock or writes shared memory unless the allocation is
 * sampled or the pointer may be a sampled one. C++ operator new and delete
 * reach these through heapprof's own operators (cxx.c), which call malloc,
 * posix_memalign and free.
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *first_malloc(size_t size);
static void first_free(void *p);
/* The allocator behind the hooks, for the fast paths: until it is known,
 * malloc and free call these, which find it. Once found it is also copied
 * into hp_real (common/real.c), for heapprof's own code. */
static struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    size_t (*malloc_usable_size)(void *);
} next = {.malloc = first_malloc, .free = first_free};
static int resolve_state; /* 0 new, 1 resolving, 2 done */

/* dlsym() may call calloc/malloc before the real functions are known; those
 * few early blocks come from this pool, carry their size in a header, and
 * are recognised (and ignored) by free. */
static _Alignas(64) char boot_pool[64 << 10];
static size_t boot_used;

static bool in_boot(const void *p)
{
    return (const char *)p >= boot_pool && (const char *)p < boot_pool + sizeof boot_pool;
}

static void *boot_alloc(size_t n, size_t align)
{
    if (align < 16)
        align = 16;
    if (n > sizeof boot_pool || align > sizeof boot_pool / 2)
        return NULL;
    /* Single-threaded in practice (start-up), but stay correct anyway. */
    size_t start, end, old = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
    for (;;) {
        start = (old + 16 + align - 1) & ~(align - 1);
        end = start + n;
        if (end > sizeof boot_pool)
            return NULL;
        if (__atomic_compare_exchange_n(&boot_used, &old, end, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            break;
    }
    memcpy(boot_pool + start - sizeof(size_t), &n, sizeof n);
    static int pinned;
    if (!__atomic_exchange_n(&pinned, 1, __ATOMIC_ACQ_REL))
        hp_live_pin(boot_pool, sizeof boot_pool); /* free() must look at these */
    return boot_pool + start;                     /* static storage: already zero */
}

static size_t boot_size(const void *p)
{
    size_t n;
    memcpy(&n, (const char *)p - sizeof(size_t), sizeof n);
    return n;
}

static HP_TLS bool resolving;

static void *must(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        hp_log("heapprof: cannot find the real %s (%s); aborting", name, dlerror());
        abort();
    }
    return f;
}

static void resolve(void)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&resolve_state, &expected, 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&resolve_state, __ATOMIC_ACQUIRE) != 2)
            sched_yield();
        return;
    }
    resolving = true;
    __typeof__(next) r;
    r.malloc = must("malloc");
    r.free = must("free");
    r.calloc = must("calloc");
    r.realloc = must("realloc");
    r.posix_memalign = must("posix_memalign");
    r.aligned_alloc = must("aligned_alloc");
    r.memalign = must("memalign");
    r.malloc_usable_size = must("malloc_usable_size");
    /* The functions first, then the state that ready() tests. */
    __atomic_store_n(&next.free, r.free, __ATOMIC_RELEASE);
    next.calloc = r.calloc;
    next.realloc = r.realloc;
    next.posix_memalign = r.posix_memalign;
    next.aligned_alloc = r.aligned_alloc;
    next.memalign = r.memalign;
    next.malloc_usable_size = r.malloc_usable_size;
    hp_real.free = r.free;
    hp_real.calloc = r.calloc;
    hp_real.realloc = r.realloc;
    hp_real.posix_memalign = r.posix_memalign;
    hp_real.aligned_alloc = r.aligned_alloc;
    hp_real.memalign = r.memalign;
    hp_real.malloc_usable_size = r.malloc_usable_size;
    hp_real.malloc = r.malloc;
    __atomic_store_n(&next.malloc, r.malloc, __ATOMIC_RELEASE);
    resolving = false;
    __atomic_store_n(&resolve_state, 2, __ATOMIC_RELEASE);
}

/* True when the real functions can be used; false while dlsym runs on this
 * thread, when the caller must serve from the boot pool. */
static inline bool ready(void)
{
    if (HP_LIKELY(__atomic_load_n(&resolve_state, __ATOMIC_ACQUIRE) == 2))
        return true;
    if (resolving)
        return false;
    resolve();
    return true;
}

/* The slow path of every allocation: out of line so the fast path stays a
 * decrement, a branch and a tail call to the real allocator. */
__attribute__((noinline)) static void alloc_slow(void *p, size_t size)
{
    /* A thread's first allocation may be the process's: heapprof starts
     * here when nothing started it yet (see record/lifecycle.c). */
    if (HP_UNLIKELY(!hp_thread.ready) && !hp_thread.busy && hp_state != HP_STATE_ON &&
        hp_state != HP_STATE_OFF)
        hp_init();
    if (hp_sampler_take(size) && p)
        hp_on_alloc(p, size);
}

/* Takes size bytes off the thread's countdown, before the allocation is
 * made; true when the countdown crossed zero and the slow path must look. */
static inline bool countdown_hit(size_t size)
{
    return HP_UNLIKELY((hp_thread.countdown -= (int64_t)size) < 0);
}

static inline void account(void *p, size_t size)
{
    if (countdown_hit(size))
        alloc_slow(p, size);
}

/* Everything malloc does beyond its fast path, once the countdown has been
 * charged and crossed zero. */
__attribute__((noinline)) static void *malloc_slow(size_t size)
{
    if (!ready())
        return boot_alloc(size, 16);
    void *p = next.malloc(size);
    alloc_slow(p, size);
    return p;
}

static void *first_malloc(size_t size)
{
    if (!ready())
        return boot_alloc(size, 16);
    return next.malloc(size);
}

/* Written so that the fast path needs no stack frame: a decrement of the
 * thread's countdown, a branch and a tail jump to the real malloc (or, the
 * first time, to first_malloc). */
HEAPPROF_API void *malloc(size_t size)
{
    if (HP_LIKELY(!countdown_hit(size)))
        return next.malloc(size);
    return malloc_slow(size);
}

static void first_free(void *p)
{
    if (!p || in_boot(p) || !ready())
        return;
    next.free(p);
}

/* Where the block bitmap says p may be special: a sampled object, or a
 * block of the boot pool (whose bits are set when it first serves one); or
 * NULL, whose bit a sampled object far away may share. */
__attribute__((noinline)) static void free_slow(void *p)
{
    if (!p || in_boot(p))
        return;
    if (hp_live_all || hp_filter_maybe(p))
        hp_on_free(p);
    next.free(p);
}

/* The fast path: one bit of the block bitmap, then a tail jump to the real
 * free (or, before any allocation, to first_free). */
HEAPPROF_API void free(void *p)
{
    if (HP_UNLIKELY(hp_block_maybe(p)))
        return free_slow(p);
    next.free(p);
}

HEAPPROF_API void *calloc(size_t n, size_t size)
{
    size_t total;
    bool overflow = __builtin_mul_overflow(n, size, &total);
    if (HP_UNLIKELY(!ready()))
        return overflow ? NULL : boot_alloc(total, 16);
    /* On overflow the real calloc fails (ENOMEM) and nothing is counted. */
    if (overflow || !countdown_hit(total))
        return next.calloc(n, size);
    void *p = next.calloc(n, size);
    alloc_slow(p, total);
    return p;
}

/* realloc moves or resizes a block: heapprof counts a free of the old block
 * and an allocation of the new size at the realloc's stack. The old block
 * leaves the live set before the real realloc runs, because once it has
 * run another thread may be handed the same address. */
static void *do_realloc(void *p, size_t size)
{
    if (HP_UNLIKELY(in_boot(p))) {
        void *q = malloc(size);
        if (q) {
            size_t old = boot_size(p);
            memcpy(q, p, old < size ? old : size);
        }
        return q;
    }
    struct hp_live_rec old = {0, 0};
    if (p && HP_UNLIKELY(hp_live_maybe(p)))
        old = hp_on_free(p);
    void *q = next.realloc(p, size);
    if (HP_UNLIKELY(!q)) {
        /* Failed (the old block is intact), or freed by realloc(p, 0). */
        if (old.bucket && size != 0) {
            int e = errno;
            hp_on_unfree(p, old);
            errno = e;
        }
        return NULL;
    }
    account(q, size);
    return q;
}

HEAPPROF_API void *realloc(void *p, size_t size)
{
    if (HP_UNLIKELY(!ready())) {
        void *q = boot_alloc(size, 16);
        if (q && p)
            memcpy(q, p, boot_size(p) < size ? boot_size(p) : size);
        return q;
    }
    return do_realloc(p, size);
}

HEAPPROF_API void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

HEAPPROF_API int posix_memalign(void **out, size_t align, size_t size)
{
    if (HP_UNLIKELY(!ready())) {
        void *q = boot_alloc(size, align);
        if (!q)
            return ENOMEM;
        *out = q;
        return 0;
    }
    int r = next.posix_memalign(out, align, size);
    if (r == 0)
        account(*out, size);
    return r;
}

HEAPPROF_API void *aligned_alloc(size_t align, size_t size)
{
    if (HP_UNLIKELY(!ready()))
        return boot_alloc(size, align);
    if (!countdown_hit(size))
        return next.aligned_alloc(align, size);
    void *p = next.aligned_alloc(align, size);
    alloc_slow(p, size);
    return p;
}

HEAPPROF_API void *memalign(size_t align, size_t size)
{
    if (HP_UNLIKELY(!ready()))
        return boot_alloc(size, align);
    if (!countdown_hit(size))
        return next.memalign(align, size);
    void *p = next.memalign(align, size);
    alloc_slow(p, size);
    return p;
}

/* valloc and pvalloc are built on the next allocator's memalign rather than
 * forwarded: an allocator preloaded after heapprof may lack them, and glibc's
 * would then hand out blocks that the other allocator's free cannot take. */
HEAPPROF_API void *valloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (HP_UNLIKELY(!ready()))
        return boot_alloc(size, page);
    void *p = next.memalign(page, size);
    account(p, size);
    return p;
}

HEAPPROF_API void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rounded = size == 0 ? page : (size + page - 1) & ~(page - 1);
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    if (HP_UNLIKELY(!ready()))
        return boot_alloc(rounded, page);
    void *p = next.memalign(page, rounded);
    account(p, size);
    return p;
}

HEAPPROF_API size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (in_boot(p))
        return boot_size(p);
    if (HP_UNLIKELY(!ready()))
        return 0;
    return next.malloc_usable_size(p);
}
