/* The C library's own functions, for heapprof's own code.
 *
 * libheapprof.so defines malloc, free, pthread_create, sigaction, dlopen and
 * more (src/interpose/): a call to one of those from heapprof's own code
 * would land in heapprof's hooks, not in the C library. Code below the
 * interposition layer calls them through this table instead. The malloc
 * family is filled in by the allocator hooks when they find the real
 * allocator (interpose/alloc.c: the first allocations come before any
 * constructor); the rest here, with dlsym(RTLD_NEXT) from this object: at
 * load (a constructor), or on first use by a hook that runs earlier.
 */
#define _GNU_SOURCE
#include "hp.h"

#include <dlfcn.h>

struct hp_real hp_real;

void hp_real_resolve(void)
{
    if (__atomic_load_n(&hp_real.resolved, __ATOMIC_ACQUIRE))
        return;
    struct hp_real r = hp_real;
#define FIND(field, name) r.field = (__typeof__(r.field))dlsym(RTLD_NEXT, name)
    FIND(pthread_create, "pthread_create");
    FIND(pthread_setname_np, "pthread_setname_np");
    FIND(pthread_getattr_np, "pthread_getattr_np");
    FIND(prctl, "prctl");
    FIND(sigaction, "sigaction");
    FIND(signal, "signal");
    FIND(dl_iterate_phdr, "dl_iterate_phdr");
    FIND(dlopen, "dlopen");
    FIND(dlclose, "dlclose");
    FIND(sbrk, "sbrk");
    FIND(brk, "brk");
    FIND(madvise, "madvise");
    FIND(munmap, "munmap");
#undef FIND
    hp_real.pthread_create = r.pthread_create;
    hp_real.pthread_setname_np = r.pthread_setname_np;
    hp_real.pthread_getattr_np = r.pthread_getattr_np;
    hp_real.prctl = r.prctl;
    hp_real.sigaction = r.sigaction;
    hp_real.signal = r.signal;
    hp_real.dl_iterate_phdr = r.dl_iterate_phdr;
    hp_real.dlopen = r.dlopen;
    hp_real.dlclose = r.dlclose;
    hp_real.sbrk = r.sbrk;
    hp_real.brk = r.brk;
    hp_real.madvise = r.madvise;
    hp_real.munmap = r.munmap;
    /* The allocator's free and malloc_usable_size, where the hooks did not
     * fill them in (a program that links the internal archive, not the
     * library: the unit tests). */
    if (!hp_real.free)
        hp_real.free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    if (!hp_real.malloc_usable_size)
        hp_real.malloc_usable_size = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    __atomic_store_n(&hp_real.resolved, true, __ATOMIC_RELEASE);
}

__attribute__((constructor(101))) static void real_startup(void)
{
    hp_real_resolve();
}
