/* Stack capture on the sampled path.
 *
 * libunwind's unw_backtrace walks the stack with its fast trace cache (one
 * cache per thread, so no lock is shared between threads). The frames of
 * heapprof itself and of libunwind are cut from the leaf end by address
 * range, not by a fixed count, so inlining in the hooks cannot shift the
 * result: the leaf is always the function that called the allocator.
 *
 * libunwind is loaded with dlopen when profiling is on (hp_stack_init, at
 * start-up), not linked: a program that preloads heapprof with
 * HEAPPROF unset never maps it (nor the liblzma it brings). RTLD_LOCAL also
 * keeps its weak backtrace() from standing in for the C library's.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include "record.h"

#include <dlfcn.h>
#include <elf.h>
#include <libunwind.h>
#include <stdio.h>
#include <link.h>
#include <string.h>

struct range {
    uintptr_t lo, hi;
};
static struct range self_text, unwind_text;

struct find_arg {
    uintptr_t base;
    struct range *out;
};

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find_arg *a = data;
    if (info->dlpi_addr != a->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        uintptr_t hi = lo + ph->p_memsz;
        if (!a->out->lo || lo < a->out->lo)
            a->out->lo = lo;
        if (hi > a->out->hi)
            a->out->hi = hi;
    }
    return 1;
}

/* The executable range of the object that holds addr. */
static void text_of(const void *addr, struct range *out)
{
    struct link_map *lm = NULL;
    Dl_info info;
    if (dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
        struct find_arg a = {lm->l_addr, out};
        dl_iterate_phdr(find_text, &a);
    }
}

/* libunwind's names for these, with UNW_LOCAL_ONLY (_ULx86_64_... on
 * x86-64): the macros of libunwind.h spelled as strings. */
#define HP_STR(x) #x
#define HP_XSTR(x) HP_STR(x)

static int (*backtrace_fn)(void **, int);

bool hp_stack_init(void)
{
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    int (*set_policy)(unw_addr_space_t, unw_caching_policy_t) =
        h ? (int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(h,
                                                                   HP_XSTR(unw_set_caching_policy))
          : NULL;
    int (*set_size)(unw_addr_space_t, size_t, int) =
        h ? (int (*)(unw_addr_space_t, size_t, int))dlsym(h, HP_XSTR(unw_set_cache_size)) : NULL;
    unw_addr_space_t *space = h ? dlsym(h, HP_XSTR(unw_local_addr_space)) : NULL;
    int (*bt)(void **, int) = h ? (int (*)(void **, int))dlsym(h, "unw_backtrace") : NULL;
    if (!set_policy || !set_size || !space || !bt) {
        hp_log("heapprof: cannot load libunwind.so.8 (%s); profiling is off",
               h ? "a function is missing" : dlerror());
        return false;
    }
    set_policy(*space, UNW_CACHE_PER_THREAD);
    set_size(*space, 4096, 0);
    text_of((const void *)hp_stack_init, &self_text);
    text_of((const void *)bt, &unwind_text);
    __atomic_store_n(&backtrace_fn, bt, __ATOMIC_RELEASE);
    return true;
}

static inline bool inside(const struct range *r, uintptr_t pc)
{
    return pc >= r->lo && pc < r->hi;
}

int hp_stack_capture(void **ips, int max)
{
    void *buf[HP_MAX_FRAMES + 16];
    int (*bt)(void **, int) = __atomic_load_n(&backtrace_fn, __ATOMIC_ACQUIRE);
    if (!bt)
        return 0; /* before the constructor loaded libunwind */
    hp_loader_enter();
    int n = bt(buf, (int)(sizeof buf / sizeof buf[0]));
    hp_loader_leave();
    int skip = 0;
    while (skip < n &&
           (inside(&self_text, (uintptr_t)buf[skip]) || inside(&unwind_text, (uintptr_t)buf[skip])))
        skip++;
    int depth = n - skip;
    if (depth > max)
        depth = max;
    if (depth < 0)
        depth = 0;
    memcpy(ips, buf + skip, (size_t)depth * sizeof(void *));
    return depth;
}
