/* The leak check: which live objects are lost at exit, as LeakSanitizer and
 * memcheck judge it, and which are still reachable.
 *
 * Exact mode (rate 1: heapprof knows every live object). The check marks
 * conservatively from the roots, transitively through the objects: any
 * aligned word that holds an address inside a live object (its start or
 * within it) marks it. The roots are the program's writable memory that is
 * not heap: the data and bss of every loaded object, anonymous mappings,
 * static TLS, and the stacks of the threads still alive: a thread blocked in
 * a system call from its stack pointer (the kernel gives it in
 * /proc/self/task/TID/syscall), the dumping thread from its own (its
 * registers saved just below), any other from the whole stack. Not roots:
 * the brk heap; the pages that hold part of a live object (what a free
 * chunk there still holds is stale); the stacks of exited threads, which
 * glibc keeps for reuse (record/threads.c); heapprof's own memory and
 * libraries. Objects left unmarked are then sorted as memcheck does: each,
 * in address order, that no earlier one reached starts a clique, and every
 * unmarked object it reaches is indirectly lost (a clique it reaches is
 * absorbed); the starts are definitely lost. A lost cycle thus has one
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
 * Allocator bookkeeping: glibc's malloc keeps, in its own data (libc's
 * writable segment), pointers to the header of free chunks, and a chunk's
 * header lies in the last bytes of the chunk before it, which can be a live
 * object's last requested bytes. A word found in libc's writable segment
 * that points exactly there (start + malloc_usable_size - 8) is not taken
 * for a reference.
 *
 * Safety. The reading is done in a child made by hp_freeze_fork (record/
 * core.c): a copy of the process that holds still, with one thread, where
 * no other thread can unmap memory under the check, and whose faults (a
 * mapping past the end of its file, a page made unreadable) only skip a
 * page: SIGSEGV and SIGBUS jump out of the read. The child reports the lost
 * objects through a pipe and exits; the parent gives up after
 * SCAN_TIMEOUT_S seconds, and then the summary says memory never freed, as
 * without the check. The child allocates with mmap only (never malloc,
 * whose locks another thread may have held at the fork): 21 bytes per live
 * object for the objects and their marks, 16 more while they are sorted, and
 * an index of the pages they are on (16-byte entries, in a table 2 to 4
 * times the number of pages the objects cover).
 */
#define _GNU_SOURCE
#include "report.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

enum {
    SCAN_TIMEOUT_S = 120,
    MAX_TASKS = 4096,
    MAX_STACKS = 1024,
    MAX_EXCLUDE = 8192,
    RED_ZONE = 128, /* below a stack pointer, still the thread's (x86-64 ABI) */
};

enum { ST_UNREACHED = 0, ST_REACHABLE, ST_INDIRECT, ST_LEADER };

#define MSG_MAGIC 0x6865617072656163ull /* the report's first and last words */

/* What the parent learns before the fork, for the child to use. */
struct task {
    pid_t tid;
    uintptr_t sp; /* 0: unknown (running, or not readable) */
};

struct scan {
    bool exact;
    uintptr_t my_sp; /* the dumping thread's stack, from here up */
    pid_t my_tid;
    struct task tasks[MAX_TASKS];
    int ntasks;
    struct hp_thread_stack stacks[MAX_STACKS];
    int nstacks;
    uintptr_t excl[2 * MAX_EXCLUDE]; /* lo, hi pairs: heapprof's own memory and libraries */
    size_t nexcl;
    uintptr_t libc_lo[8], libc_hi[8]; /* libc's writable segments */
    int nlibc;

