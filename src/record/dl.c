/* The dynamic loader: keeping what names unloaded libraries, and never
 * forking while the loader's lock is held.
 *
 * A stack recorded inside a library that the program unloads before exit
 * would otherwise come out as bare addresses, since the profile is
 * symbolized at dump time. Before the real dlclose runs, the library's
 * path, load bias, code range and build id (read from its notes in memory)
 * are kept, if a recorded stack has a frame in it; the reporting half reads
 * the file at dump time (report/symbols.c). Nothing is symbolized inside
 * dlclose, and the reporting half is not called there. (A library whose
 * file is gone by then keeps its mapping and build id, not its names.)
 *
 * Unwinding takes glibc's loader write lock (libunwind calls
 * dl_iterate_phdr), as dlopen and dlclose do. A fork while another thread
 * holds it leaves the child with a lock no one will release, and the
 * child's first sampled allocation would hang in the unwinder. So
 * unwinding, dlopen and dlclose run inside a read hold of the loader
 * guard, and fork takes it for writing: no thread is inside the loader
 * through them at the moment of fork. (A program's own dl_iterate_phdr, or
 * C++ exception unwinding, at the moment of fork is not covered.)
 *
 * The guard is taken at every sample, by every thread, so its readers must
 * not share a cache line: each thread counts its reads in one of 16 padded
 * slots, and a fork raises a flag and waits for every slot to drain (a
 * reader that sees the flag steps back and waits for the fork to end).
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

HP_TLS int hp_in_dl_iterate;

enum { GUARD_SLOTS = 16 };
static struct {
    int readers;
} __attribute__((aligned(64))) guard_slot[GUARD_SLOTS];
static int guard_writer __attribute__((aligned(64)));          /* a fork is waiting or running */
static pthread_mutex_t guard_fork = PTHREAD_MUTEX_INITIALIZER; /* one fork at a time */
static int guard_next;
static HP_TLS int guard_depth; /* reads held by this thread: they nest */
static HP_TLS int guard_mine;  /* this thread's slot + 1; 0: none yet */
static HP_TLS bool fork_skipped;

static int *my_readers(void)
{
    if (!guard_mine)
        guard_mine = __atomic_fetch_add(&guard_next, 1, __ATOMIC_RELAXED) % GUARD_SLOTS + 1;
    return &guard_slot[guard_mine - 1].readers;
}

void hp_loader_enter(void)
{
    /* Nested reads (a library constructor run by dlopen that allocates)
     * must not queue behind a waiting fork: only the outermost one counts. */
    if (guard_depth++ > 0)
        return;
    int *r = my_readers();
    for (;;) {
        /* Sequentially consistent with the fork's flag and reads: either
         * the fork sees this read, or this read sees the fork's flag. */
        __atomic_fetch_add(r, 1, __ATOMIC_SEQ_CST);
        if (!__atomic_load_n(&guard_writer, __ATOMIC_SEQ_CST))
            return;
        __atomic_fetch_sub(r, 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&guard_writer, __ATOMIC_ACQUIRE))
            sched_yield();
    }
}

void hp_loader_leave(void)
{
    if (--guard_depth == 0)
        __atomic_fetch_sub(my_readers(), 1, __ATOMIC_RELEASE);
}

/* From the CPU profiler's signal handler (cpu.c), which must never wait:
 * false, and the sample is dropped, when a fork is waiting or running (the
 * handler may have interrupted the forking thread itself, inside
 * hp_loader_fork_prepare, which would then wait for this read forever), or
 * when this thread is already inside a loader section (unwinding, dlopen,
 * dlclose): glibc's loader lock is recursive, but its owner is recorded
 * only after the lock is taken and cleared before it is released, so a
 * signal landing in between would wait in dl_iterate_phdr for its own
 * thread. */
bool hp_loader_try_enter(void)
{
    if (guard_depth > 0 || __atomic_load_n(&guard_writer, __ATOMIC_SEQ_CST))
        return false;
    int *r = my_readers();
    __atomic_fetch_add(r, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&guard_writer, __ATOMIC_SEQ_CST)) {
        __atomic_fetch_sub(r, 1, __ATOMIC_RELEASE);
        return false;
    }
    guard_depth = 1;
    return true;
}

void hp_loader_fork_prepare(void)
{
    /* A fork from inside dlopen (a constructor that forks) already holds a
     * read: waiting for every reader would wait for itself. */
    fork_skipped = guard_depth > 0;
    if (fork_skipped)
        return;
    hp_mutex_lock(&guard_fork);
    __atomic_store_n(&guard_writer, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < GUARD_SLOTS; i++)
        while (__atomic_load_n(&guard_slot[i].readers, __ATOMIC_SEQ_CST))
            sched_yield();
}

void hp_loader_fork_parent(void)
{
    if (fork_skipped)
        return;
    __atomic_store_n(&guard_writer, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&guard_fork);
}

