/* The dynamic loader: keeping the names of unloaded libraries, and never
 * forking while the loader's lock is held.
 *
 * A stack recorded inside a library that the program unloads before exit
 * would otherwise come out as bare addresses, since the profile is
 * symbolized at dump time. Before the real dlclose runs, every recorded
 * address inside the library's code is symbolized from its file and the
 * answers are kept (symbols.c), together with the library's mapping.
 *
 * Unwinding takes glibc's loader write lock (libunwind calls
 * dl_iterate_phdr), as dlopen and dlclose do. A fork while another thread
 * holds it leaves the child with a lock no one will release, and the
 * child's first sampled allocation would hang in the unwinder. So
 * unwinding, dlopen and dlclose run inside a read hold of loader_guard,
 * and fork takes it for writing: no thread is inside the loader through
 * them at the moment of fork. (A program's own dl_iterate_phdr, or C++
 * exception unwinding, at the moment of fork is not covered.)
 */
#define _GNU_SOURCE
#include "hp.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

uint32_t hp_dl_epoch;

/* Writer-preferring, so that a fork does not wait behind a stream of
 * sampled allocations; statically initialised, as malloc runs before any
 * constructor. */
static pthread_rwlock_t loader_guard = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static HP_TLS int guard_depth; /* reads held by this thread: they nest */
static HP_TLS bool fork_skipped;

void hp_loader_enter(void)
{
    /* Nested reads (a library constructor run by dlopen that allocates)
     * must not queue behind a waiting fork: only the outermost one locks. */
    if (guard_depth++ == 0)
        pthread_rwlock_rdlock(&loader_guard);
}

void hp_loader_leave(void)
{
    if (--guard_depth == 0)
        pthread_rwlock_unlock(&loader_guard);
}

void hp_loader_fork_prepare(void)
{
    /* A fork from inside dlopen (a constructor that forks) already holds a
     * read: taking the write lock would wait for itself. */
    fork_skipped = guard_depth > 0;
    if (!fork_skipped)
        pthread_rwlock_wrlock(&loader_guard);
}

void hp_loader_fork_parent(void)
{
    if (!fork_skipped)
        pthread_rwlock_unlock(&loader_guard);
}

void hp_loader_fork_child(void)
{
    int depth = guard_depth;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&loader_guard, &a);
    pthread_rwlockattr_destroy(&a);
    /* The forking thread's own reads, if any, carry on in the child. */
    if (depth > 0)
        pthread_rwlock_rdlock(&loader_guard);
}

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
    /* All of it inside the guard: dlinfo and dl_iterate_phdr below take the
     * loader's lock as much as the real dlclose does. */
    hp_loader_enter();
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
                bool was_busy = hp_thread.busy;
                hp_thread.busy = true;
                hp_sym_retain(lm->l_name, lm->l_addr, f.lo, f.hi, f.offset);
                hp_thread.busy = was_busy;
            }
        }
    }
    int r = real ? real(handle) : -1;
    hp_loader_leave();
    return r;
}

/* True for elfutils' debuginfod client. libdw dlopens it (and with it
 * libcurl, GnuTLS, Kerberos and LDAP, some thirty libraries) the first time
 * a module's debug file is not found locally, whether or not any server is
 * configured. */
static bool is_debuginfod(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    return strncmp(base, "libdebuginfod", 13) == 0;
}

__attribute__((visibility("default"))) void *dlopen(const char *file, int mode)
{
    /* heapprof symbolizes inside the profiled program, often at its exit:
     * it must not load a network client there, let alone wait on one. So
     * libdw, called by heapprof, is told there is no debuginfod; libdw
     * then looks for debug files only on this machine. */
    if (hp_thread.busy && file && is_debuginfod(file))
        return NULL;
    hp_loader_enter();
    static void *(*real)(const char *, int);
    if (!real)
        real = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    void *h = real ? real(file, mode) : NULL;
    hp_loader_leave();
    return h;
}
