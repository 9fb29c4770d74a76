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
#include <sys/mman.h>

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

bool hp_loader_inside(void)
{
    return guard_depth > 0 || hp_in_dl_iterate > 0;
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

/* ---- objects and symbols without dladdr ----
 *
 * dladdr reads every symbol of the object to find the nearest one below an
 * address: on the C library, some 3,000, which cost a start-up that asked
 * nine of them 0.1 ms. What heapprof asks is narrower: the object that
 * holds an address (its program headers say), and the size of a function
 * it knows by name (one lookup in the object's GNU hash table). */

struct holder {
    uintptr_t addr;
    const char *name;
    size_t (*then)(const struct dl_phdr_info *, void *);
    void *arg;
    size_t result;
};

static int find_holder(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct holder *h = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type != PT_LOAD || h->addr < lo || h->addr - lo >= ph->p_memsz)
            continue;
        h->name = info->dlpi_name;
        if (h->then)
            h->result = h->then(info, h->arg);
        return 1;
    }
    return 0;
}

const char *hp_dl_path_of(const void *addr)
{
    struct holder h = {.addr = (uintptr_t)addr};
    hp_dl_iterate_phdr(find_holder, &h);
    /* The loader's own copy of the name: it lives as long as the object. */
    return h.name && h.name[0] ? h.name : NULL;
}

static uint32_t gnu_hash(const char *s)
{
    uint32_t h = 5381;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = h * 33 + *p;
    return h;
}

struct sym_query {
    const char *name;
    uintptr_t addr;
};

/* In the object the query's address lies in: the size of the symbol of that
 * name defined there, 0 when its table cannot say. The dynamic section's
 * pointers are relocated by the loader on x86-64; an unrelocated one (below
 * the bias) is made absolute here. */
static size_t symbol_size(const struct dl_phdr_info *info, void *arg)
{
    const struct sym_query *q = arg;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn)
        return 0;
    uintptr_t symtab = 0, strtab = 0, gnu = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t p = dyn->d_un.d_ptr;
        if (p && p < info->dlpi_addr)
            p += info->dlpi_addr;
        if (dyn->d_tag == DT_SYMTAB)
            symtab = p;
        else if (dyn->d_tag == DT_STRTAB)
            strtab = p;
        else if (dyn->d_tag == DT_GNU_HASH)
            gnu = p;
    }
    if (!symtab || !strtab || !gnu)
        return 0;
    /* The GNU hash table: nbuckets, symoffset, bloom words, bloom shift,
     * the bloom filter, the buckets, then one chain word per symbol from
     * symoffset on (its hash, the low bit marking a chain's last). */
    const uint32_t *g = (const uint32_t *)gnu;
    uint32_t nbuckets = g[0], symoffset = g[1], nbloom = g[2];
    if (!nbuckets)
        return 0;
    const uint32_t *buckets = (const uint32_t *)((const ElfW(Addr) *)(g + 4) + nbloom);
    const uint32_t *chain = buckets + nbuckets;
    const ElfW(Sym) *syms = (const ElfW(Sym) *)symtab;
    uint32_t h = gnu_hash(q->name);
    for (uint32_t i = buckets[h % nbuckets]; i >= symoffset; i++) {
        uint32_t ch = chain[i - symoffset];
        const ElfW(Sym) *s = &syms[i];
        if ((ch | 1) == (h | 1) && s->st_value && info->dlpi_addr + s->st_value == q->addr &&
            strcmp((const char *)strtab + s->st_name, q->name) == 0)
            return s->st_size;
        if (ch & 1)
            break;
    }
    return 0;
}

size_t hp_dl_function_size(const void *fn, const char *name)
{
    struct sym_query q = {name, (uintptr_t)fn};
    struct holder h = {.addr = (uintptr_t)fn, .then = symbol_size, .arg = &q};
    if (fn)
        hp_dl_iterate_phdr(find_holder, &h);
    return h.result;
}