void hp_loader_fork_child(void)
{
    /* Only this thread exists: no reads but its own, if any. */
    for (int i = 0; i < GUARD_SLOTS; i++)
        guard_slot[i].readers = 0;
    if (guard_depth > 0)
        *my_readers() = 1;
    guard_writer = 0;
    pthread_mutex_init(&guard_fork, NULL);
}

struct find {
    uintptr_t bias;
    const char *name;
    uintptr_t lo, hi;
    uint64_t offset;
    char build_id[129];
};

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find *f = data;
    if (info->dlpi_addr != f->bias || !info->dlpi_name || strcmp(info->dlpi_name, f->name))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_NOTE && !f->build_id[0])
            hp_note_build_id((const char *)(info->dlpi_addr + ph->p_vaddr), ph->p_memsz,
                             ph->p_align, f->build_id);
    }
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

/* Libraries unloaded (or perhaps unloaded: dlclose may only drop a
 * reference) with frames in recorded stacks, newest first. Bounded: a
 * program that loads and unloads plugins at new addresses forever keeps the
 * first MAX_UNLOADED. */
enum { MAX_UNLOADED = 4096 };
static pthread_mutex_t unloaded_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct hp_unloaded *unloaded;
static unsigned nunloaded;

const struct hp_unloaded *hp_unloaded_list(void)
{
    return __atomic_load_n(&unloaded, __ATOMIC_ACQUIRE);
}

static void keep_unloaded(const char *path, const struct find *f,
                          bool (*recorded_in)(uintptr_t lo, uintptr_t hi))
{
    uint32_t epoch = __atomic_add_fetch(&hp_dl_epoch, 1, __ATOMIC_ACQ_REL);
    if (!recorded_in(f->lo, f->hi))
        return;
    hp_mutex_lock(&unloaded_lock);
    size_t plen = strlen(path) + 1;
    struct hp_unloaded *u = nunloaded < MAX_UNLOADED ? hp_alloc(sizeof *u + plen) : NULL;
    if (u) {
        char *p = (char *)(u + 1);
        memcpy(p, path, plen);
        u->path = p;
        u->bias = f->bias;
        u->lo = f->lo;
        u->hi = f->hi;
        u->offset = f->offset;
        memcpy(u->build_id, f->build_id, sizeof u->build_id);
        u->epoch = epoch;
        u->next = unloaded;
        /* Release: a reader that finds the entry sees it whole. */
        __atomic_store_n(&unloaded, u, __ATOMIC_RELEASE);
        nunloaded++;
    }
    pthread_mutex_unlock(&unloaded_lock);
}

/* Before the real dlclose (interpose/loader.c), inside the loader guard:
 * notes the library's range, path and build id if a recorded stack has a
 * frame in it (recorded_in: the stack table's hp_table_has_pc_in, passed
 * down by the caller, as the table sits above this module). */
void hp_dl_closing(void *handle, bool (*recorded_in)(uintptr_t lo, uintptr_t hi))
{
    struct link_map *lm = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0]) {
        struct find f = {.bias = lm->l_addr, .name = lm->l_name};
        hp_dl_iterate_phdr(find_text, &f);
        if (f.hi > f.lo) {
            bool was_busy = hp_busy_begin();
            /* The name the program gave may be relative ("./plugin.so")
             * and the program may chdir before the dump: the file is
             * named by the directory the loader found it in. */
            char origin[PATH_MAX], path[PATH_MAX + 256];
            const char *name = lm->l_name;
            if (name[0] != '/' && dlinfo(handle, RTLD_DI_ORIGIN, origin) == 0 && origin[0] == '/') {
                int n = snprintf(path, sizeof path, "%s/%s", origin, hp_basename(name));
                if (n > 0 && (size_t)n < sizeof path)
                    name = path;
            }
            keep_unloaded(name, &f, recorded_in);
            hp_busy_end(was_busy);
        }
    }
}

int hp_dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data)
{
    /* Counted, so that the CPU profiler's handler knows it interrupted one
     * (see hp_loader_try_enter: unwinding then could wait for the loader's
     * lock held by its own thread). */
    hp_real_resolve();
    if (!hp_real.dl_iterate_phdr)
        return 0;
    hp_in_dl_iterate++;
    int r = hp_real.dl_iterate_phdr(cb, data);
    hp_in_dl_iterate--;
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

void *hp_dl_open(const char *file, int mode)
{
    /* heapprof symbolizes inside the profiled program, often at its exit:
     * it must not load a network client there, let alone wait on one. So
     * libdw, called by heapprof, is told there is no debuginfod; libdw
     * then looks for debug files only on this machine. */
    if (hp_thread.busy && file && is_debuginfod(file))
        return NULL;
    hp_loader_enter();
    hp_real_resolve();
    void *h = hp_real.dlopen ? hp_real.dlopen(file, mode) : NULL;
    hp_loader_leave();
    return h;
}
