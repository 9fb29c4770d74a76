/* The leak check: which live objects are lost at exit, as LeakSanitizer and
 * memcheck judge it, and which are still reachable. docs/leak-check.md has
 * the whole account; in short:
 *
 * Exact mode (rate 1: heapprof knows every live object). The check marks
 * conservatively from the roots, transitively through the objects: any
 * aligned word that holds an address inside a live object (its start or
 * within it) marks it. The roots: every writable mapping the program has
 * (data and bss, TLS, anonymous and file mappings, shared ones read by
 * mincore since the copy lacks their pages, DONTFORK/WIPEONFORK ones whose
 * marks are lifted around the fork), what the program took with sbrk, each
 * live thread's stack from its stack pointer up with its registers
 * (report/tasks.c: held by a signal if running, from /proc if blocked), and
 * the exiting thread from the frames of exit()'s caller up (record/stack.c).
 * Not roots: malloc's own memory (the [heap] but for the program's sbrk
 * ranges, glibc's other arenas, the pages that hold part of a live object),
 * what lies below a live thread's stack pointer, the blocks of exited
 * threads (exclude_stale_stacks says how they are found), heapprof's own
 * memory and libraries. Where a thread's stack pointer is unknown, more is
 * read, never less. Objects left unmarked are then sorted as memcheck does:
 * each, in address order, that no earlier one reached starts a clique, and
 * every unmarked object it reaches is indirectly lost (a clique it reaches
 * is absorbed); the starts are definitely lost. A lost cycle thus has one
 * object definitely lost and the rest indirectly.
 *
 * Sampled mode (heapprof knows only the sampled objects). A full mark is
 * impossible, since unsampled objects cannot be followed. Instead every
 * readable and writable mapping (the heap included, but not heapprof's own
 * memory, dead threads' stacks or the object itself) is read for a word
 * pointing into each sampled object. None: definitely lost. Otherwise the
 * object is still referenced, which includes being referenced only by
 * another lost object, or by a stale copy in freed memory: this verdict can
 * miss a leak, never call referenced memory lost.
 *
 * Allocator bookkeeping: glibc's malloc keeps pointers to the header of
 * chunks, in its own data (libc's writable segment) and in the first four
 * words of a chunk it hands out again (fd, bk, fd_nextsize, bk_nextsize
 * left from when it was free), and a chunk's header lies in the last bytes
 * of the chunk before it, which can be a live object's last requested
 * bytes. A word found there that points exactly at that spot (start +
 * malloc_usable_size - 8) is not taken for a reference.
 *
 * Safety. The reading is done in a child made by hp_freeze_clone (record/
 * freeze.c), with heapprof's locks held and the running threads held
 * around it: a copy of the process that holds still, with one thread, where
 * no other thread can unmap memory under the check, and whose faults (a
 * mapping past the end of its file, a page made unreadable) only skip a
 * page: SIGSEGV and SIGBUS jump out of the read. The child reports the lost
 * objects through a pipe and exits; the parent gives up after
 * SCAN_TIMEOUT_S seconds, and then the summary says memory never freed, as
 * without the check. The child allocates with mmap only (never malloc,
 * whose locks another thread may have held at the fork): 21 bytes per live
 * object for the objects and their marks, 16 more while they are sorted, and
 * an index of the pages they are on (a flat array of 64 KiB per 64 MiB
 * region that holds objects).
 */
#define _GNU_SOURCE
#include "reach.h"
#include "iface.h"
#include "tasks.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

enum {
    SCAN_TIMEOUT_S = 120,
    MAX_STACKS = 1024,
    MAX_EXCLUDE = 8192,
    RED_ZONE = 128, /* below a stack pointer, still the thread's (x86-64 ABI) */
};

enum { ST_UNREACHED = 0, ST_REACHABLE, ST_INDIRECT, ST_LEADER };

#define MSG_MAGIC 0x6865617072656163ull /* the report's first and last words */

enum { MAX_BRK = 64, MAX_MARKS = 64, MAX_VMAS = 65536 };
/* The words before a live check's entries (child_report_live). */
enum { LIVE_HEADER = HP_REACH_LIVE_HEADER };

/* The clone of a live check under way, for the exit's check to end
 * (hp_reach_check); cleared, under the lock, as the clone is reaped, so
 * that a pid the system gave to another process is never signalled. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t live_pid;

struct vma {
    uintptr_t lo, hi;
    bool rw, shared, none; /* none: ---p, a guard */
    bool anon;             /* no file */
    bool stack;            /* [stack] */
    bool heap;             /* [heap] */
    bool skip;             /* vvar, vdso, a device */
};

struct scan {
    bool exact;
    bool raced;            /* the last copy: a thread not held ran while it was made */
    bool live;             /* a check while the program runs (hp_reach_start) */
    int64_t time_ns;       /* when the parent asked for it (real-time clock) */
    pid_t pid;             /* the program's (in the child, getpid() is the child's own) */
    uintptr_t my_sp;       /* where the dump's own frames start (when no exit roots) */
    struct hp_tasks tasks; /* what the parent learns before the fork */
    struct hp_thread_stack stacks[MAX_STACKS];
    int nstacks;
    bool have_exit;
    struct hp_exit_roots exit_roots;
    uintptr_t alt_lo, alt_hi; /* the dumping thread's alternate signal stack */
    uintptr_t brk[2 * MAX_BRK];
    int nbrk;
    uintptr_t lifted[3 * MAX_MARKS]; /* fork marks lifted around the fork */
    int nlifted;
    uintptr_t excl[2 * MAX_EXCLUDE]; /* lo, hi pairs: heapprof's own memory and libraries */
    size_t nexcl;
    uintptr_t libc_lo[8], libc_hi[8]; /* libc's writable segments */
    int nlibc;

    /* The child's. */
    struct hp_live_obj *objs; /* sorted by start */
    uint8_t *state;
    uint32_t *work;
    size_t nobjs, nwork;
    struct region *regions; /* the index of pages: see index_pages */
    size_t regions_cap, nregions;
    uint32_t *region_pages;
    uintptr_t lo_all, hi_all;
    uint64_t root_bytes, heap_bytes, faults;
    int pagemap;     /* /proc/self/pagemap, or -1 */
    bool cur_shared; /* the mapping being read is shared: pagemap cannot tell */
    struct vma *vmas;
    size_t nvmas;
};

/* ---- memory of the child's own: mmap only ---- */

static size_t child_mapped, child_peak; /* the child's own memory, for the statistics */

static void *cmap(size_t len)
{
    void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    child_mapped += len;
    if (child_mapped > child_peak)
        child_peak = child_mapped;
    return p;
}

static void cunmap(void *p, size_t len)
{
    hp_os_unmap(p, len);
    child_mapped -= len;
}

/* ---- the objects: sorted by start, found by any address inside ---- */

static void radix_sort(struct hp_live_obj *a, struct hp_live_obj *tmp, size_t n)
{
    /* By start, 16 bits at a time: user addresses have 48 bits. */
    for (int shift = 0; shift < 64; shift += 16) {
        static size_t count[65537];
        memset(count, 0, sizeof count);
        bool all_zero = true;
        for (size_t i = 0; i < n; i++) {
            size_t d = (a[i].start >> shift) & 0xffff;
            count[d + 1]++;
            if (d)
                all_zero = false;
        }
        if (all_zero)
            continue;
        for (size_t d = 0; d < 65536; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i].start >> shift) & 0xffff]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
    }
}

static inline uintptr_t obj_end(const struct hp_live_obj *o)
{
    return o->start + (o->size ? o->size : 1); /* a zero-byte object: its start */
}

