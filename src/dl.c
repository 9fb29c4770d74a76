/* dlclose: keeping the names of unloaded libraries.
 *
 * A stack recorded inside a library that the program unloads before exit
 * would otherwise come out as bare addresses, since the profile is
 * symbolized at dump time. Before the real dlclose runs, every recorded
 * address inside the library's code is symbolized from its file and the
 * answers are kept (symbols.c), together with the library's mapping.
 */
#define _GNU_SOURCE
#include "hp.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

uint32_t hp_dl_epoch;

struct find {
    uintptr_t bias;
    const char *name;
    uintptr_t lo, hi;
    uint64_t offset;
};

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find *f = data;
    if (info->dlpi_addr != f->bias || !info->dlpi_name || strcmp(info->dlpi_name, f->name))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        /* As /proc/self/maps shows it: whole pages. */
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
        uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + 4095) & ~(uintptr_t)4095;
        f->lo = lo;
        f->hi = hi;
        f->offset = ph->p_offset & ~(uint64_t)4095;
        return 1;
    }
    return 1;
}

__attribute__((visibility("default"))) int dlclose(void *handle)
{
    static int (*real)(void *);
    if (!real)
        real = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    /* glibc declares handle nonnull; programs still pass NULL. */
    void *volatile h = handle;
    if (h && __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON && !hp_thread.busy) {
        struct link_map *lm = NULL;
        if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0]) {
            struct find f = {.bias = lm->l_addr, .name = lm->l_name};
            dl_iterate_phdr(find_text, &f);
            if (f.hi > f.lo) {
                hp_thread.busy = true;
                hp_sym_retain(lm->l_name, lm->l_addr, f.lo, f.hi, f.offset);
                hp_thread.busy = false;
            }
        }
    }
    return real ? real(handle) : -1;
}
