/* The interposed malloc family.
 *
 * Each entry point forwards to the next allocator in the lookup order (glibc,
 * or jemalloc/mimalloc when those are preloaded after heapprof), then does
 * the least it can: an allocation subtracts its size from the thread's
 * countdown and only goes further when that crosses zero. A free, over
 * glibc in sampled mode, tests the word before the pointer, which a sampled
 * allocation's header (below) matches; then it jumps through
 * hp_block_set.free_next: to the allocator's free, or, only while a sampled
 * object without a header is live (exact mode, the aligned family, other
 * allocators), to the live set's block bitmap and filter (see
 * record/live.c).
 * Nothing here takes a lock or writes shared memory unless the allocation is
 * sampled or the pointer may be a sampled one. C++ operator new and delete
 * reach these through heapprof's own operators (cxx.c), which call malloc,
 * posix_memalign and free.
 */
#define _GNU_SOURCE
#include "heads.h"
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

/* ---- Headers on sampled objects ----
 * free() must tell a sampled object from the rest by its pointer. Each
 * sampled malloc, calloc or realloc (at the default rate, one allocation in
 * thousands) asks the allocator for 32 bytes more and hands out a pointer
 * 16 or 32 bytes into the block, after a 16-byte header: a check word
 * (the pointer xored with a second key, the offset in its low bits), then
 * the pointer xored with a key. Not the pointer itself, which would be
 * one instruction shorter to test: the leak check would read it as a
 * reference to the block. free() compares the word before the pointer
 * (in glibc, the chunk's size field, which its own free reads next); a
 * match is confirmed by the check word, and then the live set finds the
 * object without filters. Nothing shared is written
 * at a sample, so frees on other CPUs lose no cache line to it. The word
 * is only read where the pointer is at least 16 bytes into its page, so the
 * read never leaves the page free() was given; the pointer handed out is
 * always placed so. A header is cleared before its block goes back to the
 * allocator. The pointer is aligned to 16 as malloc's; exact mode (every
 * allocation sampled) and the aligned family have none and use the
 * filters, as does every object over another allocator (heads_able). A
 * block with a header must only be freed by heapprof's free (and realloc):
 * a library dlopened with RTLD_DEEPBIND, which would call glibc's, has its
 * slots for them pointed at heapprof's (interpose/loader.c), and no new
 * header is made after such a dlopen. */
static bool heads_off;
/* Set at the first sample in sampled mode if the allocator is glibc's
 * (heads()): free() tests for a header from then on. glibc's free reads
 * the word before the pointer (the chunk's size) anyway, so the test costs
 * it nothing; other allocators keep their metadata elsewhere, and over
 * mimalloc, whose 32-byte malloc/free pair takes 3 ns, that one read cost
 * 12 points (bench/README.md, before the branch padding of
 * src/meson.build). Over them sampled objects have no header. */
static bool heads_able;
static bool next_is_glibc; /* found with the allocator */

/* Where in a block of at least size + HEAD_PAD bytes the object goes: 16
 * bytes in, or 32 when that would be under 16 bytes into a page. */
static size_t head_place(const void *block)
{
    return (((uintptr_t)block + HEAD) & 0xff0) ? HEAD : HEAD_PAD;
}

static void *head_put(void *block, size_t off)
{
    char *p = (char *)block + off;
    uint64_t w[2] = {head_check(p, off), (uintptr_t)p ^ HEAD_KEY};
    memcpy(p - HEAD, w, sizeof w);
    return p;
}

static void head_clear(void *p)
{
    memset((char *)p - 8, 0, 8);
}

/* Whether a sampled object gets a header: sampled mode, and no library
 * bound deeply since. */
static inline bool heads(void)
{
    /* Set at the first sample, before its block is handed out: in exact
     * mode, where every free goes to the live set anyway, never, and
     * free() skips its test. */
    if (HP_UNLIKELY(!__atomic_load_n(&heads_able, __ATOMIC_RELAXED)) && hp_cfg.rate > 1 &&
        next_is_glibc)
        __atomic_store_n(&heads_able, true, __ATOMIC_RELEASE);
    return heads_able && !__atomic_load_n(&heads_off, __ATOMIC_RELAXED);
}

void hp_heads_stop(void)
{
    __atomic_store_n(&heads_off, true, __ATOMIC_RELAXED);
}

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
    return (size_t)word_before(p, sizeof(size_t));
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