/* ---- libraries bound deeply ----
 *
 * A library dlopened with RTLD_DEEPBIND looks up its symbols in its own
 * scope first: its free and realloc are the C library's, not heapprof's.
 * Handed a sampled block with a header (interpose/alloc.c), they would get
 * a pointer the allocator never made. So after such a dlopen, the library
 * and every object loaded after it (what that dlopen brought in) have their
 * GOT slots for the named functions pointed at heapprof's: the PLT slots
 * (bound now or lazily later) and the data slots (a function's address
 * taken, or a call without the PLT). Slots in the read-only part after
 * relocation (PT_GNU_RELRO) are made writable for the write. */

#if defined(__x86_64__)
struct relro {
    uintptr_t base, lo, hi;
};

static int find_relro(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct relro *r = data;
    if (info->dlpi_addr != r->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO) {
            /* The pages the loader made read-only: whole pages from the
             * start's, up to the one the end falls in (as glibc rounds). */
            uintptr_t lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            r->lo = lo & ~(uintptr_t)4095;
            r->hi = (lo + info->dlpi_phdr[i].p_memsz) & ~(uintptr_t)4095;
        }
    return 1;
}

static void rebind_slot(uintptr_t slot, void *to, const struct relro *relro)
{
    if (*(void **)slot == to)
        return;
    bool ro = slot >= relro->lo && slot < relro->hi;
    uintptr_t page = slot & ~(uintptr_t)4095;
    if (ro && mprotect((void *)page, 4096, PROT_READ | PROT_WRITE) != 0)
        return;
    __atomic_store_n((void **)slot, to, __ATOMIC_RELEASE);
    if (ro)
        mprotect((void *)page, 4096, PROT_READ);
}

static void rebind_rela(const struct link_map *lm, const ElfW(Rela) * rel, size_t bytes,
                        const ElfW(Sym) * syms, const char *strs, const struct hp_rebind *to, int n,
                        const struct relro *relro)
{
    for (size_t i = 0; i < bytes / sizeof *rel; i++) {
        unsigned long type = ELF64_R_TYPE(rel[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
            continue;
        const char *name = strs + syms[ELF64_R_SYM(rel[i].r_info)].st_name;
        for (int k = 0; k < n; k++)
            if (!strcmp(name, to[k].name))
                rebind_slot(lm->l_addr + rel[i].r_offset, to[k].fn, relro);
    }
}

static void rebind_object(const struct link_map *lm, const struct hp_rebind *to, int n)
{
    const ElfW(Sym) *syms = NULL;
    const char *strs = NULL;
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmpsz = 0, relasz = 0;
    for (const ElfW(Dyn) *d = lm->l_ld; d && d->d_tag != DT_NULL; d++) {
        /* glibc relocates these in place on x86-64; not everywhere. */
        uintptr_t ptr = d->d_un.d_ptr < lm->l_addr ? d->d_un.d_ptr + lm->l_addr : d->d_un.d_ptr;
        switch (d->d_tag) {
        case DT_SYMTAB:
            syms = (const ElfW(Sym) *)ptr;
            break;
        case DT_STRTAB:
            strs = (const char *)ptr;
            break;
        case DT_JMPREL:
            jmprel = (const ElfW(Rela) *)ptr;
            break;
        case DT_PLTRELSZ:
            jmpsz = d->d_un.d_val;
            break;
        case DT_RELA:
            rela = (const ElfW(Rela) *)ptr;
            break;
        case DT_RELASZ:
            relasz = d->d_un.d_val;
            break;
        default:
            break;
        }
    }
    if (!syms || !strs)
        return;
    struct relro relro = {.base = lm->l_addr};
    hp_real.dl_iterate_phdr(find_relro, &relro);
    if (jmprel)
        rebind_rela(lm, jmprel, jmpsz, syms, strs, to, n, &relro);
    if (rela)
        rebind_rela(lm, rela, relasz, syms, strs, to, n, &relro);
}

void hp_dl_rebind(void *handle, const struct hp_rebind *to, int n)
{
    struct link_map *lm = NULL;
    if (!handle || dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0)
        return;
    for (; lm; lm = lm->l_next)
        rebind_object(lm, to, n);
}
#else
void hp_dl_rebind(void *handle, const struct hp_rebind *to, int n)
{
    (void)handle, (void)to, (void)n;
}
#endif
