/* The profiler's own memory.
 *
 * Nothing heapprof keeps (stacks, buckets, the live set, hash tables) may come
 * from malloc: that would recurse into the hooks, perturb the program's heap
 * and show up in its profile. Long-lived objects come from size-classed free
 * lists carved out of mmap'd chunks; a dump uses a bump arena that is unmapped
 * as a whole when the dump is done.
 */
#include "hp.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    MIN_SHIFT = 4,  /* 16 bytes */
    MAX_SHIFT = 16, /* 64 KiB: larger requests get their own mapping */
    NCLASSES = MAX_SHIFT - MIN_SHIFT + 1,
    CHUNK = 1 << 20,
};

struct free_obj {
    struct free_obj *next;
};

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_obj *free_lists[NCLASSES];
static char *chunk_cur, *chunk_end;
static size_t mapped;

/* Where heapprof's memory is mapped, sorted by address: the leak check must
 * not take heapprof's tables (the live set holds a pointer to every sampled
 * object) for the program's roots. A few hundred ranges at most: a range is
 * a 1 MiB chunk, a table larger than 64 KiB or a dump's arena chunk. The
 * array is mapped too, and is one of the ranges. */
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *ranges; /* lo, hi pairs */
static size_t nranges, ranges_cap;

static void ranges_add(uintptr_t lo, uintptr_t hi)
{
    if (nranges == ranges_cap) {
        size_t cap = ranges_cap ? ranges_cap * 2 : 256;
        uintptr_t *nr = hp_os_map(cap * 2 * sizeof *nr);
        if (!nr)
            return; /* then the leak check scans it: it can only find more reachable */
        if (nranges)
            memcpy(nr, ranges, nranges * 2 * sizeof *nr);
        uintptr_t *old = ranges;
        size_t old_cap = ranges_cap;
        ranges = nr;
        ranges_cap = cap;
        if (old) {
            hp_os_unmap(old, old_cap * 2 * sizeof *old);
            for (size_t i = 0; i < nranges; i++)
                if (ranges[2 * i] == (uintptr_t)old) {
                    memmove(&ranges[2 * i], &ranges[2 * i + 2],
                            (nranges - i - 1) * 2 * sizeof *ranges);
                    nranges--;
                    break;
                }
        }
        ranges_add((uintptr_t)nr, (uintptr_t)nr + cap * 2 * sizeof *nr);
    }
    size_t i = nranges;
    while (i > 0 && ranges[2 * (i - 1)] > lo)
        i--;
    memmove(&ranges[2 * i + 2], &ranges[2 * i], (nranges - i) * 2 * sizeof *ranges);
    ranges[2 * i] = lo;
    ranges[2 * i + 1] = hi;
    nranges++;
}

static void ranges_remove(uintptr_t lo)
{
    for (size_t i = 0; i < nranges; i++)
        if (ranges[2 * i] == lo) {
            memmove(&ranges[2 * i], &ranges[2 * i + 2], (nranges - i - 1) * 2 * sizeof *ranges);
            nranges--;
            return;
        }
}

size_t hp_mem_ranges(uintptr_t *out, size_t max)
{
    size_t n = nranges < max ? nranges : max;
    if (n)
        memcpy(out, ranges, n * 2 * sizeof *out);
    return nranges;
}

/* Once heapprof's own memory is large (exact mode, a program of many
 * stacks), its tables (more than 64 KiB: the live set's shards, the stack
 * table's chunks, a dump's arena) are mapped with their pages
 * (MAP_POPULATE: one system call, not a page fault per 4 KiB, which is
 * what a virtual machine pays most for: 12 us a fault against 1 us a page
 * populated on the 2-CPU VM of bench/README.md), and from 2 MiB on in
 * 2 MiB pages where the system allows it (transparent huge pages in
 * "madvise" mode). They are written whole soon after they are mapped.
 * Below that, and for the 1 MiB chunks of small objects, which fill
 * slowly, pages are faulted in as they are first written: a short process
 * maps tables it barely touches (exact mode on deep_tree: 1.45 s -> 1.19 s
 * wall; a short process is not slowed). */
enum { POPULATE_AFTER = 16u << 20 };
enum { HUGE_PAGE = 2u << 20 };
static void *map_table(size_t len)
{
    if (len < HUGE_PAGE) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    char *p = hp_os_map(len + HUGE_PAGE);
    if (!p)
        return NULL;
    char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p)
        hp_os_unmap(p, (size_t)(a - p));
    size_t tail = (size_t)(p + len + HUGE_PAGE - (a + len));
    if (tail)
        hp_os_unmap(a + len, tail);
    syscall(SYS_madvise, a, len, MADV_HUGEPAGE); /* not the hook: nothing to track */
    return a;
}

