/* stats-sites: allocation sites of exactly known truth, for heapprof's
 * statistical accuracy tests (tests/stats/test_accuracy.py) and benchmark
 * (bench/accuracy.py). Run it under LD_PRELOAD=libheapprof.so.
 *
 * Usage: stats-sites [TRUTH_FILE]
 *   TRUTH_FILE (or the variable STATS_SITES_TRUTH; stdout if neither) gets
 *   one line per site, tab-separated, after a header line:
 *
 *     site  alloc_objects alloc_bytes inuse_objects inuse_bytes
 *           var_alloc_objects var_alloc_bytes var_inuse_objects var_inuse_bytes
 *           jump_objects jump_bytes max_size
 *
 * The truth counts requests the way heapprof does: calloc(n, s) is n*s bytes,
 * an aligned allocation is its requested size, each realloc is an allocation
 * of the new size (and a free of the old block) at the realloc's call site.
 * Each site is a named noinline function that allocates only from its own
 * body, so its cumulative value in a profile is exactly its own allocations.
 *
 * The variances are those of heapprof's estimator at the rate R the program
 * is told (HEAPPROF_RATE, default 524288, R <= 1 exact). Each allocation of s
 * bytes is sampled independently with probability p = 1 - exp(-s/R) and, when
 * sampled, stands for w/p, where w = s for a bytes value and w = 1 for an
 * objects value. Its contribution w*B/p (B ~ Bernoulli(p)) has mean w and
 * variance w^2 (1-p)/p, so a site's estimate has
 *
 *     Var = sum over the site's allocations of w^2 (1-p)/p,
 *
 * over all of them for alloc_*, over those still live at exit for inuse_*
 * (a freed block contributes nothing whether it was sampled or not). Note
 * (1-p)/p = 1/(exp(s/R) - 1), computed with expm1.
 *
 * The last three columns bound single contributions, for the tests' tail
 * bounds (Bennett's inequality): a contribution's deviation w*B/p - w lies in
 * [-w, w (1-p)/p]; jump_* is the largest w (1-p)/p over the site's
 * allocations and max_size the largest s (the lower bound for bytes; 1 for
 * objects).
 *
 * Everything here is deterministic: sizes come from per-site LCGs with fixed
 * seeds, and the four threads of site_threads do identical work, so which
 * thread gets which of heapprof's per-thread seeds does not change the sums.
 * Only the site_near_rate sizes depend on R, so that its objects straddle the
 * rate under test. A run takes well under a second at R >= 4096.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* noinline keeps every site a frame of its own; the build also passes
 * -fno-optimize-sibling-calls so no site's call turns into a jump. */
#define SITE __attribute__((noinline))

enum {
    TINY_COUNT = 1000000,
    TINY_SIZE = 16,
    MIXED_COUNT = 20000,
    MIXED_MAX = 8192,
    LARGE_COUNT = 24,
    NEAR_RATE_COUNT = 1024,
    CALLOC_COUNT = 40000,
    REALLOC_CHAINS = 400,
    ALIGNED_COUNT = 10000,
    NTHREADS = 4,
    THREAD_COUNT = 30000,
    FREED_COUNT = 200000,
    FREED_SIZE = 128,
    PARTLY_COUNT = 100000,
    PARTLY_SIZE = 200,
    RING = 64,
};

struct truth {
    const char *name;
    uint64_t alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
    double var_alloc_objects, var_alloc_bytes, var_inuse_objects, var_inuse_bytes;
    double jump_objects, jump_bytes;
    uint64_t max_size;
};

enum site_id {
    S_TINY,
    S_MIXED,
    S_LARGE,
    S_NEAR_RATE,
    S_CALLOC,
    S_REALLOC,
    S_POSIX_MEMALIGN,
    S_ALIGNED_ALLOC,
    S_MEMALIGN,
    S_THREADS,
    S_ALL_FREED,
    S_PARTLY_KEPT,
    NSITES
};

static struct truth truths[NSITES] = {
    [S_TINY] = {.name = "site_tiny"},
    [S_MIXED] = {.name = "site_mixed"},
    [S_LARGE] = {.name = "site_large"},
    [S_NEAR_RATE] = {.name = "site_near_rate"},
    [S_CALLOC] = {.name = "site_calloc"},
    [S_REALLOC] = {.name = "site_realloc"},
    [S_POSIX_MEMALIGN] = {.name = "site_posix_memalign"},
    [S_ALIGNED_ALLOC] = {.name = "site_aligned_alloc"},
    [S_MEMALIGN] = {.name = "site_memalign"},
    [S_THREADS] = {.name = "site_threads"},
    [S_ALL_FREED] = {.name = "site_all_freed"},
    [S_PARTLY_KEPT] = {.name = "site_partly_kept"},
};