/* The index of pages: for every 4 KiB page that some object overlaps, the
 * first object (in address order) that does, as 1 + its number (0: none).
 * Two levels: a small hash of the 64 MiB regions that hold objects, each
 * with a flat array of its 16384 pages (64 KiB), so that a word is looked
 * up with one probe of a table that stays in the cache and one load from
 * an array that mostly does too (a 1 GiB heap: 1 MiB of arrays); then
 * among the objects of that page only. A binary search over all the
 * objects would miss the cache at nearly every step on a large heap
 * (bench/leakcheck.py, a 1 GiB heap of a million objects: 4.2 s so, 1.9 s
 * with a hash of pages, 16-byte entries, then 1.5 s; this index, with the
 * lookups of a batch of words prefetched together, is faster still: see
 * the README). */
enum { REGION_SHIFT = 26, REGION_PAGES = 1 << (REGION_SHIFT - 12) };

struct region {
    uintptr_t key;   /* region number + 1; 0: empty */
    uint32_t *first; /* REGION_PAGES entries */
};

static inline size_t region_hash(uintptr_t key, size_t cap)
{
    return (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 40) & (cap - 1);
}

static inline uint32_t *region_of(const struct scan *sc, uintptr_t w)
{
    uintptr_t key = (w >> REGION_SHIFT) + 1;
    size_t h = region_hash(key, sc->regions_cap);
    while (sc->regions[h].key != key) {
        if (!sc->regions[h].key)
            return NULL;
        h = (h + 1) & (sc->regions_cap - 1);
    }
    return sc->regions[h].first;
}

/* Builds the index (the objects sorted); false without memory. */
static bool index_pages(struct scan *sc)
{
    size_t distinct = 0;
    uintptr_t last = 0;
    for (size_t i = 0; i < sc->nobjs; i++) {
        uintptr_t first = sc->objs[i].start >> REGION_SHIFT,
                  end = (obj_end(&sc->objs[i]) - 1) >> REGION_SHIFT;
        if (first <= last && last)
            first = last + 1;
        if (end >= first)
            distinct += end - first + 1, last = end;
    }
    size_t cap = 16;
    while (cap < 2 * distinct)
        cap *= 2;
    sc->regions = cmap(cap * sizeof *sc->regions);
    sc->region_pages = cmap(distinct * REGION_PAGES * sizeof(uint32_t));
    if (!sc->regions || (distinct && !sc->region_pages))
        return false;
    sc->regions_cap = cap;
    sc->nregions = distinct;
    size_t used = 0;
    last = 0;
    for (size_t i = 0; i < sc->nobjs; i++) {
        uintptr_t first = sc->objs[i].start >> 12, end = (obj_end(&sc->objs[i]) - 1) >> 12;
        if (first <= last && last)
            first = last + 1; /* pages already given to an earlier object */
        for (uintptr_t pg = first; pg <= end; pg++) {
            uintptr_t key = (pg >> (REGION_SHIFT - 12)) + 1;
            size_t h = region_hash(key, cap);
            while (sc->regions[h].key && sc->regions[h].key != key)
                h = (h + 1) & (cap - 1);
            if (!sc->regions[h].key) {
                sc->regions[h].key = key;
                sc->regions[h].first = sc->region_pages + used++ * REGION_PAGES;
            }
            sc->regions[h].first[pg & (REGION_PAGES - 1)] = (uint32_t)(i + 1);
            last = pg;
        }
    }
    return true;
}

/* The object w points into, or -1, from its page's entry (1 + the first
 * object on the page, or 0). */
static inline long find_from(const struct scan *sc, uintptr_t w, uint32_t entry)
{
    if (!entry)
        return -1;
    /* Among the objects from the page's first on (at most a page's worth
     * start in it): the last that starts at or before w. */
    size_t lo = entry - 1, hi = lo + 1;
    while (hi < sc->nobjs && sc->objs[hi].start <= w && hi - lo < 8)
        hi++;
    if (hi < sc->nobjs && sc->objs[hi].start <= w) {
        size_t top = lo + 4097 < sc->nobjs ? lo + 4097 : sc->nobjs;
        while (top - hi > 1) {
            size_t mid = hi + (top - hi) / 2;
            if (sc->objs[mid].start <= w)
                hi = mid;
            else
                top = mid;
        }
        lo = hi;
    } else {
        lo = hi - 1;
    }
    if (sc->objs[lo].start <= w && w < obj_end(&sc->objs[lo]))
        return (long)lo;
    return -1;
}

static inline long find(const struct scan *sc, uintptr_t w)
{
    if (w < sc->lo_all || w >= sc->hi_all)
        return -1;
    const uint32_t *first = region_of(sc, w);
    return first ? find_from(sc, w, first[(w >> 12) & (REGION_PAGES - 1)]) : -1;
}

/* ---- reading memory without faulting ---- */

static sigjmp_buf fault_jump;
static volatile uintptr_t fault_addr;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(fault_jump, 1);
}

static bool in_libc(const struct scan *sc, uintptr_t at)
{
    for (int i = 0; i < sc->nlibc; i++)
        if (at >= sc->libc_lo[i] && at < sc->libc_hi[i])
            return true;
    return false;
}

/* A word in libc's data that points at the header of the chunk after a live
 * object: malloc's own bookkeeping (see the top). */
static bool bookkeeping(const struct scan *sc, long i, uintptr_t w)
{
    const struct hp_live_obj *o = &sc->objs[i];
    if (w == o->start)
        return false;
    size_t usable = hp_usable_size((void *)o->start);
    return usable >= 8 && w == o->start + usable - 8;
}

/* What a word found at `at` does. self: the object being read, or -1. */
static inline void visit_found(struct scan *sc, uintptr_t at, uintptr_t w, long i, long self,
                               bool libc_seg, long leader)
{
    if (i < 0 || i == self)
        return;
    /* glibc's own pointers to chunk headers: in its data, and in the first
     * four words of a chunk (fd, bk, fd_nextsize, bk_nextsize while it was
     * free), left there when the chunk was handed out again. */
    if ((libc_seg || (self >= 0 && at - sc->objs[self].start < 32)) && bookkeeping(sc, i, w))
        return;
    if (!sc->exact && at >= sc->objs[i].start && at < obj_end(&sc->objs[i]))
        return; /* in the object itself */
    uint8_t *st = &sc->state[i];
    if (leader < 0) { /* marking from the roots */
        if (*st != ST_REACHABLE) {
            *st = ST_REACHABLE;
            if (sc->exact)
                sc->work[sc->nwork++] = (uint32_t)i;
        }
    } else if (*st == ST_UNREACHED) {
        *st = ST_INDIRECT;
        sc->work[sc->nwork++] = (uint32_t)i;
    } else if (*st == ST_LEADER && i != leader) {
        *st = ST_INDIRECT; /* its clique joins this one; its objects are already indirect */
    }
}

static void visit(struct scan *sc, uintptr_t at, uintptr_t w, long self, bool libc_seg, long leader)
{
    visit_found(sc, at, w, find(sc, w), self, libc_seg, leader);
}

/* The words of a batch, looked up together: the loads of their page
 * entries, then of their first objects, are prefetched a step ahead, so
 * that the cache misses of a batch overlap instead of following one
 * another. */
enum { BATCH = 16 };
struct batch {
    int n;
    uintptr_t at[BATCH], w[BATCH];
    const uint32_t *entry[BATCH];
};

static void flush(struct scan *sc, struct batch *b, long self, bool libc_seg, long leader)
{
    for (int k = 0; k < b->n; k++) {
        const uint32_t *first = region_of(sc, b->w[k]);
        b->entry[k] = first ? &first[(b->w[k] >> 12) & (REGION_PAGES - 1)] : NULL;
        if (b->entry[k])
            __builtin_prefetch(b->entry[k]);
    }
    uint32_t e[BATCH];
    for (int k = 0; k < b->n; k++) {
        e[k] = b->entry[k] ? *b->entry[k] : 0;
        if (e[k])
            __builtin_prefetch(&sc->objs[e[k] - 1]);
    }
    for (int k = 0; k < b->n; k++) {
        long i = find_from(sc, b->w[k], e[k]);
        if (i >= 0)
            __builtin_prefetch(&sc->state[i]);
        e[k] = (uint32_t)(i + 1);
    }
    for (int k = 0; k < b->n; k++)
        visit_found(sc, b->at[k], b->w[k], (long)e[k] - 1, self, libc_seg, leader);
    b->n = 0;
}

