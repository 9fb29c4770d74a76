/* Memory the program took or marked outside malloc, for the leak check.
 *
 * sbrk and brk: the mapping the kernel calls [heap] is malloc's main arena,
 * which the leak check follows through the live objects only (what a free
 * chunk holds is stale); but a program that moves the break itself owns
 * what it got, and what it stores there is a root, as memcheck takes it.
 * glibc's malloc moves the break with its internal __sbrk, which does not
 * come through here: only the program's calls do.
 *
 * MADV_DONTFORK and MADV_WIPEONFORK: the leak check reads a copy of the
 * process made by fork, where such memory is missing or zeroed. The ranges
 * are noted here; the check lifts the marks just around its fork
 * (report/reach.c, which checks them against the kernel's VmFlags first,
 * since a range may have been unmapped and reused since).
 *
 * Both tables are fixed and small: a program that takes more ranges than
 * they hold has the oldest merged or dropped, which can only make the
 * check call memory it cannot see lost; the README says so.
 */
#define _GNU_SOURCE
#include "record.h"

#include <sys/mman.h>

enum { MAX_BRK = 64, MAX_MARKS = 64 };

struct range {
    uintptr_t lo, hi;
    int advice;
};

static struct range brks[MAX_BRK], marks[MAX_MARKS];
static int nbrk, nmarks;
static int lock;

static void take(void)
{
    while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&lock, __ATOMIC_RELAXED))
            ;
}

static void drop(void)
{
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
}

/* Removes [lo, hi) from the table (splitting a range where needed). */
static void cut(struct range *t, int *n, int max, uintptr_t lo, uintptr_t hi, int advice)
{
    for (int i = 0; i < *n; i++) {
        struct range *r = &t[i];
        if ((advice && r->advice != advice) || r->hi <= lo || r->lo >= hi)
            continue;
        if (r->lo < lo && r->hi > hi && *n < max) {
            t[(*n)++] = (struct range){hi, r->hi, r->advice};
            r->hi = lo;
        } else if (r->lo < lo) {
            r->hi = lo;
        } else if (r->hi > hi) {
            r->lo = hi;
        } else {
            t[i--] = t[--(*n)];
        }
    }
}

static void add(struct range *t, int *n, int max, uintptr_t lo, uintptr_t hi, int advice)
{
    cut(t, n, max, lo, hi, advice);
    for (int i = 0; i < *n; i++)
        if (t[i].advice == advice && (t[i].hi == lo || t[i].lo == hi)) {
            if (t[i].hi == lo)
                t[i].hi = hi;
            else
                t[i].lo = lo;
            return;
        }
    if (*n == max) /* full: the nearest neighbour below absorbs the gap */
        for (int i = 0; i < *n; i++)
            if (t[i].advice == advice && t[i].hi < lo) {
                t[i].hi = hi;
                return;
            }
    if (*n < max)
        t[(*n)++] = (struct range){lo, hi, advice};
}

void hp_regions_brk(uintptr_t from, uintptr_t to)
{
    take();
    if (to > from)
        add(brks, &nbrk, MAX_BRK, from, to, 0);
    else if (to < from)
        cut(brks, &nbrk, MAX_BRK, to, from, 0);
    drop();
}

void hp_regions_madvise(uintptr_t lo, size_t len, int advice)
{
    uintptr_t hi = lo + ((len + 4095) & ~(size_t)4095);
    take();
    switch (advice) {
    case MADV_DONTFORK:
    case MADV_WIPEONFORK:
        add(marks, &nmarks, MAX_MARKS, lo, hi, advice);
        break;
    case MADV_DOFORK:
        cut(marks, &nmarks, MAX_MARKS, lo, hi, MADV_DONTFORK);
        break;
    case MADV_KEEPONFORK:
        cut(marks, &nmarks, MAX_MARKS, lo, hi, MADV_WIPEONFORK);
        break;
    default:
        break;
    }
    drop();
}

void hp_regions_unmap(uintptr_t lo, size_t len)
{
    uintptr_t hi = lo + ((len + 4095) & ~(size_t)4095);
    /* munmap may be called from a signal handler that interrupted this very
     * lock's holder: never wait for it. A range left marked is checked
     * against the kernel's flags before it is used (report/reach.c). */
    int spins = 0;
    while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
        if (++spins > 4096)
            return;
    cut(marks, &nmarks, MAX_MARKS, lo, hi, 0);
    drop();
}

int hp_brk_ranges(uintptr_t *out, int max)
{
    take();
    int n = nbrk;
    for (int i = 0; i < n && i < max; i++) {
        out[2 * i] = brks[i].lo;
        out[2 * i + 1] = brks[i].hi;
    }
    drop();
    return n;
}

int hp_fork_marks(uintptr_t *out, int max)
{
    take();
    int n = nmarks;
    for (int i = 0; i < n && i < max; i++) {
        out[3 * i] = marks[i].lo;
        out[3 * i + 1] = marks[i].hi;
        out[3 * i + 2] = (uintptr_t)marks[i].advice;
    }
    drop();
    return n;
}

/* In a child after fork: another thread may have held the lock. */
void hp_regions_child(void)
{
    lock = 0;
}