/* The rate heapprof samples at; <= 1 means exact mode. */
static double rate;

/* Blocks kept live until exit: what heapprof must report as in use (and
 * leaked). Reachable from here so nothing looks unused to the compiler. */
static void **kept;
static size_t nkept, capkept;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

/* Recently allocated blocks, freed a little later rather than at once: a
 * block stored here escapes, so the compiler cannot drop a malloc/free pair,
 * and the allocator sees a more realistic pattern. One ring per thread. */
static __thread void *ring[RING];
static __thread unsigned ring_pos;

static void die(const char *what)
{
    fprintf(stderr, "stats-sites: %s\n", what);
    exit(99);
}

static void *must(void *p)
{
    if (!p)
        die("out of memory");
    return p;
}

/* The truth accounting allocates nothing, so it cannot disturb the profile.
 * (1-p)/p = 1/(exp(s/R) - 1) is 0 in exact mode and for s >> R. */
static double inv_odds(uint64_t size)
{
    if (rate <= 1)
        return 0;
    return 1.0 / expm1((double)size / rate);
}

/* An allocation of size bytes at site t: its truth and its share of the
 * estimator's variance, w^2 (1-p)/p with w = 1 (objects) and w = s (bytes). */
static void note_alloc(struct truth *t, uint64_t size)
{
    double q = inv_odds(size);
    t->alloc_objects++;
    t->alloc_bytes += size;
    t->var_alloc_objects += q;
    t->var_alloc_bytes += (double)size * (double)size * q;
    if (q > t->jump_objects)
        t->jump_objects = q;
    if ((double)size * q > t->jump_bytes)
        t->jump_bytes = (double)size * q;
    if (size > t->max_size)
        t->max_size = size;
}

/* The same for a block that stays live until exit (the in-use values). */
static void note_keep(struct truth *t, uint64_t size)
{
    double q = inv_odds(size);
    t->inuse_objects++;
    t->inuse_bytes += size;
    t->var_inuse_objects += q;
    t->var_inuse_bytes += (double)size * (double)size * q;
}

/* site_threads' threads sum their truth privately and merge it here, so
 * they do not race on the table. */
static void merge(struct truth *into, const struct truth *from)
{
    pthread_mutex_lock(&kept_lock);
    into->alloc_objects += from->alloc_objects;
    into->alloc_bytes += from->alloc_bytes;
    into->inuse_objects += from->inuse_objects;
    into->inuse_bytes += from->inuse_bytes;
    into->var_alloc_objects += from->var_alloc_objects;
    into->var_alloc_bytes += from->var_alloc_bytes;
    into->var_inuse_objects += from->var_inuse_objects;
    into->var_inuse_bytes += from->var_inuse_bytes;
    if (from->jump_objects > into->jump_objects)
        into->jump_objects = from->jump_objects;
    if (from->jump_bytes > into->jump_bytes)
        into->jump_bytes = from->jump_bytes;
    if (from->max_size > into->max_size)
        into->max_size = from->max_size;
    pthread_mutex_unlock(&kept_lock);
}

/* The kept list grows with the real allocator, but from main's helpers,
 * never from inside a site function, so its blocks are not a site's. Sites
 * call keep() only after their allocations; keep_reserve() runs up front. */
static void keep_reserve(size_t more)
{
    pthread_mutex_lock(&kept_lock);
    if (nkept + more > capkept) {
        size_t cap = (nkept + more) * 2;
        kept = must(realloc(kept, cap * sizeof *kept));
        capkept = cap;
    }
    pthread_mutex_unlock(&kept_lock);
}

static void keep(void *p)
{
    pthread_mutex_lock(&kept_lock);
    if (nkept == capkept)
        die("keep_reserve was too small");
    kept[nkept++] = p;
    pthread_mutex_unlock(&kept_lock);
}

/* Puts p in the ring and frees the block it replaces. */
static void churn(void *p)
{
    unsigned i = ring_pos++ % RING;
    free(ring[i]);
    ring[i] = p;
}

static void drain(void)
{
    for (unsigned i = 0; i < RING; i++) {
        free(ring[i]);
        ring[i] = NULL;
    }
}

/* Knuth's MMIX LCG; the high bits are the good ones. */
static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 33;
}

/* Uniform in [lo, hi]. The modulo bias is irrelevant: the truth is counted,
 * not assumed. */
static uint64_t uniform(uint64_t *x, uint64_t lo, uint64_t hi)
{
    return lo + lcg(x) % (hi - lo + 1);
}

/* ---- the sites ----------------------------------------------------------- */

/* Many tiny objects, s << R: few samples, each standing for ~R/s objects.
 * One in eight kept. */