static void *map(size_t len, bool table)
{
    bool big = table && __atomic_load_n(&mapped, __ATOMIC_RELAXED) >= POPULATE_AFTER;
    void *p = big ? map_table(len) : NULL;
    if (!p) /* or the plain mapping, which needs less address space */
        p = hp_os_map(len);
    if (!p)
        return NULL;
    __atomic_fetch_add(&mapped, len, __ATOMIC_RELAXED);
    hp_mutex_lock(&ranges_lock);
    ranges_add((uintptr_t)p, (uintptr_t)p + len);
    pthread_mutex_unlock(&ranges_lock);
    return p;
}

static void unmap(void *p, size_t len)
{
    hp_mutex_lock(&ranges_lock);
    ranges_remove((uintptr_t)p);
    pthread_mutex_unlock(&ranges_lock);
    hp_os_unmap(p, len);
    __atomic_fetch_sub(&mapped, len, __ATOMIC_RELAXED);
}

static size_t page_round(size_t n)
{
    return (n + 4095) & ~(size_t)4095;
}

static int size_class(size_t size)
{
    int c = 0;
    while (((size_t)1 << (c + MIN_SHIFT)) < size)
        c++;
    return c;
}

void *hp_alloc(size_t size)
{
    if (size == 0)
        size = 1;
    if (size > ((size_t)1 << MAX_SHIFT))
        return map(page_round(size), true); /* mmap'd memory is already zero */
    int c = size_class(size);
    size_t csize = (size_t)1 << (c + MIN_SHIFT);
    void *p = NULL;
    hp_mutex_lock(&mem_lock);
    if (free_lists[c]) {
        p = free_lists[c];
        free_lists[c] = free_lists[c]->next;
    } else {
        if ((size_t)(chunk_end - chunk_cur) < csize) {
            /* The tail of the old chunk is abandoned: at most 64 KiB a chunk. */
            char *chunk = map(CHUNK, false);
            if (chunk) {
                chunk_cur = chunk;
                chunk_end = chunk + CHUNK;
            }
        }
        if ((size_t)(chunk_end - chunk_cur) >= csize) {
            p = chunk_cur;
            chunk_cur += csize;
        }
    }
    pthread_mutex_unlock(&mem_lock);
    if (p)
        memset(p, 0, csize);
    return p;
}

void hp_free(void *p, size_t size)
{
    if (!p)
        return;
    if (size == 0)
        size = 1;
    if (size > ((size_t)1 << MAX_SHIFT)) {
        unmap(p, page_round(size));
        return;
    }
    int c = size_class(size);
    struct free_obj *o = p;
    hp_mutex_lock(&mem_lock);
    o->next = free_lists[c];
    free_lists[c] = o;
    pthread_mutex_unlock(&mem_lock);
}

void hp_mem_lock(void)
{
    hp_mutex_lock(&mem_lock);
    hp_mutex_lock(&ranges_lock);
}

void hp_mem_unlock(void)
{
    pthread_mutex_unlock(&ranges_lock);
    pthread_mutex_unlock(&mem_lock);
}

void hp_mem_child(void)
{
    pthread_mutex_init(&mem_lock, NULL);
    pthread_mutex_init(&ranges_lock, NULL);
}

size_t hp_mem_mapped(void)
{
    return __atomic_load_n(&mapped, __ATOMIC_RELAXED);
}

/* ---- dump arena ---- */

struct hp_arena_chunk {
    struct hp_arena_chunk *next;
    size_t size, used;
    char data[];
};

void *hp_arena_alloc(struct hp_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct hp_arena_chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t want = sizeof(*c) + size;
        if (want < (256u << 10))
            want = 256u << 10;
        want = page_round(want);
        c = map(want, want > (256u << 10)); /* a small dump's chunk: as it goes */
        if (!c)
            return NULL;
        c->size = want - sizeof(*c);
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p; /* fresh mmap'd memory, never reused: already zero */
}

char *hp_arena_strdup(struct hp_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = hp_arena_alloc(a, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void hp_arena_release(struct hp_arena *a)
{
    struct hp_arena_chunk *c = a->head;
    while (c) {
        struct hp_arena_chunk *next = c->next;
        unmap(c, c->size + sizeof(*c));
        c = next;
    }
    a->head = NULL;
}