/* Reads the aligned words of [lo, hi). A fault skips to the next page. */
static void scan_words(struct scan *sc, uintptr_t lo, uintptr_t hi, long self, long leader,
                       uint64_t *counter)
{
    volatile uintptr_t from = (lo + 7) & ~(uintptr_t)7;
    if (sigsetjmp(fault_jump, 0)) {
        sc->faults++;
        if (fault_addr < lo || fault_addr >= hi)
            return; /* not in the range (a chunk header read for it): give it up */
        from = (fault_addr | 4095) + 1;
    }
    bool libc_seg = self < 0 && in_libc(sc, lo);
    uintptr_t p = from;
    if (p < lo)
        p = (lo + 7) & ~(uintptr_t)7;
    if (p >= hi)
        return;
    struct batch b;
    b.n = 0;
    const uintptr_t base = sc->lo_all, span = sc->hi_all - sc->lo_all;
    for (; p + 8 <= hi; p += 8) {
        /* Without a branch on the word: whether it may point into an
         * object is as good as random, and a mispredicted branch per word
         * costs more than the two stores. */
        uintptr_t w = *(const volatile uintptr_t *)p;
        if (w - base < span) {
            b.at[b.n] = p;
            b.w[b.n++] = w;
            if (b.n == BATCH)
                flush(sc, &b, self, libc_seg, leader);
        }
    }
    flush(sc, &b, self, libc_seg, leader);
    *counter += hi - lo;
}

static void drain(struct scan *sc, long leader)
{
    while (sc->nwork) {
        uint32_t i = sc->work[--sc->nwork];
        const struct hp_live_obj *o = &sc->objs[i];
        scan_words(sc, o->start, o->start + o->size, (long)i, leader, &sc->heap_bytes);
    }
}

/* ---- roots ---- */

/* Reads the roots in [lo, hi) but for the pages that were never written:
 * neither present nor swapped out, by /proc/self/pagemap. Such a page holds
 * zeros, or its file's own contents, never a pointer the program stored;
 * reading it would only cost time (a thread's stack of 8 MiB is mostly
 * untouched, and a mapping of a large file would be read from disk). */
static void scan_resident(struct scan *sc, uintptr_t lo, uintptr_t hi)
{
    if (sc->pagemap < 0 && !sc->cur_shared) {
        scan_words(sc, lo, hi, -1, -1, &sc->root_bytes);
        return;
    }
    uint64_t pm[512];
    unsigned char mc[512];
    uintptr_t pg = lo & ~(uintptr_t)4095, run = 0;
    bool in_run = false;
    while (pg < hi) {
        size_t n = (hi - pg + 4095) / 4096;
        if (n > 512)
            n = 512;
        /* A shared mapping's pages are not in the child's page tables
         * until touched (fork does not copy them): the page cache tells
         * which hold anything, by mincore. */
        bool ok = sc->cur_shared
                      ? mincore((void *)pg, n * 4096, mc) == 0
                      : pread(sc->pagemap, pm, n * 8, (off_t)(pg / 4096 * 8)) == (ssize_t)(n * 8);
        if (!ok) { /* cannot tell: read it all */
            scan_words(sc, in_run ? run : (pg > lo ? pg : lo), hi, -1, -1, &sc->root_bytes);
            return;
        }
        for (size_t k = 0; k < n; k++) {
            uintptr_t page = pg + k * 4096;
            bool used =
                sc->cur_shared ? (mc[k] & 1) : ((pm[k] >> 62) & 3) != 0; /* present or swapped */
            if (used && !in_run) {
                run = page > lo ? page : lo;
                in_run = true;
            } else if (!used && in_run) {
                scan_words(sc, run, page, -1, -1, &sc->root_bytes);
                in_run = false;
            }
        }
        pg += n * 4096;
    }
    if (in_run)
        scan_words(sc, run, hi, -1, -1, &sc->root_bytes);
}

/* Scans [lo, hi) but for the pages that hold part of a live object (exact
 * mode: those are heap, and followed only through the objects). */
static void scan_root(struct scan *sc, uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi)
        return;
    if (!sc->exact) {
        scan_resident(sc, lo, hi);
        return;
    }
    /* The first object that ends after lo. */
    size_t a = 0, b = sc->nobjs;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (obj_end(&sc->objs[mid]) <= lo)
            a = mid + 1;
        else
            b = mid;
    }
    uintptr_t at = lo;
    for (size_t i = a; at < hi; i++) {
        uintptr_t next = i < sc->nobjs && sc->objs[i].start < hi ? sc->objs[i].start : hi;
        /* [at, next) holds no object: its whole pages are roots. */
        uintptr_t from = (at + 4095) & ~(uintptr_t)4095, to = next & ~(uintptr_t)4095;
        if (at == lo)
            from = lo;
        if (next == hi)
            to = hi;
        if (from < to)
            scan_resident(sc, from, to);
        if (i >= sc->nobjs || sc->objs[i].start >= hi)
            break;
        uintptr_t end = obj_end(&sc->objs[i]);
        if (end > at)
            at = end;
    }
    drain(sc, -1);
}

/* Scans [lo, hi) minus the exclusions (sorted by start; they may overlap):
 * heapprof's own memory, and the stale parts of stacks. */
static void scan_mapping(struct scan *sc, uintptr_t lo, uintptr_t hi)
{
    for (size_t i = 0; i < sc->nexcl && lo < hi; i++) {
        uintptr_t elo = sc->excl[2 * i], ehi = sc->excl[2 * i + 1];
        if (ehi <= lo || elo >= hi)
            continue;
        if (elo > lo)
            scan_root(sc, lo, elo);
        if (ehi > lo)
            lo = ehi;
    }
    if (lo < hi)
        scan_root(sc, lo, hi);
}

static uintptr_t parse_hex(const char **s)
{
    uintptr_t v = 0;
    for (;; (*s)++) {
        char c = **s;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uintptr_t)(c - 'a' + 10);
        else
            return v;
    }
}

static bool starts_with(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* The child's mappings (the parent's copy), from /proc/self/maps. */
static void read_vmas(struct scan *sc, const char *maps)
{
    for (const char *line = maps; *line && sc->nvmas < MAX_VMAS;) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            eol = line + strlen(line);
        const char *s = line;
        struct vma v = {0};
        v.lo = parse_hex(&s);
        if (*s == '-')
            s++;
        v.hi = parse_hex(&s);
        while (*s == ' ')
            s++;
        v.rw = s[0] == 'r' && s[1] == 'w';
        v.none = s[0] == '-' && s[1] == '-' && s[2] == '-';
        v.shared = s[3] == 's';
        /* The path: after five fields. */
        const char *path = s;
        for (int f = 0; f < 4 && path < eol; f++) {
            while (path < eol && *path != ' ')
                path++;
            while (path < eol && *path == ' ')
                path++;
        }
        char name[64];
        size_t nl = (size_t)(eol - path) < sizeof name - 1 ? (size_t)(eol - path) : sizeof name - 1;
        memcpy(name, path, nl);
        name[nl] = 0;
        line = *eol ? eol + 1 : eol;
        v.anon = !name[0];
        v.stack = !strcmp(name, "[stack]");
        v.heap = !strcmp(name, "[heap]");
        v.skip = starts_with(name, "[vvar") || starts_with(name, "[vdso") ||
                 starts_with(name, "[vsyscall") ||
                 (starts_with(name, "/dev/") && !starts_with(name, "/dev/zero") &&
                  !starts_with(name, "/dev/shm/")); /* a device: reading may have effects */
        if (v.lo < v.hi)
            sc->vmas[sc->nvmas++] = v;
    }
}