    /* The child's. */
    struct hp_live_obj *objs; /* sorted by start */
    uint8_t *state;
    uint32_t *work;
    size_t nobjs, nwork;
    struct page_entry *pages; /* page -> its first object: open addressing */
    size_t pages_cap, pages_len;
    uintptr_t lo_all, hi_all;
    uint64_t root_bytes, heap_bytes, faults;
    int pagemap; /* /proc/self/pagemap, or -1 */
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
    munmap(p, len);
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
 * first object (in address order) that does. A word is looked up with one
 * probe, then among the objects of that page only: a binary search over
 * all the objects would miss the cache at nearly every step on a large
 * heap (bench/leakcheck.py, a 1 GiB heap of a million objects: 4.2 s so,
 * 1.9 s with this index). */
struct page_entry {
    uintptr_t page; /* 0: empty (page 0 is never mapped) */
    size_t first;
};

static inline size_t page_hash(uintptr_t page, size_t cap)
{
    return (size_t)(((uint64_t)page * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

/* Builds the index (the objects sorted); false without memory. */
static bool index_pages(struct scan *sc)
{
    size_t distinct = 0;
    uintptr_t last = 0;
    for (size_t i = 0; i < sc->nobjs; i++) {
        uintptr_t first = sc->objs[i].start >> 12, end = (obj_end(&sc->objs[i]) - 1) >> 12;
        if (first <= last && last)
            first = last + 1;
        if (end >= first)
            distinct += end - first + 1, last = end;
    }
    size_t cap = 64;
    while (cap < 2 * distinct)
        cap *= 2;
    sc->pages = cmap(cap * sizeof *sc->pages);
    if (!sc->pages)
        return false;
    sc->pages_cap = cap;
    sc->pages_len = distinct;
    last = 0;
    for (size_t i = 0; i < sc->nobjs; i++) {
        uintptr_t first = sc->objs[i].start >> 12, end = (obj_end(&sc->objs[i]) - 1) >> 12;
        if (first <= last && last)
            first = last + 1; /* pages already given to an earlier object */
        for (uintptr_t pg = first; pg <= end; pg++) {
            size_t h = page_hash(pg, cap);
            while (sc->pages[h].page)
                h = (h + 1) & (cap - 1);
            sc->pages[h].page = pg;
            sc->pages[h].first = i;
            last = pg;
        }
    }
    return true;
}

/* The object w points into, or -1. */
static inline long find(const struct scan *sc, uintptr_t w)
{
    if (w < sc->lo_all || w >= sc->hi_all)
        return -1;
    uintptr_t pg = w >> 12;
    size_t h = page_hash(pg, sc->pages_cap);
    while (sc->pages[h].page != pg) {
        if (!sc->pages[h].page)
            return -1;
        h = (h + 1) & (sc->pages_cap - 1);
    }
    /* Among the objects from the page's first on (at most a page's worth
     * start in it): the last that starts at or before w. */
    size_t lo = sc->pages[h].first, hi = lo + 1;
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
    size_t usable = malloc_usable_size((void *)o->start);
    return usable >= 8 && w == o->start + usable - 8;
}

/* What a word found at `at` does. self: the object being read, or -1. */
static void visit(struct scan *sc, uintptr_t at, uintptr_t w, long self, bool libc_seg, long leader)
{
    long i = find(sc, w);
    if (i < 0 || i == self)
        return;
    if (libc_seg && bookkeeping(sc, i, w))
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
    for (; p + 8 <= hi; p += 8) {
        uintptr_t w = *(const volatile uintptr_t *)p;
        if (w >= sc->lo_all && w < sc->hi_all)
            visit(sc, p, w, self, libc_seg, leader);
    }
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
    if (sc->pagemap < 0) {
        scan_words(sc, lo, hi, -1, -1, &sc->root_bytes);
        return;
    }
    uint64_t pm[512];
    uintptr_t pg = lo & ~(uintptr_t)4095, run = 0;
    bool in_run = false;
    while (pg < hi) {
        size_t n = (hi - pg + 4095) / 4096;
        if (n > 512)
            n = 512;
        ssize_t r = pread(sc->pagemap, pm, n * 8, (off_t)(pg / 4096 * 8));
        if (r != (ssize_t)(n * 8)) { /* cannot tell: read it all */
            scan_words(sc, in_run ? run : (pg > lo ? pg : lo), hi, -1, -1, &sc->root_bytes);
            return;
        }
        for (size_t k = 0; k < n; k++) {
            uintptr_t page = pg + k * 4096;
            bool used = (pm[k] >> 62) & 3; /* present or swapped */
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

static const struct task *task_of(const struct scan *sc, pid_t tid)
{
    for (int i = 0; i < sc->ntasks; i++)
        if (sc->tasks[i].tid == tid)
            return &sc->tasks[i];
    return NULL;
}

/* A piece of a writable mapping that is no one's stack, or part of one. */
static void scan_piece(struct scan *sc, uintptr_t lo, uintptr_t hi, bool main_stack)
{
    if (lo >= hi)
        return;
    /* The dumping thread's stack: from its stack pointer up. */
    if (sc->my_sp >= lo && sc->my_sp < hi) {
        scan_root(sc, sc->my_sp, hi);
        return;
    }
    if (main_stack) {
        const struct task *t = task_of(sc, getpid());
        if (!t) /* the main thread is gone: its stack is stale */
            return;
        scan_root(sc, t->sp && t->sp - RED_ZONE >= lo && t->sp < hi ? t->sp - RED_ZONE : lo, hi);
        return;
    }
    /* The stacks noted by record/threads.c within the piece. */
    for (int k = 0; k < sc->nstacks; k++) {
        const struct hp_thread_stack *ts = &sc->stacks[k];
        if (ts->hi <= lo || ts->lo >= hi)
            continue;
        scan_piece(sc, lo, ts->lo > lo ? ts->lo : lo, false);
        uintptr_t slo = ts->lo > lo ? ts->lo : lo, shi = ts->hi < hi ? ts->hi : hi;
        const struct task *t = ts->alive ? task_of(sc, ts->tid) : NULL;
        for (int j = 0; !t && j < sc->ntasks; j++) /* a new thread on a reused stack */
            if (sc->tasks[j].sp >= slo && sc->tasks[j].sp < shi)
                t = &sc->tasks[j];
        if (t) {
            uintptr_t from =
                t->sp && t->sp - RED_ZONE >= slo && t->sp < shi ? t->sp - RED_ZONE : slo;
            scan_root(sc, from, shi);
        } /* else: an exited thread's stack, stale */
        scan_piece(sc, ts->hi, hi, false);
        return;
    }
    scan_root(sc, lo, hi);
}

/* Minus heapprof's own ranges (sorted). */
static void scan_mapping(struct scan *sc, uintptr_t lo, uintptr_t hi, bool main_stack)
{
    for (size_t i = 0; i < sc->nexcl && lo < hi; i++) {
        uintptr_t elo = sc->excl[2 * i], ehi = sc->excl[2 * i + 1];
        if (ehi <= lo || elo >= hi)
            continue;
        if (elo > lo)
            scan_piece(sc, lo, elo, main_stack);
        lo = ehi;
    }
    if (lo < hi)
        scan_piece(sc, lo, hi, main_stack);
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

/* Every readable and writable mapping of the child (the parent's copy). */
static void scan_maps(struct scan *sc, const char *maps)
{
    for (const char *line = maps; *line;) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            eol = line + strlen(line);
        const char *s = line;
        uintptr_t lo = parse_hex(&s);
        if (*s == '-')
            s++;
        uintptr_t hi = parse_hex(&s);
        while (*s == ' ')
            s++;
        bool rw = s[0] == 'r' && s[1] == 'w';
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
        if (!rw || lo >= hi)
            continue;
        if (starts_with(name, "[vvar") || starts_with(name, "[vdso") ||
            starts_with(name, "[vsyscall"))
            continue;
        if (starts_with(name, "/dev/") && !starts_with(name, "/dev/zero") &&
            !starts_with(name, "/dev/shm/"))
            continue; /* a device: reading may have effects */
        if (sc->exact && !strcmp(name, "[heap]"))
            continue; /* malloc's: followed through the objects only */
        scan_mapping(sc, lo, hi, !strcmp(name, "[stack]"));
    }
}

/* ---- the child ---- */

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
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

static void child_main(struct scan *sc, int out)
{
    /* Faults skip a page; nothing else of the program's may run here. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigset_t mask;
    sigfillset(&mask);
    sigdelset(&mask, SIGSEGV);
    sigdelset(&mask, SIGBUS);
    sigprocmask(SIG_SETMASK, &mask, NULL);

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
    exclude(sc, (uintptr_t)sc->pages, (uintptr_t)(sc->pages + sc->pages_cap));
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
    if (sc->nobjs)
        scan_maps(sc, maps);

    /* Exact mode: the cliques of what is left. */
    if (sc->exact)
        for (size_t i = 0; i < sc->nobjs; i++) {
            if (sc->state[i] != ST_UNREACHED)
                continue;
            sc->state[i] = ST_LEADER;
            sc->work[sc->nwork++] = (uint32_t)i;
            drain(sc, (long)i);
        }

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
            if (write_all(out, buf, k * sizeof buf[0]))
                _exit(3);
            k = 0;
        }
    }
    buf[k++] = MSG_MAGIC;
    buf[k++] = nlost;
    if (write_all(out, buf, k * sizeof buf[0]))
        _exit(3);
    _exit(0);
}

/* ---- the parent ---- */

static void read_tasks(struct scan *sc)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && sc->ntasks < MAX_TASKS) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        struct task *t = &sc->tasks[sc->ntasks++];
        t->tid = (pid_t)atoi(e->d_name);
        t->sp = 0;
        /* "NR ARG1 ... ARG6 SP PC" for a thread in a system call,
         * "running" otherwise. */
        char path[64], text[256];
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)t->tid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t r = read(fd, text, sizeof text - 1);
        close(fd);
        if (r <= 0)
            continue;
        text[r] = 0;
        char *f[9];
        int nf = 0;
        for (char *tok = strtok(text, " \n"); tok && nf < 9; tok = strtok(NULL, " \n"))
            f[nf++] = tok;
        if (nf == 9 && f[7][0] == '0' && f[7][1] == 'x')
            t->sp = (uintptr_t)strtoull(f[7] + 2, NULL, 16);
    }
    closedir(d);
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

/* The fork, with this thread's registers saved on its stack where the scan
 * of it (from here up) reads them; the child runs below this frame, and
 * never returns from it. */
__attribute__((noinline)) static pid_t fork_here(struct scan *sc, int p[2])
{
    ucontext_t regs;
    getcontext(&regs);
    __builtin_unwind_init();
    sc->my_sp = (uintptr_t)&regs;
    pid_t pid = hp_freeze_fork();
    if (pid == 0) {
        close(p[0]);
        child_main(sc, p[1]);
        _exit(1);
    }
    __asm__ volatile("" : : "r"(&regs) : "memory");
    return pid;
}

int hp_reach_check(struct hp_reach_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    int64_t t0 = hp_mono_ns();
    /* heapprof's own memory: the scan does not read it. */
    struct scan *sc = hp_alloc(sizeof *sc);
    if (!sc)
        return -ENOMEM;
    sc->exact = hp_cfg.rate <= 1;
    sc->my_tid = gettid();
    read_tasks(sc);
    sc->nstacks = hp_threads_list(sc->stacks, MAX_STACKS);
    dl_iterate_phdr(note_lib, sc);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        int e = errno;
        hp_free(sc, sizeof *sc);
        return -e;
    }
    pid_t pid = fork_here(sc, p);
    int err = pid < 0 ? -errno : 0;
    close(p[1]);
    if (err) {
        close(p[0]);
        hp_free(sc, sizeof *sc);
        return err;
    }
    /* Read the report as it comes, giving verdicts to the lost objects. */
    uint64_t hdr[6] = {0}, buf[1024];
    size_t have = 0, ngiven = 0;
    bool header = false, done = false;
    int64_t deadline = hp_mono_ms() + SCAN_TIMEOUT_S * 1000;
    uint64_t pending[2];
    size_t npending = 0; /* words of a pair split across reads */
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int64_t left = deadline - hp_mono_ms();
        if (left <= 0) {
            err = -ETIMEDOUT;
            break;
        }
        int pr = poll(&pf, 1, (int)(left < 1000 ? left : 1000));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t r = read(p[0], (char *)buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
        size_t words = have / 8, i = 0;
        if (!header && words >= 6) {
            memcpy(hdr, buf, sizeof hdr);
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
    close(p[0]);
    if (!done && !err)
        err = -EPIPE;
    if (err)
        kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
        ;
    stats->objects = hdr[1];
    stats->root_bytes = hdr[2];
    stats->heap_bytes = hdr[3];
    stats->faults = hdr[4];
    stats->child_bytes = hdr[5];
    stats->ns = hp_mono_ns() - t0;
    hp_free(sc, sizeof *sc);
    return err;
}