SITE static void site_tiny(void)
{
    struct truth *t = &truths[S_TINY];
    for (int i = 0; i < TINY_COUNT; i++) {
        void *p = must(malloc(TINY_SIZE));
        note_alloc(t, TINY_SIZE);
        if (i % 8 == 0) {
            note_keep(t, TINY_SIZE);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* Sizes uniform in 1..8192: one (stack, size) bucket per size, so the
 * per-bucket unbiasing is exercised over three decades of p. One in ten
 * kept. */
SITE static void site_mixed(void)
{
    struct truth *t = &truths[S_MIXED];
    uint64_t x = 1;
    for (int i = 0; i < MIXED_COUNT; i++) {
        size_t s = uniform(&x, 1, MIXED_MAX);
        void *p = must(malloc(s));
        note_alloc(t, s);
        if (i % 10 == 0) {
            note_keep(t, s);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* Objects of 1-3 MiB, larger than the default rate: almost always sampled,
 * each standing for a little more than itself. One in three kept. */
SITE static void site_large(void)
{
    struct truth *t = &truths[S_LARGE];
    uint64_t x = 2;
    for (int i = 0; i < LARGE_COUNT; i++) {
        size_t s = uniform(&x, 1 << 20, 3 << 20);
        void *p = must(malloc(s));
        note_alloc(t, s);
        if (i % 3 == 0) {
            note_keep(t, s);
            keep(p);
        } else {
            free(p);
        }
    }
}

/* Sizes uniform in [R/8, 4R] for the rate under test: p from 0.12 to 0.98,
 * where 1/p is far from both 1 and R/s. All freed. */
SITE static void site_near_rate(uint64_t r)
{
    struct truth *t = &truths[S_NEAR_RATE];
    uint64_t x = 3;
    for (int i = 0; i < NEAR_RATE_COUNT; i++) {
        size_t s = uniform(&x, r / 8, 4 * r);
        void *p = must(malloc(s));
        note_alloc(t, s);
        free(p);
    }
}

/* calloc(n, 48) with n in 1..32: counted as n*48 bytes. One in five kept. */
SITE static void site_calloc(void)
{
    struct truth *t = &truths[S_CALLOC];
    uint64_t x = 4;
    for (int i = 0; i < CALLOC_COUNT; i++) {
        size_t n = uniform(&x, 1, 32);
        void *p = must(calloc(n, 48));
        note_alloc(t, n * 48);
        if (i % 5 == 0) {
            note_keep(t, n * 48);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* Growth chains: realloc(NULL, 64, 80, 96 or 112), then x1.5 up to 64 KiB.
 * Every call is an allocation of the new size; the final block of one chain
 * in four is kept. */
SITE static void site_realloc(void)
{
    struct truth *t = &truths[S_REALLOC];
    for (int c = 0; c < REALLOC_CHAINS; c++) {
        void *p = NULL;
        size_t s = 0;
        for (size_t next = 64 + 16 * (size_t)(c % 4); next <= 65536; next = next * 3 / 2) {
            s = next;
            p = must(realloc(p, s));
            note_alloc(t, s);
        }
        if (c % 4 == 0) {
            note_keep(t, s);
            keep(p);
        } else {
            free(p);
        }
    }
}

/* posix_memalign(64, 100 + 16k up to 4004): counted as the requested size.
 * All freed. */
SITE static void site_posix_memalign(void)
{
    struct truth *t = &truths[S_POSIX_MEMALIGN];
    uint64_t x = 6;
    for (int i = 0; i < ALIGNED_COUNT; i++) {
        size_t s = 100 + 16 * uniform(&x, 0, 244);
        void *p;
        if (posix_memalign(&p, 64, s) != 0)
            die("posix_memalign failed");
        note_alloc(t, s);
        churn(p);
    }
    drain();
}

/* aligned_alloc(256, multiple of 256 up to 8192). One in four kept. */
SITE static void site_aligned_alloc(void)
{
    struct truth *t = &truths[S_ALIGNED_ALLOC];
    uint64_t x = 7;
    for (int i = 0; i < ALIGNED_COUNT; i++) {
        size_t s = 256 * uniform(&x, 1, 32);
        void *p = must(aligned_alloc(256, s));
        note_alloc(t, s);
        if (i % 4 == 0) {
            note_keep(t, s);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* memalign(32, 1..2048). One in two kept. */
SITE static void site_memalign(void)
{
    struct truth *t = &truths[S_MEMALIGN];
    uint64_t x = 8;
    for (int i = 0; i < ALIGNED_COUNT; i++) {
        size_t s = uniform(&x, 1, 2048);
        void *p = must(memalign(32, s));
        note_alloc(t, s);
        if (i % 2 == 0) {
            note_keep(t, s);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* Run by each of NTHREADS threads at once, with the same sizes in every
 * thread: 16..1024 bytes, one in eight kept. Each thread sums its truth
 * privately and merges it at the end. */
SITE static void site_threads(struct truth *t)
{
    uint64_t x = 9;
    for (int i = 0; i < THREAD_COUNT; i++) {
        size_t s = uniform(&x, 16, 1024);
        void *p = must(malloc(s));
        note_alloc(t, s);
        if (i % 8 == 0) {
            note_keep(t, s);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* Every object freed: the in-use estimate must be exactly 0. */
SITE static void site_all_freed(void)
{
    struct truth *t = &truths[S_ALL_FREED];
    for (int i = 0; i < FREED_COUNT; i++) {
        void *p = must(malloc(FREED_SIZE));
        note_alloc(t, FREED_SIZE);
        churn(p);
    }
    drain();
}

/* One object in three kept, so in-use truth is a third of the allocated. */
SITE static void site_partly_kept(void)
{
    struct truth *t = &truths[S_PARTLY_KEPT];
    for (int i = 0; i < PARTLY_COUNT; i++) {
        void *p = must(malloc(PARTLY_SIZE));
        note_alloc(t, PARTLY_SIZE);
        if (i % 3 == 0) {
            note_keep(t, PARTLY_SIZE);
            keep(p);
        } else {
            churn(p);
        }
    }
    drain();
}

/* ---- driver -------------------------------------------------------------- */

static pthread_barrier_t start;

static void *thread_main(void *arg)
{
    struct truth mine = {.name = NULL};
    (void)arg;
    pthread_barrier_wait(&start);
    site_threads(&mine);
    merge(&truths[S_THREADS], &mine);
    return NULL;
}

static void run_threads(void)
{
    pthread_t th[NTHREADS];
    if (pthread_barrier_init(&start, NULL, NTHREADS) != 0)
        die("pthread_barrier_init failed");
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&th[i], NULL, thread_main, NULL) != 0)
            die("pthread_create failed");
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
}

static void write_truth(FILE *f)
{
    fprintf(f, "site\talloc_objects\talloc_bytes\tinuse_objects\tinuse_bytes"
               "\tvar_alloc_objects\tvar_alloc_bytes\tvar_inuse_objects\tvar_inuse_bytes"
               "\tjump_objects\tjump_bytes\tmax_size\n");
    for (int i = 0; i < NSITES; i++) {
        const struct truth *t = &truths[i];
        fprintf(f, "%s\t%llu\t%llu\t%llu\t%llu\t%.17g\t%.17g\t%.17g\t%.17g\t%.17g\t%.17g\t%llu\n",
                t->name, (unsigned long long)t->alloc_objects, (unsigned long long)t->alloc_bytes,
                (unsigned long long)t->inuse_objects, (unsigned long long)t->inuse_bytes,
                t->var_alloc_objects, t->var_alloc_bytes, t->var_inuse_objects, t->var_inuse_bytes,
                t->jump_objects, t->jump_bytes, (unsigned long long)t->max_size);
    }
}

int main(int argc, char **argv)
{
    /* The same reading of HEAPPROF_RATE as the library's (config.c): a
     * whole number from 1 to 2^40, else the default 524288; 1 is exact
     * mode, where site_near_rate still sizes its objects around 524288. */
    const char *r = getenv("HEAPPROF_RATE");
    char *end = NULL;
    long rv = r ? strtol(r, &end, 10) : 0;
    if (!r || !*r || *end || rv < 1 || rv > (1L << 40))
        rv = 524288;
    rate = (double)rv;
    uint64_t near_base = rv > 1 ? (uint64_t)rv : 524288;

    const char *out = argc > 1 ? argv[1] : getenv("STATS_SITES_TRUTH");

    /* Room for every kept block, reserved before any site runs. */
    keep_reserve(TINY_COUNT / 8 + MIXED_COUNT / 10 + LARGE_COUNT + CALLOC_COUNT / 5 +
                 REALLOC_CHAINS / 4 + 2 * ALIGNED_COUNT + NTHREADS * THREAD_COUNT / 8 +
                 PARTLY_COUNT / 3 + 64);

    site_tiny();
    site_mixed();
    site_large();
    site_near_rate(near_base);
    site_calloc();
    site_realloc();
    site_posix_memalign();
    site_aligned_alloc();
    site_memalign();
    run_threads();
    site_all_freed();
    site_partly_kept();

    FILE *f = out && *out ? fopen(out, "w") : stdout;
    if (!f)
        die("cannot open the truth file");
    write_truth(f);
    if (f != stdout ? fclose(f) != 0 : fflush(f) != 0)
        die("cannot write the truth file");
    return 0;
}