/* Adds [lo, hi) to the sorted exclusions. */
static void exclude(struct scan *sc, uintptr_t lo, uintptr_t hi)
{
    if (sc->nexcl == MAX_EXCLUDE || lo >= hi)
        return;
    size_t i = sc->nexcl;
    while (i > 0 && sc->excl[2 * (i - 1)] > lo) {
        sc->excl[2 * i] = sc->excl[2 * (i - 1)];
        sc->excl[2 * i + 1] = sc->excl[2 * (i - 1) + 1];
        i--;
    }
    sc->excl[2 * i] = lo;
    sc->excl[2 * i + 1] = hi;
    sc->nexcl++;
}

/* ---- stacks ----
 *
 * A thread's stack holds the program's data from its stack pointer up (and
 * the 128 bytes below it, the x86-64 red zone); below lies what earlier,
 * deeper calls left, which is stale. Each live thread's stack pointer is
 * known where it could be learnt: a thread in a system call from
 * /proc/self/task/TID/syscall, a running thread from the signal that held
 * it (with its registers), the dumping thread from the frames of the code
 * that called exit (record/stack.c). Each is a live point. A stack is a
 * region: a block record/threads.c noted (alive or not: glibc reuses an
 * exited thread's block for a new thread, which may not have allocated
 * yet), the main thread's [stack], the dumping thread's alternate signal
 * stack, or a mapping that looks like a thread's stack (anonymous, above a
 * guard page). In each region, what lies below its lowest live point is
 * left out. A region with no live point is left out whole when it is a
 * block whose thread is gone, or the [stack] of a main thread that is gone;
 * but if some thread's stack pointer is unknown and it has no block of its
 * own, it may run on any block, and blocks are then read whole. Anything
 * else is read whole: never less than the program can still use. */

struct point {
    uintptr_t from; /* live from here up */
};

static bool in_region(uintptr_t a, uintptr_t lo, uintptr_t hi)
{
    return a >= lo && a < hi;
}

/* The lowest live point in [lo, hi), or 0. */
static uintptr_t lowest_point(const struct point *pts, int n, uintptr_t lo, uintptr_t hi)
{
    uintptr_t m = 0;
    for (int i = 0; i < n; i++)
        if (in_region(pts[i].from, lo, hi) && (!m || pts[i].from < m))
            m = pts[i].from;
    return m;
}

/* A thread's block as glibc makes it: its descriptor (struct pthread) at
 * the top, whose first words are the TCB header, where `tcb` (at +0) and
 * `self` (at +16) both hold the descriptor's own address (x86-64). A
 * mapping above a guard page that holds one in its last pages is a thread's
 * stack and TLS; with no live thread's stack pointer in it, it is the block
 * of a thread that exited, which glibc keeps for reuse. (The main thread's
 * descriptor and TLS are in a mapping of the loader's, with no guard.) */
static bool glibc_thread_block(const struct vma *v)
{
    if (!v->anon || v->shared || v->hi - v->lo < 16384)
        return false;
    uintptr_t floor = v->hi - v->lo > 65536 ? v->hi - 65536 : v->lo;
    for (uintptr_t a = v->hi - 64; a >= floor; a -= 64) {
        const uintptr_t *w = (const uintptr_t *)a;
        if (w[0] == a && w[2] == a)
            return true;
    }
    return false;
}

static void exclude_stale_stacks(struct scan *sc)
{
    struct point pts[HP_MAX_TASKS + HP_EXIT_POINTS + 1];
    int npts = 0;
    bool unknown = false; /* some thread's stack pointer unknown, and no block of its own */
    for (int i = 0; i < sc->tasks.n; i++) {
        const struct hp_task *t = &sc->tasks.t[i];
        if (t->gone || t->tid == sc->tasks.my_tid)
            continue;
        if (t->sp) {
            pts[npts++].from = t->sp > RED_ZONE ? t->sp - RED_ZONE : t->sp;
            continue;
        }
        bool own = false;
        for (int k = 0; k < sc->nstacks && !own; k++)
            own = sc->stacks[k].alive && sc->stacks[k].tid == t->tid;
        if (!own)
            unknown = true;
    }
    if (sc->have_exit) {
        for (int i = 0; i < sc->exit_roots.npoints; i++) {
            uintptr_t sp = sc->exit_roots.sp[i];
            pts[npts++].from = sc->exit_roots.interrupted[i] && sp > RED_ZONE ? sp - RED_ZONE : sp;
        }
    } else {
        pts[npts++].from = sc->my_sp;
    }

    /* Blocks noted by record/threads.c. */
    for (int k = 0; k < sc->nstacks; k++) {
        const struct hp_thread_stack *ts = &sc->stacks[k];
        const struct hp_task *t = hp_tasks_find(&sc->tasks, ts->tid);
        bool alive = ts->alive && t && !t->gone;
        uintptr_t m = lowest_point(pts, npts, ts->lo, ts->hi);
        if (m) {
            exclude(sc, ts->lo, m);
            continue;
        }
        if (alive || unknown)
            continue;
        bool reused = false; /* by a thread whose block overlaps it */
        for (int j = 0; j < sc->nstacks && !reused; j++) {
            const struct hp_thread_stack *o = &sc->stacks[j];
            const struct hp_task *ot = hp_tasks_find(&sc->tasks, o->tid);
            reused = j != k && o->alive && ot && !ot->gone && o->lo < ts->hi && o->hi > ts->lo;
        }
        if (!reused)
            exclude(sc, ts->lo, ts->hi);
    }
    /* The dumping thread's alternate signal stack. */
    if (sc->alt_lo < sc->alt_hi) {
        uintptr_t m = lowest_point(pts, npts, sc->alt_lo, sc->alt_hi);
        if (m)
            exclude(sc, sc->alt_lo, m);
    }
    /* The main thread's stack, and stacks of threads never noted. */
    const struct hp_task *main_task = hp_tasks_find(&sc->tasks, sc->pid);
    bool main_gone = !main_task || main_task->gone;
    for (size_t i = 0; i < sc->nvmas; i++) {
        const struct vma *v = &sc->vmas[i];
        if (!v->rw)
            continue;
        /* A thread's block has its guard page below it; the main thread's
         * descriptor and TLS, which the loader maps apart, has none. */
        bool guarded = i > 0 && sc->vmas[i - 1].none && sc->vmas[i - 1].hi == v->lo;
        bool block = !v->stack && guarded && glibc_thread_block(v);
        bool stack_like = v->stack || block || (v->anon && !v->shared && guarded);
        if (!stack_like)
            continue;
        bool noted = false;
        for (int k = 0; k < sc->nstacks && !noted; k++)
            noted = sc->stacks[k].lo < v->hi && sc->stacks[k].hi > v->lo;
        if (noted)
            continue; /* done above */
        if (sc->alt_lo < v->hi && sc->alt_hi > v->lo)
            continue;
        uintptr_t m = lowest_point(pts, npts, v->lo, v->hi);
        if (m)
            exclude(sc, v->lo, m);
        else if (v->stack && main_gone)
            exclude(sc, v->lo, v->hi); /* the main thread called pthread_exit */
        else if (block && !unknown)
            exclude(sc, v->lo, v->hi); /* glibc keeps an exited thread's block, TLS and all */
    }
}

/* Registers: of the threads held by a signal, the system calls' arguments
 * of the others, the dumping thread's (exit roots). */
static void scan_registers(struct scan *sc)
{
    for (int i = 0; i < sc->tasks.n; i++) {
        const struct hp_task *t = &sc->tasks.t[i];
        if (t->gone || t->tid == sc->tasks.my_tid)
            continue;
        for (int r = 0; r < t->nregs; r++)
            if (t->regs[r] >= sc->lo_all && t->regs[r] < sc->hi_all)
                visit(sc, 0, t->regs[r], -1, false, -1);
    }
    if (sc->have_exit)
        for (int r = 0; r < sc->exit_roots.nregs; r++) {
            uintptr_t w = sc->exit_roots.regs[r];
            if (w >= sc->lo_all && w < sc->hi_all)
                visit(sc, 0, w, -1, false, -1);
        }
    drain(sc, -1);
}

