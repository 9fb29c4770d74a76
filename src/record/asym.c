/* Asymmetric barriers: a fence that a hot path need not pay for, because
 * the rare side pays for both.
 *
 * Two places pair a flag a thread sets with a word it then reads: the
 * unwinder's "inside a capture" flag against the module set it reads (a
 * dlclose frees the old set once no thread is inside), and the live set's
 * biased shard locks (a thread other than the owner waits until the owner
 * is out of the tables). On x86 a store may wait in the store buffer while
 * a later load goes ahead, so each such pair needs a full fence (a locked
 * instruction, 20 to 30 cycles; in exact mode about 9 ns an allocation each,
 * by perf: bench/README.md). Instead the fast side orders its store and load
 * for the compiler only, and the slow side (hp_asym_heavy) makes every CPU
 * that runs a thread of the process pass a full barrier: it takes write
 * access away from a page of its own that it has just written, and the
 * kernel flushes that page's TLB entries on every CPU that may hold them,
 * with an interrupt, which drains the store buffer there. A CPU that runs no
 * thread of the process has switched contexts since, which drains it too.
 * So when hp_asym_heavy returns, a fast side's store is visible to the slow
 * side, or its load comes after the barrier and sees what the slow side
 * stored before calling it. (Write access, not all access: a page left
 * PROT_NONE looks to the leak check like the guard page below a thread's
 * stack (report/reach.c), and the mapping above it, the loader's TLS block
 * of the main thread once, like an exited thread's block, not a root: its
 * objects were called lost. Taking write access away from a dirty page
 * needs the same flush.) The .NET runtime's and Wine's
 * FlushProcessWriteBuffers on Linux without membarrier rely on the same
 * property; membarrier(2) would say it directly, but a seccomp filter may
 * kill a process for a system call it does not expect, while mprotect is
 * in every filter.
 *
 * Elsewhere than x86-64 the fast side is a real fence and the slow side
 * does nothing: stores there can pass loads in more ways, and TLB
 * shootdowns need not interrupt (arm64 broadcasts them in hardware).
 */
#define _GNU_SOURCE
#include "record.h"

#include <sys/mman.h>
#include <unistd.h>

#if HP_ASYM_CHEAP
static void *page;
static size_t page_size;
static int lock;

bool hp_asym_heavy(void)
{
    /* Held for two system calls. A process cloned without the fork
     * handlers while another thread held it would find it held for good:
     * after a while this gives up, and the callers do without the barrier
     * (record/unwind.c, record/live.c). */
    for (int tries = 0; __atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE); tries++) {
        if (tries == 10000)
            return false;
        sched_yield();
    }
    bool ok = false;
    if (!page) {
        long ps = sysconf(_SC_PAGESIZE);
        page_size = ps > 0 ? (size_t)ps : 4096;
        void *p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED)
            page = p;
    }
    if (page && !mprotect(page, page_size, PROT_READ | PROT_WRITE)) {
        /* A dirty, present, writable entry: the kernel cannot skip the
         * flush when it becomes read-only. */
        __atomic_fetch_add((long *)page, 1, __ATOMIC_SEQ_CST);
        ok = !mprotect(page, page_size, PROT_READ);
    }
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
    return ok;
}
#else
bool hp_asym_heavy(void)
{
    return true;
}
#endif
