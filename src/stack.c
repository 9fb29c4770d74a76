/* Stack capture on the sampled path.
 *
 * libunwind's unw_backtrace walks the stack with its fast trace cache (one
 * cache per thread, so no lock is shared between threads). The frames of
 * heapprof itself and of libunwind are cut from the leaf end by address
 * range, not by a fixed count, so inlining in the hooks cannot shift the
 * result: the leaf is always the function that called the allocator.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include "hp.h"

#include <dlfcn.h>
#include <elf.h>
#include <libunwind.h>
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

void hp_stack_init(void)
{
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    unw_set_cache_size(unw_local_addr_space, 4096, 0);
    text_of((const void *)hp_stack_init, &self_text);
    text_of((const void *)unw_backtrace, &unwind_text);
}

static inline bool inside(const struct range *r, uintptr_t pc)
{
    return pc >= r->lo && pc < r->hi;
}

int hp_stack_capture(void **ips, int max)
{
    void *buf[HP_MAX_FRAMES + 16];
    hp_loader_enter();
    int n = unw_backtrace(buf, (int)(sizeof buf / sizeof buf[0]));
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
