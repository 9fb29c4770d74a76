/* C++ operator new and delete, every replaceable form.
 *
 * libstdc++'s operator new calls malloc, so over glibc the hooks see C++
 * allocations without this file. But jemalloc, mimalloc and tcmalloc export
 * operator new and delete of their own, which call into the allocator
 * directly: preloaded after heapprof, they would make every C++ allocation
 * and deallocation invisible. Defining the operators here, ahead of them in
 * the lookup order, routes C++ through the same hooks as C. (A program that
 * defines its own operators still wins: the executable comes first.)
 *
 * The C++ rules are kept by handing failures to the next definition of the
 * same operator (the allocator's or libstdc++'s): when malloc returns NULL,
 * that one calls the new_handler, retries, and throws std::bad_alloc or
 * returns NULL as its form requires. Deletes go to free, which takes any
 * block the next allocator handed out; the size and alignment that sized
 * and aligned deletes carry are not needed for that.
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <stdlib.h>

/* Itanium C++ ABI names: std::size_t is m, std::nothrow_t const& is
 * RKSt9nothrow_t (an address, unused), std::align_val_t is St11align_val_t
 * (a size_t). */
#define CXX_SYMBOL(sym) __asm__(sym) HEAPPROF_API

typedef void *(*new_fn)(size_t);
typedef void *(*new_nothrow_fn)(size_t, const void *);
typedef void *(*new_aligned_fn)(size_t, size_t);
typedef void *(*new_aligned_nothrow_fn)(size_t, size_t, const void *);

/* The next definition of an operator, looked up when an allocation fails. */
static void *next_operator(const char *sym)
{
    void *f = dlsym(RTLD_NEXT, sym);
    if (!f) {
        hp_log("heapprof: operator new failed and no %s follows heapprof; aborting", sym);
        abort();
    }
    return f;
}

static void *aligned(size_t align, size_t size)
{
    void *p = NULL;
    /* posix_memalign wants a multiple of sizeof(void *); C++ allows any
     * power of two. */
    if (align < sizeof(void *))
        align = sizeof(void *);
    return posix_memalign(&p, align, size ? size : 1) == 0 ? p : NULL;
}

/* Each form of new, for new and new[]: allocate through the hooks, and on
 * failure hand the same arguments to the next definition of the same form. */
#define NEW(name, sym)                                                                             \
    void *name(size_t size) CXX_SYMBOL(sym);                                                       \
    void *name(size_t size)                                                                        \
    {                                                                                              \
        void *p = malloc(size ? size : 1);                                                         \
        return p ? p : ((new_fn)next_operator(sym))(size);                                         \
    }
#define NEW_NOTHROW(name, sym)                                                                     \
    void *name(size_t size, const void *nt) CXX_SYMBOL(sym);                                       \
    void *name(size_t size, const void *nt)                                                        \
    {                                                                                              \
        void *p = malloc(size ? size : 1);                                                         \
        return p ? p : ((new_nothrow_fn)next_operator(sym))(size, nt);                             \
    }
#define NEW_ALIGNED(name, sym)                                                                     \
    void *name(size_t size, size_t align) CXX_SYMBOL(sym);                                         \
    void *name(size_t size, size_t align)                                                          \
    {                                                                                              \
        void *p = aligned(align, size);                                                            \
        return p ? p : ((new_aligned_fn)next_operator(sym))(size, align);                          \
    }
#define NEW_ALIGNED_NOTHROW(name, sym)                                                             \
    void *name(size_t size, size_t align, const void *nt) CXX_SYMBOL(sym);                         \
    void *name(size_t size, size_t align, const void *nt)                                          \
    {                                                                                              \
        void *p = aligned(align, size);                                                            \
        return p ? p : ((new_aligned_nothrow_fn)next_operator(sym))(size, align, nt);              \
    }
NEW(hp_new, "_Znwm")
NEW(hp_new_array, "_Znam")
NEW_NOTHROW(hp_new_nothrow, "_ZnwmRKSt9nothrow_t")
NEW_NOTHROW(hp_new_array_nothrow, "_ZnamRKSt9nothrow_t")
NEW_ALIGNED(hp_new_aligned, "_ZnwmSt11align_val_t")
NEW_ALIGNED(hp_new_array_aligned, "_ZnamSt11align_val_t")
NEW_ALIGNED_NOTHROW(hp_new_aligned_nothrow, "_ZnwmSt11align_val_tRKSt9nothrow_t")
NEW_ALIGNED_NOTHROW(hp_new_array_aligned_nothrow, "_ZnamSt11align_val_tRKSt9nothrow_t")

/* Every delete: plain, array; sized; nothrow; aligned, and their mixes. */
#define DELETE(name, sym, ...)                                                                     \
    void name(void *p, ##__VA_ARGS__) CXX_SYMBOL(sym);                                             \
    void name(void *p, ##__VA_ARGS__)                                                              \
    {                                                                                              \
        free(p);                                                                                   \
    }
DELETE(hp_delete, "_ZdlPv")
DELETE(hp_delete_array, "_ZdaPv")
DELETE(hp_delete_sized, "_ZdlPvm", size_t size __attribute__((unused)))
DELETE(hp_delete_array_sized, "_ZdaPvm", size_t size __attribute__((unused)))
DELETE(hp_delete_nothrow, "_ZdlPvRKSt9nothrow_t", const void *nt __attribute__((unused)))
DELETE(hp_delete_array_nothrow, "_ZdaPvRKSt9nothrow_t", const void *nt __attribute__((unused)))
DELETE(hp_delete_aligned, "_ZdlPvSt11align_val_t", size_t align __attribute__((unused)))
DELETE(hp_delete_array_aligned, "_ZdaPvSt11align_val_t", size_t align __attribute__((unused)))
DELETE(hp_delete_sized_aligned, "_ZdlPvmSt11align_val_t", size_t size __attribute__((unused)),
       size_t align __attribute__((unused)))
DELETE(hp_delete_array_sized_aligned, "_ZdaPvmSt11align_val_t", size_t size __attribute__((unused)),
       size_t align __attribute__((unused)))
DELETE(hp_delete_aligned_nothrow, "_ZdlPvSt11align_val_tRKSt9nothrow_t",
       size_t align __attribute__((unused)), const void *nt __attribute__((unused)))
DELETE(hp_delete_array_aligned_nothrow, "_ZdaPvSt11align_val_tRKSt9nothrow_t",
       size_t align __attribute__((unused)), const void *nt __attribute__((unused)))
