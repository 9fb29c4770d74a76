/* elfutils, loaded when first needed: see dw.h. */
#define _GNU_SOURCE
#define HP_DW_LOADER
#include "dw.h"
#include "iface.h"

#include <dlfcn.h>
#include <pthread.h>

struct hp_dw hp_dw;
static Dwfl_Callbacks proc_callbacks, offline_callbacks;
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static int loaded; /* 0: not tried, 1: loaded, -1: cannot be */

static bool load(void)
{
    /* libdw's handle finds libelf's functions too: it depends on it. */
    void *h = hp_dl_open("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        hp_log("heapprof: cannot load libdw.so.1 (%s); the profile has addresses, no names",
               dlerror());
        return false;
    }
    struct hp_dw t;
#define HP_DW_FIND(f)                                                                              \
    if (!(t.f = (__typeof__(f) *)dlsym(h, #f))) {                                                  \
        hp_log("heapprof: libdw.so.1 has no %s; the profile has addresses, no names", #f);         \
        return false;                                                                              \
    }
    HP_DW_FUNCTIONS(HP_DW_FIND)
#undef HP_DW_FIND
    hp_dw = t;
    proc_callbacks.find_elf = t.dwfl_linux_proc_find_elf;
    proc_callbacks.find_debuginfo = t.dwfl_standard_find_debuginfo;
    offline_callbacks.find_elf = t.dwfl_build_id_find_elf;
    offline_callbacks.find_debuginfo = t.dwfl_standard_find_debuginfo;
    offline_callbacks.section_address = t.dwfl_offline_section_address;
    return true;
}

bool hp_dw_load(void)
{
    int l = __atomic_load_n(&loaded, __ATOMIC_ACQUIRE);
    if (l)
        return l > 0;
    hp_mutex_lock(&load_mu);
    if (!loaded) {
        bool was_busy = hp_busy_begin();
        __atomic_store_n(&loaded, load() ? 1 : -1, __ATOMIC_RELEASE);
        hp_busy_end(was_busy);
    }
    pthread_mutex_unlock(&load_mu);
    return loaded > 0;
}

/* A fork while another thread was loading them (loaded still 0): the
 * child loads them again. */
void hp_dw_child(void)
{
    pthread_mutex_init(&load_mu, NULL);
}

const Dwfl_Callbacks *hp_dw_proc_callbacks(void)
{
    return &proc_callbacks;
}

const Dwfl_Callbacks *hp_dw_offline_callbacks(void)
{
    return &offline_callbacks;
}
