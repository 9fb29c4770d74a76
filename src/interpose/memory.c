/* The memory calls the program makes without malloc, noted for the leak
 * check (record/regions.c): sbrk and brk (what the program took from the
 * break is its own), madvise (MADV_DONTFORK and MADV_WIPEONFORK ranges) and
 * munmap (which ends such a range). glibc's malloc uses its internal
 * __sbrk and __madvise, which do not come here.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

HEAPPROF_API void *sbrk(intptr_t increment)
{
    hp_real_resolve();
    void *old = hp_real.sbrk ? hp_real.sbrk(increment) : (void *)-1;
    if (old != (void *)-1 && increment)
        hp_regions_brk((uintptr_t)old, (uintptr_t)old + (uintptr_t)increment);
    return old;
}

HEAPPROF_API int brk(void *addr)
{
    hp_real_resolve();
    if (!hp_real.brk || !hp_real.sbrk) {
        errno = ENOMEM;
        return -1;
    }
    void *old = hp_real.sbrk(0);
    int r = hp_real.brk(addr);
    if (r == 0 && old != (void *)-1)
        hp_regions_brk((uintptr_t)old, (uintptr_t)addr);
    return r;
}

HEAPPROF_API int madvise(void *addr, size_t len, int advice)
{
    hp_real_resolve();
    int r = hp_real.madvise ? hp_real.madvise(addr, len, advice) : (errno = ENOSYS, -1);
    if (r == 0)
        hp_regions_madvise((uintptr_t)addr, len, advice);
    return r;
}

HEAPPROF_API int munmap(void *addr, size_t len)
{
    hp_real_resolve();
    int r = hp_real.munmap ? hp_real.munmap(addr, len) : (errno = ENOSYS, -1);
    if (r == 0)
        hp_regions_unmap((uintptr_t)addr, len);
    return r;
}
