/* The loader: dlopen, dlclose and dl_iterate_phdr, each inside the loader
 * guard (record/dl.c), so that a fork, or a CPU sample, never lands while
 * this thread holds the loader's lock; dlclose also notes the library's
 * range and build id before it goes (record/dl.c), so that frames in it are
 * still named in later dumps.
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

HEAPPROF_API int dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data)
{
    return hp_dl_iterate_phdr(cb, data);
}

HEAPPROF_API int dlclose(void *handle)
{
    /* All of it inside the guard: dlinfo and dl_iterate_phdr take the
     * loader's lock as much as the real dlclose does. */
    hp_loader_enter();
    hp_real_resolve();
    /* glibc declares handle nonnull; programs still pass NULL. */
    void *volatile h = handle;
    if (h && __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON && !hp_thread.busy)
        hp_dl_closing(handle, hp_table_has_pc_in);
    hp_unwind_closing();
    int r = hp_real.dlclose ? hp_real.dlclose(handle) : -1;
    hp_unwind_closed();
    hp_loader_leave();
    return r;
}

HEAPPROF_API void *dlopen(const char *file, int mode)
{
    /* The library's own calls to free reach the allocator before heapprof.
     * Its slots for them are pointed at heapprof's, so that it can free a
     * sampled block with a header (interpose/alloc.c); and no more headers
     * are made, for what those slots miss (a library it loads itself). */
    if (mode & RTLD_DEEPBIND)
        hp_heads_stop();
    void *h = hp_dl_open(file, mode);
    if (h && (mode & RTLD_DEEPBIND)) {
        const struct hp_rebind to[] = {
            {"free", (void *)free},
            {"realloc", (void *)realloc},
            {"reallocarray", (void *)reallocarray},
            {"malloc_usable_size", (void *)malloc_usable_size},
            {"__libc_free", (void *)free},
            {"__libc_realloc", (void *)realloc},
        };
        hp_loader_enter();
        hp_dl_rebind(h, to, (int)(sizeof to / sizeof to[0]));
        hp_loader_leave();
    }
    if (h)
        hp_unwind_opened();
    return h;
}
