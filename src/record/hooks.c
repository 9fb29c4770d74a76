/* The interposed malloc family.
 *
 * Each entry point forwards to the next allocator in the lookup order (glibc,
 * or jemalloc/mimalloc when those are preloaded after heapprof), then does
 * the least it can: an allocation subtracts its size from the thread's
 * countdown and only goes further when that crosses zero; a free reads the
 * count of live samples and, when there are any, one counter of the live
 * set's filter (see live.c).
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
/* Until the real functions are known, the fast paths of malloc and free
 * call these, which find them. */
struct hp_real hp_real = {.malloc = first_malloc, .free = first_free};
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
    struct hp_real r;
    r.malloc = must("malloc");
    r.free = must("free");
    r.calloc = must("calloc");
    r.realloc = must("realloc");
    r.posix_memalign = must("posix_memalign");
    r.aligned_alloc = must("aligned_alloc");
    r.memalign = must("memalign");
    r.malloc_usable_size = must("malloc_usable_size");
    /* The functions first, then the state that ready() tests. */
    __atomic_store_n(&hp_real.free, r.free, __ATOMIC_RELEASE);
    hp_real.calloc = r.calloc;
    hp_real.realloc = r.realloc;
    hp_real.posix_memalign = r.posix_memalign;
    hp_real.aligned_alloc = r.aligned_alloc;
    hp_real.memalign = r.memalign;
    hp_real.malloc_usable_size = r.malloc_usable_size;
    __atomic_store_n(&hp_real.malloc, r.malloc, __ATOMIC_RELEASE);
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
    void *p = hp_real.malloc(size);
    alloc_slow(p, size);
    return p;
}

static void *first_malloc(size_t size)
{
    if (!ready())
        return boot_alloc(size, 16);
    return hp_real.malloc(size);
}

/* Written so that the fast path needs no stack frame: a decrement of the
 * thread's countdown, a branch and a tail jump to the real malloc (or, the
 * first time, to first_malloc). */
HEAPPROF_API void *malloc(size_t size)
{
    if (HP_LIKELY(!countdown_hit(size)))
        return hp_real.malloc(size);
    return malloc_slow(size);
}

static void first_free(void *p)
{
    if (!p || in_boot(p) || !ready())
        return;
    hp_real.free(p);
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
    hp_real.free(p);
}

/* The fast path: one bit of the block bitmap, then a tail jump to the real
 * free (or, before any allocation, to first_free). */
HEAPPROF_API void free(void *p)
{
    if (HP_UNLIKELY(hp_block_maybe(p)))
        return free_slow(p);
    hp_real.free(p);
}

HEAPPROF_API void *calloc(size_t n, size_t size)
{
    size_t total;
    bool overflow = __builtin_mul_overflow(n, size, &total);
    if (HP_UNLIKELY(!ready()))
        return overflow ? NULL : boot_alloc(total, 16);
    /* On overflow the real calloc fails (ENOMEM) and nothing is counted. */
    if (overflow || !countdown_hit(total))
        return hp_real.calloc(n, size);
    void *p = hp_real.calloc(n, size);
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
    void *q = hp_real.realloc(p, size);
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
    int r = hp_real.posix_memalign(out, align, size);
    if (r == 0)
        account(*out, size);
    return r;
}

HEAPPROF_API void *aligned_alloc(size_t align, size_t size)
{
    if (HP_UNLIKELY(!ready()))
        return boot_alloc(size, align);
    if (!countdown_hit(size))
        return hp_real.aligned_alloc(align, size);
    void *p = hp_real.aligned_alloc(align, size);
    alloc_slow(p, size);
    return p;
}

HEAPPROF_API void *memalign(size_t align, size_t size)
{
    if (HP_UNLIKELY(!ready()))
        return boot_alloc(size, align);
    if (!countdown_hit(size))
        return hp_real.memalign(align, size);
    void *p = hp_real.memalign(align, size);
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
    void *p = hp_real.memalign(page, size);
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
    void *p = hp_real.memalign(page, rounded);
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
    return hp_real.malloc_usable_size(p);
}

/* ---- memory the program takes without malloc (record/regions.c) ---- */

static struct {
    void *(*sbrk)(intptr_t);
    int (*brk)(void *);
    int (*madvise)(void *, size_t, int);
    int (*munmap)(void *, size_t);
} region_real;

/* At load, before the program runs: never later, where dlsym could wait
 * for a loader lock another thread held at a fork. */
__attribute__((constructor)) static void region_resolve(void)
{
    region_real.sbrk = (void *(*)(intptr_t))dlsym(RTLD_NEXT, "sbrk");
    region_real.brk = (int (*)(void *))dlsym(RTLD_NEXT, "brk");
    region_real.madvise = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
    region_real.munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
}

HEAPPROF_API void *sbrk(intptr_t increment)
{
    if (!region_real.sbrk)
        region_resolve();
    void *old = region_real.sbrk ? region_real.sbrk(increment) : (void *)-1;
    if (old != (void *)-1 && increment)
        hp_regions_brk((uintptr_t)old, (uintptr_t)old + (uintptr_t)increment);
    return old;
}

HEAPPROF_API int brk(void *addr)
{
    if (!region_real.brk)
        region_resolve();
    if (!region_real.brk || !region_real.sbrk) {
        errno = ENOMEM;
        return -1;
    }
    void *old = region_real.sbrk(0);
    int r = region_real.brk(addr);
    if (r == 0 && old != (void *)-1)
        hp_regions_brk((uintptr_t)old, (uintptr_t)addr);
    return r;
}

HEAPPROF_API int madvise(void *addr, size_t len, int advice)
{
    if (!region_real.madvise)
        region_resolve();
    int r = region_real.madvise ? region_real.madvise(addr, len, advice) : (errno = ENOSYS, -1);
    if (r == 0)
        hp_regions_madvise((uintptr_t)addr, len, advice);
    return r;
}

HEAPPROF_API int munmap(void *addr, size_t len)
{
    if (!region_real.munmap)
        region_resolve();
    int r = region_real.munmap ? region_real.munmap(addr, len) : (errno = ENOSYS, -1);
    if (r == 0)
        hp_regions_unmap((uintptr_t)addr, len);
    return r;
}