/* A glibc arena's heap, other than the main one: a mapping aligned to its
 * maximum size (64 MiB) that opens with the heap's header (heap_info): the
 * arena it belongs to, at 32 or 48 bytes into the first heap of that arena,
 * the previous heap, and its sizes. In exact mode all of it is malloc's,
 * followed through the live objects only: like the [heap], it holds free
 * chunks with stale copies and the allocator's own lists. */
static bool glibc_heap(const struct vma *v)
{
    const uintptr_t max = (uintptr_t)64 << 20;
    if (!v->anon || v->shared || (v->lo & (max - 1)) || v->hi - v->lo > max)
        return false;
    const uintptr_t *h = (const uintptr_t *)v->lo;
    uintptr_t ar = h[0], prev = h[1], size = h[2], mprot = h[3];
    uintptr_t off = ar & (max - 1);
    return ar && (off == 32 || off == 48) && (prev & (max - 1)) == 0 && size >= 4096 &&
           size <= mprot && mprot <= max && size <= v->hi - v->lo;
}

/* Every readable and writable mapping of the child (the parent's copy). */
static void scan_maps(struct scan *sc)
{
    for (size_t i = 0; i < sc->nvmas; i++) {
        const struct vma *v = &sc->vmas[i];
        if (!v->rw || v->skip)
            continue;
        sc->cur_shared = v->shared;
        if (sc->exact && v->heap) {
            /* malloc's: followed through the objects only, but for what the
             * program itself took with sbrk or brk. */
            for (int k = 0; k < sc->nbrk; k++) {
                uintptr_t lo = sc->brk[2 * k] > v->lo ? sc->brk[2 * k] : v->lo;
                uintptr_t hi = sc->brk[2 * k + 1] < v->hi ? sc->brk[2 * k + 1] : v->hi;
                if (lo < hi)
                    scan_mapping(sc, lo, hi);
            }
            continue;
        }
        if (sc->exact && glibc_heap(v))
            continue;
        scan_mapping(sc, v->lo, v->hi);
    }
    sc->cur_shared = false;
}

/* ---- the child ---- */

/* A live check's report: the verdicts go on the child's own copy of the
 * live set, and the child takes the snapshot with verdicts and sends it
 * whole (a header, the entries, a trailer). The parent cannot take them by
 * address as the exit does: while the check ran, its program freed objects
 * and malloc handed the addresses out again. Stacks and label sets are
 * named by number, which the parent's tables keep (they only grow). */
static void child_report_live(struct scan *sc, int out)
{
    uint64_t lost[2] = {0, 0};
    for (size_t i = 0; i < sc->nobjs; i++) {
        uint8_t st = sc->state[i];
        if (st == ST_REACHABLE)
            continue;
        enum hp_verdict v = st == ST_INDIRECT && sc->exact ? HP_V_INDIRECT : HP_V_DEFINITE;
        hp_live_set_verdict((const void *)sc->objs[i].start, v);
        lost[v - HP_V_DEFINITE]++;
    }
    struct hp_snapshot snap;
    if (hp_snapshot_take_verdicts(&snap) != 0)
        _exit(2);
    uint64_t hdr[LIVE_HEADER] = {
        MSG_MAGIC, sc->nobjs, sc->root_bytes, sc->heap_bytes,      sc->faults,           child_peak,
        lost[0],   lost[1],   snap.nbuckets,  (uint64_t)snap.rate, (uint64_t)sc->time_ns};
    uint64_t trailer[2] = {MSG_MAGIC, snap.nbuckets};
    if (hp_write_all(out, hdr, sizeof hdr) ||
        hp_write_all(out, snap.buckets, snap.nbuckets * sizeof *snap.buckets) ||
        hp_write_all(out, trailer, sizeof trailer))
        _exit(3);
    _exit(0);
}

/* The threads read as blocked in a system call (their stack pointer and
 * the call's arguments from /proc) that have run since: woken between that
 * reading and the copy, they may have moved a pointer into a deeper frame
 * or a register. Their stack pointer is forgotten, so that their whole
 * stack is read. Read here, in the copy, after it was made: a thread that
 * ran later counts too, which only reads more. Their registers at the copy
 * are beyond reach without stopping them (a signal would break their
 * system call with EINTR): see docs/leak-check.md. */
static void forget_woken(struct scan *sc)
{
    for (int i = 0; i < sc->tasks.n; i++) {
        struct hp_task *t = &sc->tasks.t[i];
        if (t->gone || t->park == HP_PARK_HELD || t->tid == sc->tasks.my_tid || !t->sp)
            continue;
        if (hp_task_ran(sc->pid, t->tid, t->ran))
            t->sp = 0;
    }
}

/* A live check's clone yields to the program: the lowest priority, one
 * CPU, the first the OOM killer takes, and gone with the thread that
 * waits for it (SIGKILL cannot be blocked). */
static void stay_in_background(pid_t pid)
{
    if (hp_real.prctl)
        hp_real.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != pid)
        _exit(0); /* the process was gone before the line above took hold */
    setpriority(PRIO_PROCESS, 0, 19);
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1) {
        int last = -1;
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &cpus))
                last = c;
        CPU_ZERO(&cpus);
        CPU_SET(last, &cpus);
        sched_setaffinity(0, sizeof cpus, &cpus);
    }
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, "1000", 4);
        close(fd);
    }
}