/* Whether f is in glibc's libc.so (not an allocator preloaded after
 * heapprof: mimalloc defines __libc_free too, so the name tells nothing). */
static bool is_glibc(void *f)
{
    const char *path = hp_dl_path_of(f); /* not dladdr, which reads every symbol */
    if (!path)
        return false;
    const char *base = strrchr(path, '/');
    return !strncmp(base ? base + 1 : path, "libc.so", 7);
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
    next_is_glibc = is_glibc(r.free);
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
    hp_live_route(); /* hp_block_set.free_next: the allocator's free, unless filtered */
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

/* The slow path of every allocation, before the allocation is made: out
 * of line so the fast path stays a decrement, a branch and a tail call to
 * the real allocator. Whether the allocation is sampled. */
__attribute__((noinline)) static bool take(size_t size)
{
    /* A thread's first allocation may be the process's: heapprof starts
     * here when nothing started it yet (see record/lifecycle.c). */
    if (HP_UNLIKELY(!hp_thread.ready) && !hp_thread.busy && hp_state != HP_STATE_ON &&
        hp_state != HP_STATE_OFF)
        hp_init();
    return hp_sampler_take(size);
}

/* The aligned family's: p was made without a header. */
__attribute__((noinline)) static void alloc_slow(void *p, size_t size)
{
    if (take(size) && p)
        hp_on_alloc(p, size, false);
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

/* A sampled malloc or calloc, with a header when heads() allows. */
static void *alloc_sampled(size_t size, bool zero)
{
    bool headed = heads();
    size_t n = size;
    if (headed && __builtin_add_overflow(size, (size_t)HEAD_PAD, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = zero ? next.calloc(1, n) : next.malloc(n);
    if (!p)
        return NULL;
    if (headed)
        p = head_put(p, head_place(p));
    hp_on_alloc(p, size, headed);
    return p;
}

/* Everything malloc does beyond its fast path, once the countdown has been
 * charged and crossed zero. */
__attribute__((noinline)) static void *malloc_slow(size_t size)
{
    if (!ready())
        return boot_alloc(size, 16);
    if (!take(size))
        return next.malloc(size);
    return alloc_sampled(size, false);
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

/* Where the block bitmap says p may be special: a sampled object without a
 * header, or a block of the boot pool (whose bits are set when it first
 * serves one); or NULL, whose bit a sampled object far away may share. */
__attribute__((noinline)) static void free_slow(void *p)
{
    if (!p || in_boot(p))
        return;
    if (hp_live_all || hp_filter_maybe(p))
        hp_on_free(p);
    next.free(p);
}

/* A free without a header while sampled objects without one may be live:
 * one bit of the block bitmap, then the filter. */
static void free_filtered(void *p)
{
    /* The bit alone: free_next got here by the flag already, and reading
     * the flag again would be a second line that each sample changes. */
    uint32_t i = hp_block_index(p);
    if (HP_UNLIKELY(__atomic_load_n(&hp_block_bits[i / 64], __ATOMIC_RELAXED) >> (i % 64) & 1))
        return free_slow(p);
    next.free(p);
}

static void first_free(void *p)
{
    if (!p || in_boot(p) || !ready())
        return;
    free_filtered(p); /* no header is made before the allocator is known */
}

/* hp_block_set.free_next, where free() goes for a pointer without a
 * header: the allocator's free while no sampled object without one is
 * live, else free_filtered. Set by hp_free_route, under the lock that sets
 * hp_block_set.n, so the two always agree, and set before a sampled pointer
 * is handed out as the flag is; first_free until the allocator is known.
 * Beside the flag, in its line: over other allocators both change at every
 * sample, and two lines would be two lines taken from the other CPU. The
 * definition here, for the initial value (live.c has a weak one, for the
 * unit tests). */
struct hp_block_set hp_block_set = {0, first_free};

void hp_free_route(bool filtered)
{
    void (*f)(void *) = filtered                                                 ? free_filtered
                        : __atomic_load_n(&resolve_state, __ATOMIC_ACQUIRE) == 2 ? next.free
                                                                                 : first_free;
    __atomic_store_n(&hp_block_set.free_next, f, __ATOMIC_RELEASE);
}

/* The word before p is its key. */
__attribute__((noinline)) static void free_headed(void *p)
{
    if (in_boot(p))
        return;
    size_t off = head_off(p);
    if (HP_UNLIKELY(!off))
        return free_filtered(p);
    int e = errno; /* free() leaves errno alone (POSIX.1-2024) */
    hp_on_free(p);
    errno = e;
    head_clear(p);
    next.free((char *)p - off);
}

/* The fast path: over glibc, the word before p; then a tail jump through
 * free_next. (79659e6 had free() only the jump, and over glibc free_next a
 * function with the test: two indirect jumps in a row. Against it, 21
 * alternating runs of bench/ab_libs.py, before the branch padding of
 * src/meson.build: 32-byte pairs over glibc 4 points faster here, over
 * jemalloc 5 points slower, mixed sizes within 2 points over all three
 * allocators.) */
HEAPPROF_API void free(void *p)
{
    if (__atomic_load_n(&heads_able, __ATOMIC_RELAXED) && HP_UNLIKELY(head_maybe(p)))
        return free_headed(p);
    __atomic_load_n(&hp_block_set.free_next, __ATOMIC_RELAXED)(p);
}

HEAPPROF_API void *calloc(size_t n, size_t size)
{
    size_t total;
    bool overflow = __builtin_mul_overflow(n, size, &total);
    if (HP_UNLIKELY(!ready()))
        return overflow ? NULL : boot_alloc(total, 16);
    /* On overflow the real calloc fails (ENOMEM) and nothing is counted. */
    if (overflow || !countdown_hit(total) || !take(total))
        return next.calloc(n, size);
    return alloc_sampled(total, true);
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Puts the old block back after a failed realloc. */
static void *realloc_failed(void *p, struct hp_live_rec old)
{
    int e = errno;
    if (old.bucket)
        hp_on_unfree(p, old);
    errno = e;
    return NULL;
}

/* realloc of an object with a header: the block keeps one, whether the new
 * size is sampled or not, so that a block that grows is not copied to drop
 * it. Only realloc(p, 0) hands the block to the allocator as it is. */
__attribute__((noinline)) static void *realloc_headed(void *p, size_t off, size_t size)
{
    struct hp_live_rec old = hp_on_free(p);
    char *block = (char *)p - off;
    bool sampled = countdown_hit(size) && take(size);
    size_t n;
    if (size == 0) {
        head_clear(p);
        return next.realloc(block, 0); /* freed, or a block of the allocator's */
    }
    size_t have = next.malloc_usable_size(block) - off;
    if (__builtin_add_overflow(size, (size_t)HEAD_PAD, &n)) {
        errno = ENOMEM;
        return realloc_failed(p, old);
    }
    /* Cleared first: once the real realloc has run, the old block may be
     * another's. */
    head_clear(p);
    char *moved = next.realloc(block, n);
    if (!moved) {
        head_put(block, off);
        return realloc_failed(p, old);
    }
    size_t at = head_place(moved);
    if (at != off)
        memmove(moved + at, moved + off, min_size(have, size));
    void *q = head_put(moved, at);
    if (sampled)
        hp_on_alloc(q, size, true);
    return q;
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
    size_t off = p && __atomic_load_n(&heads_able, __ATOMIC_RELAXED) ? head_of(p) : 0;
    if (HP_UNLIKELY(off))
        return realloc_headed(p, off, size);
    struct hp_live_rec old = {0, false, 0};
    if (p && HP_UNLIKELY(hp_live_maybe(p)))
        old = hp_on_free(p);
    bool sampled = countdown_hit(size) && take(size);
    if (HP_UNLIKELY(sampled) && heads()) {
        /* A new block with a header, the old one copied over. */
        size_t have = p ? next.malloc_usable_size(p) : 0;
        void *q = alloc_sampled(size, false);
        if (!q)
            return realloc_failed(p, old);
        if (p) {
            memcpy(q, p, min_size(have, size));
            next.free(p);
        }
        return q;
    }
    void *q = next.realloc(p, size);
    if (HP_UNLIKELY(!q)) {
        /* Failed (the old block is intact), or freed by realloc(p, 0). */
        if (size != 0)
            realloc_failed(p, old);
        return NULL;
    }
    if (sampled)
        hp_on_alloc(q, size, false);
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
    return hp_usable_size(p); /* a header's offset taken off (record/live.c) */
}