static void child_main(struct scan *sc, int out)
{
    /* Faults skip a page; nothing else of the program's may run here. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    hp_real.sigaction(SIGSEGV, &sa, NULL);
    hp_real.sigaction(SIGBUS, &sa, NULL);
    sigset_t mask;
    sigfillset(&mask);
    sigdelset(&mask, SIGSEGV);
    sigdelset(&mask, SIGBUS);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    if (sc->live)
        stay_in_background(sc->pid);
    /* Room under a tight RLIMIT_AS: the address space the parent kept for
     * this (record/exit.c), and the soft limit raised as far as allowed. */
    hp_exit_room_release(1);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_AS, &rl);
    }

    /* heapprof's own memory, with the parent's locks held at the fork. */
    size_t nr = hp_mem_ranges(NULL, 0);
    uintptr_t *r = cmap((nr + 1) * 2 * sizeof *r);
    if (!r)
        _exit(2);
    nr = hp_mem_ranges(r, nr);
    for (size_t i = 0; i < nr; i++)
        exclude(sc, r[2 * i], r[2 * i + 1]);

    size_t n = hp_live_count_frozen();
    sc->objs = cmap(n * sizeof *sc->objs);
    struct hp_live_obj *tmp = cmap(n * sizeof *tmp);
    sc->state = cmap(n);
    sc->work = cmap(n * sizeof *sc->work);
    if (!sc->objs || !tmp || !sc->state || !sc->work)
        _exit(2);
    sc->nobjs = hp_live_copy_frozen(sc->objs, n);
    radix_sort(sc->objs, tmp, sc->nobjs);
    cunmap(tmp, n * sizeof *tmp);
    if (!index_pages(sc))
        _exit(2);
    /* Everything the child mapped is its own, not the program's. */
    exclude(sc, (uintptr_t)sc->objs, (uintptr_t)sc->objs + n * sizeof *sc->objs);
    exclude(sc, (uintptr_t)sc->state, (uintptr_t)sc->state + n);
    exclude(sc, (uintptr_t)sc->work, (uintptr_t)sc->work + n * sizeof *sc->work);
    exclude(sc, (uintptr_t)sc->regions, (uintptr_t)(sc->regions + sc->regions_cap));
    exclude(sc, (uintptr_t)sc->region_pages,
            (uintptr_t)(sc->region_pages + sc->nregions * REGION_PAGES));
    exclude(sc, (uintptr_t)r, (uintptr_t)r + (nr + 1) * 2 * sizeof *r);

    sc->lo_all = UINTPTR_MAX;
    sc->hi_all = 0;
    for (size_t i = 0; i < sc->nobjs; i++) {
        const struct hp_live_obj *o = &sc->objs[i];
        uintptr_t end = obj_end(o);
        if (o->start < sc->lo_all)
            sc->lo_all = o->start;
        if (end > sc->hi_all)
            sc->hi_all = end;
    }

    sc->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    /* heapprof's own memory works here: hp_freeze_fork reset its locks. */
    struct hp_arena arena = {0};
    char *maps = hp_read_file(&arena, "/proc/self/maps", NULL);
    if (!maps)
        _exit(2);
    size_t lines = 1;
    for (const char *c = maps; *c; c++)
        lines += *c == '\n';
    if (lines > MAX_VMAS)
        lines = MAX_VMAS;
    sc->vmas = cmap(lines * sizeof *sc->vmas);
    if (!sc->vmas)
        _exit(2);
    exclude(sc, (uintptr_t)sc->vmas, (uintptr_t)(sc->vmas + lines));
    read_vmas(sc, maps);
    forget_woken(sc);
    if (sc->nobjs) {
        exclude_stale_stacks(sc);
        scan_maps(sc);
        scan_registers(sc);
    }

    /* Exact mode: the cliques of what is left. */
    if (sc->exact)
        for (size_t i = 0; i < sc->nobjs; i++) {
            if (sc->state[i] != ST_UNREACHED)
                continue;
            sc->state[i] = ST_LEADER;
            sc->work[sc->nwork++] = (uint32_t)i;
            drain(sc, (long)i);
        }

    if (sc->live)
        child_report_live(sc, out);
    /* The report: a header, the lost objects, a trailer. */
    uint64_t buf[2048];
    size_t k = 0;
    buf[k++] = MSG_MAGIC;
    buf[k++] = sc->nobjs;
    buf[k++] = sc->root_bytes;
    buf[k++] = sc->heap_bytes;
    buf[k++] = sc->faults;
    buf[k++] = child_peak;
    uint64_t nlost = 0;
    for (size_t i = 0; i < sc->nobjs; i++) {
        uint8_t st = sc->state[i];
        enum hp_verdict v = st == ST_REACHABLE  ? HP_V_REACHABLE
                            : st == ST_INDIRECT ? HP_V_INDIRECT
                                                : HP_V_DEFINITE;
        if (v == HP_V_REACHABLE)
            continue;
        if (!sc->exact)
            v = HP_V_DEFINITE;
        buf[k++] = sc->objs[i].start;
        buf[k++] = v;
        nlost++;
        if (k + 2 > sizeof buf / sizeof buf[0]) {
            if (hp_write_all(out, buf, k * sizeof buf[0]))
                _exit(3);
            k = 0;
        }
    }
    buf[k++] = MSG_MAGIC;
    buf[k++] = nlost;
    if (hp_write_all(out, buf, k * sizeof buf[0]))
        _exit(3);
    _exit(0);
}

/* ---- the parent ---- */

/* ---- marks that fork would honour ---- */

/* Lifts MADV_DONTFORK and MADV_WIPEONFORK from the ranges the program
 * marked (record/regions.c), where the kernel still has them (its VmFlags
 * "dc" and "wf": a range may have been unmapped and its addresses reused). */
static void lift_fork_marks(struct scan *sc)
{
    uintptr_t marks[3 * MAX_MARKS];
    int n = hp_fork_marks(marks, MAX_MARKS);
    if (n > MAX_MARKS)
        n = MAX_MARKS;
    if (n <= 0)
        return;
    struct hp_arena a = {0};
    char *smaps = hp_read_file(&a, "/proc/self/smaps", NULL);
    uintptr_t lo = 0, hi = 0;
    for (char *line = smaps; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = 0;
        const char *c = line;
        if ((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')) {
            uintptr_t l = parse_hex(&c);
            if (*c == '-') {
                c++;
                lo = l;
                hi = parse_hex(&c);
            }
        } else if (starts_with(line, "VmFlags:")) {
            bool dc = strstr(line, " dc") != NULL, wf = strstr(line, " wf") != NULL;
            for (int i = 0; i < n && sc->nlifted < MAX_MARKS; i++) {
                int adv = (int)marks[3 * i + 2];
                uintptr_t l = marks[3 * i] > lo ? marks[3 * i] : lo;
                uintptr_t h = marks[3 * i + 1] < hi ? marks[3 * i + 1] : hi;
                if (l >= h || !((adv == MADV_DONTFORK && dc) || (adv == MADV_WIPEONFORK && wf)))
                    continue;
                int undo = adv == MADV_DONTFORK ? MADV_DOFORK : MADV_KEEPONFORK;
                if (syscall(SYS_madvise, l, h - l, undo) == 0) {
                    sc->lifted[3 * sc->nlifted] = l;
                    sc->lifted[3 * sc->nlifted + 1] = h;
                    sc->lifted[3 * sc->nlifted + 2] = (uintptr_t)adv;
                    sc->nlifted++;
                }
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    hp_arena_release(&a);
}

static void restore_fork_marks(struct scan *sc)
{
    for (int i = 0; i < sc->nlifted; i++)
        syscall(SYS_madvise, sc->lifted[3 * i], sc->lifted[3 * i + 1] - sc->lifted[3 * i],
                (int)sc->lifted[3 * i + 2]);
    sc->nlifted = 0;
}

static int note_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct scan *sc = arg;
    const char *base = hp_basename(info->dlpi_name ? info->dlpi_name : "");
    bool own = starts_with(base, "libheapprof");
    bool libc = starts_with(base, "libc.so");
    if (!own && !libc)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
            continue;
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
        uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + 4095) & ~(uintptr_t)4095;
        if (own)
            exclude(sc, lo, hi);
        else if (sc->nlibc < 8) {
            sc->libc_lo[sc->nlibc] = lo;
            sc->libc_hi[sc->nlibc++] = hi;
        }
    }
    return 0;
}

/* The threads not held that ran between their last reading and now, just
 * after the copy, added to raced[] (up to HP_MAX_TASKS): any of them may
 * have held a pointer in a register at the copy, which nothing can read.
 * Returns how many there are now. */
static int raced(const struct scan *sc, pid_t *list, int n)
{
    for (int i = 0; i < sc->tasks.n && n < HP_MAX_TASKS; i++) {
        const struct hp_task *t = &sc->tasks.t[i];
        if (!t->gone && t->park == HP_PARK_NONE && t->tid != sc->tasks.my_tid &&
            hp_task_ran(sc->pid, t->tid, t->ran))
            list[n++] = t->tid;
    }
    return n;
}

/* The fork, with this thread's registers saved on its stack where the scan
 * of it (from here up) reads them; the child runs below this frame, and
 * never returns from it. The program's threads are held from the park to
 * the unpark: that is the pause a live check costs them (*pause_ns).
 * The threads that were not held and ran meanwhile are added to race
 * (*nrace of them), and sc->raced says whether there were any this time. */
__attribute__((noinline)) static pid_t fork_here(struct scan *sc, int p[2], int64_t *pause_ns,
                                                 pid_t *race, int *nrace)
{
    ucontext_t regs;
    getcontext(&regs);
    __builtin_unwind_init();
    sc->my_sp = (uintptr_t)&regs;
    /* heapprof's locks first, so that no thread held below can be holding
     * one (one that waits for them is not held: see on_park, report/tasks.c). */
    int64_t t0 = hp_mono_ns();
    hp_freeze_hold();
    hp_tasks_park(&sc->tasks);
    pid_t pid = hp_freeze_clone();
    if (pid == 0) {
        close(p[0]);
        child_main(sc, p[1]);
        _exit(1);
    }
    int saved = errno;
    int before = *nrace;
    if (pid > 0)
        *nrace = raced(sc, race, *nrace);
    sc->raced = *nrace > before;
    hp_tasks_unpark(&sc->tasks);
    hp_freeze_release();
    *pause_ns = hp_mono_ns() - t0;
    errno = saved;
    __asm__ volatile("" : : "r"(&regs) : "memory");
    return pid;
}

/* The memory a live check's clone needs of its own (child_main: 37 bytes
 * a live object at most, its index, /proc/self/maps) against what the
 * cgroup's limit leaves: a clone that the OOM killer ends is harmless (its
 * oom_score_adj is the highest), but under a cgroup limit the killer may
 * pick the program instead while the clone grows. Every level of the
 * hierarchy counts, in cgroup v2 (memory.max, memory.current) and in v1's
 * memory controller (memory.limit_in_bytes, memory.usage_in_bytes; its
 * "no limit" is a number near 2^63). 0, or -ENOMEM with why filled. */
static int cgroup_room(uint64_t need, char *why, size_t len)
{
    struct hp_arena a = {0};
    char *cg = hp_read_file(&a, "/proc/self/cgroup", NULL);
    int r = 0;
    for (char *line = cg; line && *line && !r;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = 0;
        /* ID:CONTROLLERS:PATH */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        bool v2 = c1 == line + 1 && line[0] == '0' && c2 == c1 + 1;
        bool v1 =
            c1 && c2 && (size_t)(c2 - c1 - 1) == strlen("memory") && !strncmp(c1 + 1, "memory", 6);
        if ((v1 || v2) && c2[1] == '/') {
            char dir[4096];
            const char *root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
            size_t rootlen = strlen(root);
            snprintf(dir, sizeof dir, "%s%s", root, strcmp(c2 + 1, "/") ? c2 + 1 : "");
            for (;;) {
                char f[4200];
                snprintf(f, sizeof f, "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
                char *max = hp_read_file(&a, f, NULL);
                snprintf(f, sizeof f, "%s/%s", dir,
                         v2 ? "memory.current" : "memory.usage_in_bytes");
                char *cur = hp_read_file(&a, f, NULL);
                if (max && cur && *max >= '0' && *max <= '9') {
                    uint64_t m = strtoull(max, NULL, 10), u = strtoull(cur, NULL, 10);
                    if (u + need > m) {
                        snprintf(why, len,
                                 "it needs about %.0f MiB and the memory limit of cgroup %.80s "
                                 "leaves %.0f MiB",
                                 (double)need / 1048576.0, dir[rootlen] ? dir + rootlen : "/",
                                 u < m ? (double)(m - u) / 1048576.0 : 0.0);
                        r = -ENOMEM;
                        break;
                    }
                }
                char *slash = strrchr(dir, '/');
                if (!slash || (size_t)(slash - dir) < rootlen)
                    break;
                *slash = 0;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    hp_arena_release(&a);
    return r;
}

int hp_reach_start(struct hp_reach *rc, bool live)
{
    memset(rc, 0, sizeof *rc);
    rc->fd = -1;
    rc->pid = -1;
    rc->live = live;
    rc->t0 = hp_mono_ns();
    if (live) {
        size_t n = hp_live_count_frozen(); /* unlocked: an estimate */
        uint64_t need = (uint64_t)n * 37 + ((uint64_t)16 << 20);
        int r = cgroup_room(need, rc->why, sizeof rc->why);
        if (r)
            return r;
    }
    /* heapprof's own memory: the scan does not read it. */
    struct scan *sc = hp_alloc(sizeof *sc);
    if (!sc)
        return -ENOMEM;
    sc->exact = hp_cfg.rate <= 1;
    sc->live = live;
    sc->time_ns = hp_now_ns();
    sc->pid = getpid();
    hp_tasks_read(&sc->tasks);
    sc->nstacks = hp_threads_list(sc->stacks, MAX_STACKS);
    hp_dl_iterate_phdr(note_lib, sc);
    const struct hp_exit_roots *er = live ? NULL : hp_exit_roots();
    if (er) {
        sc->have_exit = true;
        sc->exit_roots = *er;
    }
    stack_t alt;
    if (sigaltstack(NULL, &alt) == 0 && !(alt.ss_flags & SS_DISABLE) && alt.ss_size) {
        sc->alt_lo = (uintptr_t)alt.ss_sp;
        sc->alt_hi = (uintptr_t)alt.ss_sp + alt.ss_size;
    }
    sc->nbrk = hp_brk_ranges(sc->brk, MAX_BRK);
    if (sc->nbrk > MAX_BRK)
        sc->nbrk = MAX_BRK;
    lift_fork_marks(sc);
    /* A thread read as blocked that woke while the copy was made may have
     * held a pointer in a register the copy cannot read: that copy is
     * dropped, and the next holds such threads with the signal, blocked or
     * not (a system call of theirs that SA_RESTART cannot restart then
     * returns EINTR: paid only by threads that woke during a copy); a third
     * holds every thread. */
    int p[2], err = 0;
    pid_t pid = -1;
    pid_t *race = hp_alloc(HP_MAX_TASKS * sizeof *race);
    int nrace = 0;
    for (int attempt = 0; attempt < 3 && race; attempt++) {
        if (pipe2(p, O_CLOEXEC) != 0) {
            err = -errno;
            break;
        }
        if (attempt) {
            /* The threads that woke are held this time; at the last try,
             * every thread, and that copy is kept: only a thread that
             * blocks the signal (glibc's fork does, for its length) can
             * still run while it is made. */
            hp_tasks_read(&sc->tasks);
            if (attempt == 2)
                hp_tasks_hold_all(&sc->tasks);
            else
                hp_tasks_hold(&sc->tasks, race, nrace);
        }
        pid = fork_here(sc, p, &rc->pause_ns, race, &nrace);
        err = pid < 0 ? -errno : 0;
        close(p[1]);
        if (err)
            close(p[0]);
        if (err || !sc->raced || attempt == 2)
            break;
        kill(pid, SIGKILL);
        close(p[0]);
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        rc->retried = true;
        pid = -1;
    }
    hp_free(race, HP_MAX_TASKS * sizeof *race);
    if (!race && !err)
        err = -ENOMEM;
    restore_fork_marks(sc);
    hp_free(sc, sizeof *sc);
    if (err)
        return err;
    rc->pid = pid;
    rc->fd = p[0];
    if (live) {
        hp_mutex_lock(&live_mu);
        live_pid = pid;
        pthread_mutex_unlock(&live_mu);
    }
    return 0;
}

/* An exit check's report: the lost objects' verdicts, given in the parent
 * (hp_live_set_verdict), as they come. */
static int finish_exit(struct hp_reach *rc, struct hp_reach_stats *stats, uint64_t hdr[6])
{
    uint64_t buf[1024];
    size_t have = 0, ngiven = 0;
    bool header = false, done = false;
    int err = 0;
    int64_t deadline = hp_mono_ms() + SCAN_TIMEOUT_S * 1000;
    uint64_t pending[2];
    size_t npending = 0; /* words of a pair split across reads */
    for (;;) {
        struct pollfd pf = {.fd = rc->fd, .events = POLLIN};
        int64_t left = deadline - hp_mono_ms();
        if (left <= 0) {
            err = -ETIMEDOUT;
            break;
        }
        int pr = hp_poll(&pf, 1, (int)(left < 1000 ? left : 1000));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t r = hp_read(rc->fd, (char *)buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
        size_t words = have / 8, i = 0;
        if (!header && words >= 6) {
            memcpy(hdr, buf, 6 * sizeof *hdr);
            if (hdr[0] != MSG_MAGIC) {
                err = -EPROTO;
                break;
            }
            header = true;
            i = 6;
        }
        if (!header) {
            continue;
        }
        for (; i < words; i++) {
            pending[npending++] = buf[i];
            if (npending < 2)
                continue;
            npending = 0;
            if (pending[0] == MSG_MAGIC) {
                done = pending[1] == ngiven;
                break;
            }
            if (pending[1] > HP_V_NONE && pending[1] < HP_NVERDICTS) {
                hp_live_set_verdict((void *)(uintptr_t)pending[0], (enum hp_verdict)pending[1]);
                ngiven++;
                if (pending[1] == HP_V_DEFINITE)
                    stats->definite++;
                else
                    stats->indirect++;
            }
        }
        size_t rest = have - words * 8;
        memmove(buf, (char *)buf + words * 8, rest);
        have = rest;
        if (done)
            break;
    }
    if (!done && !err)
        err = -EPIPE;
    return err;
}

/* A live check's report: the snapshot the child took, into out, read as it
 * comes (hp_reach_pump). */
int hp_reach_pump(struct hp_reach *rc, struct hp_snapshot *out)
{
    if (rc->in.err)
        return rc->in.err;
    while (rc->in.part < 3) {
        void *to;
        size_t want;
        if (rc->in.part == 0) {
            to = rc->in.head;
            want = sizeof rc->in.head;
        } else if (rc->in.part == 1) {
            to = rc->in.entries;
            want = rc->in.n * sizeof *rc->in.entries;
        } else {
            to = rc->in.trailer;
            want = sizeof rc->in.trailer;
        }
        if (rc->in.got < want) {
            struct pollfd pf = {.fd = rc->fd, .events = POLLIN};
            int pr = hp_poll(&pf, 1, 0);
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr <= 0)
                return -EAGAIN;
            ssize_t r = hp_read(rc->fd, (char *)to + rc->in.got, want - rc->in.got);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0)
                return rc->in.err = -EPIPE;
            rc->in.got += (size_t)r;
            continue;
        }
        rc->in.got = 0;
        if (rc->in.part == 0) {
            const uint64_t *h = rc->in.head;
            if (h[0] != MSG_MAGIC || h[8] > ((uint64_t)1 << 26))
                return rc->in.err = -EPROTO;
            rc->in.n = (size_t)h[8];
            rc->in.entries =
                hp_arena_alloc(&out->arena, (rc->in.n ? rc->in.n : 1) * sizeof *rc->in.entries);
            if (!rc->in.entries)
                return rc->in.err = -ENOMEM;
        } else if (rc->in.part == 2) {
            if (rc->in.trailer[0] != MSG_MAGIC || rc->in.trailer[1] != rc->in.n)
                return rc->in.err = -EPROTO;
            out->buckets = rc->in.entries;
            out->nbuckets = rc->in.n;
            out->rate = (long)rc->in.head[9];
            out->time_ns = (int64_t)rc->in.head[10];
            out->verdicts = true;
        }
        rc->in.part++;
    }
    return 0;
}

/* The rest of a live check's report, waited for. */
static int finish_live(struct hp_reach *rc, struct hp_reach_stats *stats, uint64_t hdr[6],
                       struct hp_snapshot *out)
{
    int64_t deadline = hp_mono_ms() + SCAN_TIMEOUT_S * 1000;
    int err;
    while ((err = hp_reach_pump(rc, out)) == -EAGAIN) {
        struct pollfd pf = {.fd = rc->fd, .events = POLLIN};
        int64_t left = deadline - hp_mono_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        hp_poll(&pf, 1, (int)(left < 1000 ? left : 1000));
    }
    if (err)
        return err;
    memcpy(hdr, rc->in.head, 6 * sizeof *hdr);
    stats->definite = rc->in.head[6];
    stats->indirect = rc->in.head[7];
    return 0;
}

static bool rlimit_as_set(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY;
}

/* The child gone, and what its status says when it ended early. */
static int reap(struct hp_reach *rc, int err)
{
    if (rc->fd >= 0)
        close(rc->fd);
    rc->fd = -1;
    if (rc->pid <= 0)
        return err;
    if (err)
        kill(rc->pid, SIGKILL);
    int status = 0;
    if (rc->live)
        hp_mutex_lock(&live_mu); /* the pid stays this clone's until it is forgotten */
    while (waitpid(rc->pid, &status, __WALL) < 0 && errno == EINTR)
        ;
    if (rc->live) {
        if (live_pid == rc->pid)
            live_pid = 0;
        pthread_mutex_unlock(&live_mu);
    }
    rc->pid = -1;
    if (err == -EPIPE && WIFEXITED(status) && WEXITSTATUS(status) == 2) {
        snprintf(rc->why, sizeof rc->why, "its copy of the process ran out of memory%s",
                 rlimit_as_set() ? " (under the program's RLIMIT_AS)" : "");
        err = -ENOMEM;
    } else if (err == -EPIPE && WIFSIGNALED(status)) {
        snprintf(rc->why, sizeof rc->why, "its copy of the process was killed by signal %d%s",
                 WTERMSIG(status), WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
    }
    return err;
}

int hp_reach_finish(struct hp_reach *rc, struct hp_reach_stats *stats, struct hp_snapshot *out)
{
    memset(stats, 0, sizeof *stats);
    uint64_t hdr[6] = {0};
    int err = rc->live ? finish_live(rc, stats, hdr, out) : finish_exit(rc, stats, hdr);
    err = reap(rc, err);
    stats->objects = hdr[1];
    stats->root_bytes = hdr[2];
    stats->heap_bytes = hdr[3];
    stats->faults = hdr[4];
    stats->child_bytes = hdr[5];
    stats->pause_ns = rc->pause_ns;
    stats->retried = rc->retried;
    stats->ns = hp_mono_ns() - rc->t0;
    if (!rc->live)
        hp_exit_room_release(1); /* the child's room: the rest of the exit may use it */
    return err;
}

void hp_reach_cancel(struct hp_reach *rc)
{
    reap(rc, -ECANCELED);
}

void hp_reach_child(void)
{
    pthread_mutex_init(&live_mu, NULL);
    live_pid = 0; /* the parent's clone is not this process's child */
}

int hp_reach_check(struct hp_reach_stats *stats)
{
    /* A live check still running (the server's, the periodic one) is
     * ended: two copies of the process at once would double what the
     * checks cost the machine, and the exit's verdicts are the last word.
     * Its waiter sees the clone killed and says so to its client. */
    /* Not waited for without end: this exit may run in a signal handler
     * on the thread that holds the lock (heapprof_leak_check's, reaping). */
    bool locked = false;
    for (int i = 0; i < 1000 && !(locked = pthread_mutex_trylock(&live_mu) == 0); i++) {
        struct timespec ms = {0, 1000000};
        hp_nanosleep(&ms, NULL);
    }
    if (locked) {
        if (live_pid > 0 && kill(live_pid, SIGKILL) == 0) {
            /* Until it is gone (a zombie holds no memory), left for its
             * waiter to reap (WNOWAIT). */
            siginfo_t si;
            while (waitid(P_PID, (id_t)live_pid, &si, WEXITED | WNOWAIT | __WALL) < 0 &&
                   errno == EINTR)
                ;
        }
        pthread_mutex_unlock(&live_mu);
    }
    /* Nothing sampled is live: every verdict is known without a copy of
     * the process, which costs a short process most of its exit (about
     * 1 ms: the clone, the child reading its roots, its exit). An object
     * sampled from here on has no verdict, as one sampled after the copy. */
    if (hp_live_count_now() == 0) {
        memset(stats, 0, sizeof *stats);
        hp_exit_room_release(1); /* as after a check */
        return 0;
    }
    struct hp_reach rc;
    int r = hp_reach_start(&rc, false);
    if (r) {
        memset(stats, 0, sizeof *stats);
        return r;
    }
    return hp_reach_finish(&rc, stats, NULL);
}
