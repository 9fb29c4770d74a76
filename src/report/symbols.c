/* Symbolization at dump time: addresses to functions, files and lines, and
 * the list of executable mappings.
 *
 * Go 1.19's pprof cannot symbolize C shared libraries itself, so the profile
 * carries its own symbols. elfutils' libdwfl reads every module of this
 * process: ELF symbol tables for names (static functions included), DWARF
 * for files, lines and inlined frames, each inlined call becoming a Line of
 * its own, innermost first, as pprof expects. C++ names are demangled with
 * the __cxa_demangle of the libstdc++ the program already has loaded; a C
 * program has nothing to demangle.
 *
 * Two kinds of code have no symbol of their own: PLT stubs, named as
 * objdump names them (rand@plt, plt_entries), and the vDSO, named from its
 * own symbol table in memory (__vdso_clock_gettime, vdso_lookup).
 *
 * This runs with the thread's busy flag set: libdw's own allocations go to
 * the real allocator and are not recorded.
 */
#define _GNU_SOURCE
#include "symbols.h"
#include "iface.h"
#include "scopes.h"

#include "dw.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);

/* What libdw and libstdc++ allocate for this thread (busy: not recorded)
 * is theirs to allocate and ours to give back, through the free() the
 * program's allocator answers to. Goes through heapprof's own free hook
 * (record/hooks.c), which finds it in no live set; the recording half does
 * not share its table of the real allocator's entry points (hp_real) with
 * this one yet. */
static void lib_free(void *p)
{
    hp_real.free(p);
}

struct cache_entry {
    UT_hash_handle hh;
    uintptr_t pc;
    struct hp_symbolized sym;
};

/* A library unloaded with dlclose (record/dl.c): its mapping in the
 * profile, and a symbolizer of its own for its file, made at the first
 * lookup that needs it. */
struct retained {
    const struct hp_unloaded *u;
    int index;
    struct hp_symbolizer *sub;
    bool tried;
};
struct retained_entry {
    UT_hash_handle hh;
    struct {
        uintptr_t pc;
        uint32_t epoch;
    } key;
    struct hp_symbolized sym;
};

struct hp_symbolizer {
    struct hp_arena *arena;
    Dwfl *dwfl; /* opened at the first lookup (sym_dwfl) */
    bool dwfl_tried;
    struct hp_mapping *maps;
    int nmaps;
    struct cache_entry *cache;
    demangle_fn demangle;
    struct retained *retained; /* unloaded libraries */
    int nretained;
    struct retained_entry *rcache; /* their answers, by (pc, epoch) */
    struct {
        Dwfl_Module *mod;
        bool own;
    } dwarf_seen[256];
    int ndwarf_seen;
    uintptr_t vdso_lo, vdso_hi; /* the [vdso] mapping, if any */
    struct hp_scopes *scopes;   /* the units whose inlined calls were looked up */
};

/* Separate debug files (/usr/lib/debug, .gnu_debuglink) are found as usual,
 * for their symbol tables: a stripped C library names its internal
 * functions only there. Their DWARF (files, lines, inlined frames) is read
 * only with HEAPPROF_DEBUGINFO=1, because for a C library's -dbg package it
 * means decompressing megabytes at every dump (measured: the 10,000-stack
 * dump went from 16 to 52 ms of CPU, and an exit dump added MiBs of RSS).
 * DWARF kept in the binaries themselves is always read. */
/* (hp_dw_proc_callbacks: libdwfl's own finders for this process.) */

/* Whether the module's own file has DWARF (cached per module). */
static bool own_dwarf(struct hp_symbolizer *s, Dwfl_Module *mod)
{
    for (int i = 0; i < s->ndwarf_seen; i++)
        if (s->dwarf_seen[i].mod == mod)
            return s->dwarf_seen[i].own;
    bool own = false;
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t shstrndx;
    if (elf && elf_getshdrstrndx(elf, &shstrndx) == 0) {
        for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn && !own; scn = elf_nextscn(elf, scn)) {
            GElf_Shdr sh;
            const char *name =
                gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
            own = name && (!strcmp(name, ".debug_info") || !strcmp(name, ".zdebug_info"));
        }
    }
    if (s->ndwarf_seen < (int)(sizeof s->dwarf_seen / sizeof s->dwarf_seen[0])) {
        s->dwarf_seen[s->ndwarf_seen].mod = mod;
        s->dwarf_seen[s->ndwarf_seen++].own = own;
    }
    return own;
}

/* The build ids of the loaded objects, read from their PT_NOTE segments in
 * memory: no file is opened, so a profile with few samples does not make
 * libdwfl open every library of the process for its build id. */
struct loaded_id {
    uintptr_t lo, hi; /* the object's PT_LOAD span */
    const char *hex;
};
struct loaded_ids {
    struct hp_arena *arena;
    struct loaded_id *ids;
    int n, cap;
};

static const char *note_build_id(struct hp_arena *a, const char *notes, size_t len, size_t align)
{
    char hex[129];
    return hp_note_build_id(notes, len, align, hex) ? hp_arena_strdup(a, hex) : NULL;
}

static int collect_id(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct loaded_ids *l = data;
    if (l->n == l->cap)
        return 1; /* the array was sized from a first count */
    struct loaded_id id = {UINTPTR_MAX, 0, NULL};
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t at = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD) {
            id.lo = at < id.lo ? at : id.lo;
            id.hi = at + ph->p_memsz > id.hi ? at + ph->p_memsz : id.hi;
        } else if (ph->p_type == PT_NOTE && !id.hex) {
            id.hex = note_build_id(l->arena, (const char *)at, ph->p_memsz, ph->p_align);
        }
    }
    if (id.hex && id.lo < id.hi)
        l->ids[l->n++] = id;
    return 0;
}

static int count_objects(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    (*(int *)data)++;
    return 0;
}

/* The build ids of every object loaded now, in the arena. */
static void loaded_ids_read(struct loaded_ids *ids, struct hp_arena *a)
{
    memset(ids, 0, sizeof *ids);
    ids->arena = a;
    hp_dl_iterate_phdr(count_objects, &ids->cap);
    ids->ids = ids->cap ? hp_arena_alloc(a, (size_t)ids->cap * sizeof *ids->ids) : NULL;
    if (ids->ids)
        hp_dl_iterate_phdr(collect_id, ids);
}

/* The build id of the object loaded at addr, or "". */
static const char *loaded_ids_find(const struct loaded_ids *ids, uintptr_t addr)
{
    for (int i = 0; i < ids->n; i++)
        if (addr >= ids->ids[i].lo && addr < ids->ids[i].hi)
            return ids->ids[i].hex;
    return "";
}

/* The executable mappings of /proc/self/maps, the main executable first, as
 * Go's runtime lists them. */
/* One line of /proc/self/maps, "lo-hi perms offset dev inode   path":
 * false if it does not read so; pathpos is where the path starts (the
 * line's end when it has none). By hand: sscanf, which builds a stream at
 * each call, took 18 us for the sixty lines of a profiled process's maps,
 * this 4 us (measured in a loop, caches warm). */
static bool maps_line(const char *line, unsigned long *lo, unsigned long *hi, char perms[8],
                      unsigned long *off, int *pathpos)
{
    char *end;
    const char *p = line;
    *lo = strtoul(p, &end, 16);
    if (end == p || *end != '-')
        return false;
    p = end + 1;
    *hi = strtoul(p, &end, 16);
    if (end == p || *end != ' ')
        return false;
    p = end + 1;
    int n = 0;
    while (*p && *p != ' ' && n < 7)
        perms[n++] = *p++;
    perms[n] = 0;
    if (n < 4 || *p != ' ')
        return false;
    *off = strtoul(++p, &end, 16);
    if (end == p || *end != ' ')
        return false;
    p = end + 1;
    for (int field = 0; field < 2; field++) { /* device, inode */
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    *pathpos = (int)(p - line);
    return true;
}

static void load_mappings(struct hp_symbolizer *s)
{
    char *text = hp_read_file(s->arena, "/proc/self/maps", NULL);
    if (!text)
        return;
    char exe[PATH_MAX];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[el > 0 ? el : 0] = 0;
    int cap = 0;
    for (char *p = text; *p; p++)
        cap += *p == '\n';
    s->maps = hp_arena_alloc(s->arena, (size_t)(cap + 1) * sizeof *s->maps);
    if (!s->maps)
        return;
    struct loaded_ids ids;
    loaded_ids_read(&ids, s->arena);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        unsigned long lo, hi, off;
        char perms[8];
        int pathpos = 0;
        bool got = maps_line(line, &lo, &hi, perms, &off, &pathpos);
        if (got && !strcmp(line + pathpos, "[vdso]")) {
            s->vdso_lo = lo;
            s->vdso_hi = hi;
        }
        if (got && perms[2] == 'x' && line[pathpos] == '/') {
            struct hp_mapping *m = &s->maps[s->nmaps++];
            m->start = lo;
            m->limit = hi;
            m->offset = off;
            m->file = hp_arena_strdup(s->arena, line + pathpos);
            if (!m->file)
                m->file = "";
            m->build_id = loaded_ids_find(&ids, lo);
            if (exe[0] && !strcmp(m->file, exe) && s->nmaps > 1) {
                /* Move the main executable's mapping before the others,
                 * keeping its own order among several. */
                int first_other = 0;
                while (first_other < s->nmaps - 1 && !strcmp(s->maps[first_other].file, exe))
                    first_other++;
                struct hp_mapping t = *m;
                memmove(&s->maps[first_other + 1], &s->maps[first_other],
                        (size_t)(s->nmaps - 1 - first_other) * sizeof *m);
                s->maps[first_other] = t;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    /* Named as the user ran it (a symlink), not as the loader resolved it. */
    const char *run_as = hp_run_as();
    for (int i = 0; run_as && exe[0] && i < s->nmaps; i++)
        if (!strcmp(s->maps[i].file, exe))
            s->maps[i].file = run_as;
}

/* Unloaded libraries get mappings of their own after the live ones, unless
 * the same file is still mapped at the same place (a dlclose that did not
 * unload). */
/* A mapping for each library unloaded since start-up (record/dl.c), but
 * for one that is loaded again at the same place. */
static void add_retained_mappings(struct hp_symbolizer *s)
{
    int n = 0;
    for (const struct hp_unloaded *u = hp_unloaded_list(); u; u = u->next)
        n++;
    if (!n)
        return;
    struct hp_mapping *maps = hp_arena_alloc(s->arena, (size_t)(s->nmaps + n) * sizeof *maps);
    s->retained = hp_arena_alloc(s->arena, (size_t)n * sizeof *s->retained);
    if (!maps || !s->retained)
        return;
    if (s->nmaps)
        memcpy(maps, s->maps, (size_t)s->nmaps * sizeof *maps);
    s->maps = maps;
    for (const struct hp_unloaded *u = hp_unloaded_list(); u && s->nretained < n; u = u->next) {
        int idx = -1;
        for (int i = 0; i < s->nmaps && idx < 0; i++)
            if (s->maps[i].start == u->lo && s->maps[i].limit == u->hi &&
                !strcmp(s->maps[i].file, u->path))
                idx = i;
        if (idx < 0) {
            idx = s->nmaps++;
            struct hp_mapping *m = &s->maps[idx];
            memset(m, 0, sizeof *m);
            m->start = u->lo;
            m->limit = u->hi;
            m->offset = u->offset;
            m->file = u->path;
            m->build_id = u->build_id;
        }
        struct retained *r = &s->retained[s->nretained++];
        r->u = u;
        r->index = idx;
    }
}

/* libdwfl's view of this process, made at the first lookup: a profile
 * without samples needs none. */
static Dwfl *sym_dwfl(struct hp_symbolizer *s)
{
    if (s->dwfl_tried)
        return s->dwfl;
    s->dwfl_tried = true;
    if (!hp_dw_load())
        return NULL;
    s->dwfl = dwfl_begin(hp_dw_proc_callbacks());
    if (s->dwfl) {
        dwfl_report_begin(s->dwfl);
        if (dwfl_linux_proc_report(s->dwfl, getpid()) != 0 ||
            dwfl_report_end(s->dwfl, NULL, NULL) != 0) {
            dwfl_end(s->dwfl);
            s->dwfl = NULL;
        }
    }
    return s->dwfl;
}

struct hp_symbolizer *hp_sym_open(struct hp_arena *a)
{
    struct hp_symbolizer *s = hp_arena_alloc(a, sizeof *s);
    if (!s)
        return NULL;
    s->arena = a;
    s->demangle = (demangle_fn)dlsym(RTLD_DEFAULT, "__cxa_demangle");
    s->scopes = hp_scopes_begin(a);
    load_mappings(s);
    add_retained_mappings(s);
    return s;
}

void hp_sym_close(struct hp_symbolizer *s)
{
    if (!s)
        return;
    struct cache_entry *e, *tmp;
    HASH_ITER(hh, s->cache, e, tmp)
    {
        HASH_DEL(s->cache, e);
        hp_free(e, sizeof *e);
    }
    struct retained_entry *re, *rtmp;
    HASH_ITER(hh, s->rcache, re, rtmp)
    {
        HASH_DEL(s->rcache, re);
        hp_free(re, sizeof *re);
    }
    for (int i = 0; i < s->nretained; i++)
        if (s->retained[i].sub && s->retained[i].sub->dwfl)
            dwfl_end(s->retained[i].sub->dwfl);
    if (s->dwfl)
        dwfl_end(s->dwfl);
    hp_scopes_end(s->scopes);
}

int hp_sym_mappings(struct hp_symbolizer *s, struct hp_mapping **out)
{
    if (!s) {
        *out = NULL;
        return 0;
    }
    *out = s->maps;
    return s->nmaps;
}

static int mapping_of(struct hp_symbolizer *s, uintptr_t pc)
{
    for (int i = 0; i < s->nmaps; i++)
        if (pc >= s->maps[i].start && pc < s->maps[i].limit)
            return i;
    return -1;
}

/* Drops the parameter list (and any qualifiers after it) from a demangled
 * name, as pprof's own demangler does by default: `ns::f(int) const` reads
 * `ns::f`. The full signature stays in system_name, mangled. */
static void drop_params(char *d)
{
    size_t n = strlen(d);
    char *close = strrchr(d, ')');
    if (!close)
        return;
    /* Only qualifiers may follow the parameter list. */
    for (const char *q = close + 1; *q; q++)
        if (!strchr(" constvlaiderf&", *q))
            return;
    int depth = 0;
    for (char *p = close; p >= d; p--) {
        if (*p == ')')
            depth++;
        else if (*p == '(' && --depth == 0) {
            if (p > d && p < d + n)
                *p = 0;
            return;
        }
    }
}

static const char *demangled(struct hp_symbolizer *s, const char *name)
{
    if (!name)
        return NULL;
    if (s->demangle && name[0] == '_' && name[1] == 'Z') {
        int status = -1;
        char *d = s->demangle(name, NULL, NULL, &status);
        if (d && status == 0) {
            drop_params(d);
            const char *r = hp_arena_strdup(s->arena, d);
            lib_free(d);
            if (r)
                return r;
        } else if (d) {
            lib_free(d);
        }
    }
    return hp_arena_strdup(s->arena, name);
}

/* DWARF records files relative to the compilation directory (meson writes
 * ../src/x.c); the profile and the leak summary give absolute, normalised
 * paths so that they can be opened from anywhere. */
static const char *absolute(struct hp_symbolizer *s, const char *dir, const char *file)
{
    if (!file)
        return NULL;
    char buf[PATH_MAX];
    /* A relative compilation directory (Debian's libc is built with its
     * paths remapped to ./...) cannot anchor anything: keep the file alone. */
    if (file[0] == '/' || !dir || dir[0] != '/')
        snprintf(buf, sizeof buf, "%s", file);
    else
        snprintf(buf, sizeof buf, "%s/%s", dir, file);
    /* Lexical normalisation: drop "." and "//", fold "x/..". */
    bool abs = buf[0] == '/';
    char out[PATH_MAX];
    size_t o = 0;
    for (char *p = buf; *p;) {
        while (*p == '/')
            p++;
        char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
        } else if (len == 2 && p[0] == '.' && p[1] == '.' && o > 0 &&
                   !(o >= 2 && out[o - 1] == '.' && out[o - 2] == '.')) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else if (o + len + 2 < sizeof out) {
            if (o > 0 || abs)
                out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p = e;
    }
    if (o == 0)
        out[o++] = abs ? '/' : '.';
    out[o] = 0;
    return hp_arena_strdup(s->arena, out);
}

/* The linkage name of a function DIE (following abstract origins), or its
 * plain name. */
static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
    if (!n)
        n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
    if (!n)
        n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));
    return n;
}

static void add_line(struct hp_symbolizer *s, struct hp_frame_line *lines, int *n, int max,
                     const char *sysname, const char *file, int line)
{
    if (*n >= max || !sysname)
        return;
    struct hp_frame_line *l = &lines[(*n)++];
    l->system_name = hp_arena_strdup(s->arena, sysname);
    l->function = demangled(s, sysname);
    l->file = file; /* already in the arena */
    l->line = line;
}

enum { MAX_INLINE = 16 };

/* A module's symbol table sorted by address, built the first time an
 * address in the module is looked up. libdwfl's own dwfl_module_addrinfo
 * reads the whole table at every call: with a C library's full symbol table
 * (libc6-dbg) that made an exit dump of a short Python run cost milliseconds.
 * The choice is libdwfl's, among code symbols (functions, ifuncs, untyped
 * labels): the symbol that contains the address and starts closest to it, a
 * global before a weak before a local one; a symbol without a size only when
 * no sized one contains the address. */
struct sym_entry {
    uint64_t lo;
    const char *name;
    uint32_t size; /* 0: no size */
    unsigned char bind, type;
};
struct sym_index {
    int n;
    struct sym_entry *e;
    uint64_t *max_hi; /* max_hi[i]: the highest end among e[0..i] */
};
static struct sym_index no_index; /* building failed: ask libdwfl */

static int bind_rank(unsigned char bind)
{
    return bind == STB_GLOBAL || bind == STB_GNU_UNIQUE ? 3 : bind == STB_WEAK ? 2 : 1;
}

static uint64_t entry_hi(const struct sym_entry *e)
{
    return e->lo + e->size;
}

/* The sort key: the address, then the stronger binding first. */
static uint64_t sort_key_of(const struct sym_entry *e)
{
    return (e->lo << 2) | (uint64_t)(3 - bind_rank(e->bind));
}

/* Least-significant-digit radix sort by sort_key_of, less its minimum: as
 * many byte-wide passes as the module's span needs (three or four for a C
 * library), linear in n, where qsort took about a millisecond per module. */
static void sort_entries(struct sym_entry *e, struct sym_entry *tmp, size_t n)
{
    if (n < 2)
        return;
    uint64_t lo = sort_key_of(&e[0]), hi = lo;
    for (size_t i = 1; i < n; i++) {
        uint64_t k = sort_key_of(&e[i]);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    for (unsigned shift = 0; shift < 64 && ((hi - lo) >> shift) != 0; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[(((sort_key_of(&e[i]) - lo) >> shift) & 0xff) + 1]++;
        for (int d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            tmp[count[((sort_key_of(&e[i]) - lo) >> shift) & 0xff]++] = e[i];
        memcpy(e, tmp, n * sizeof *e);
    }
}

/* ---- PLT stubs ----
 *
 * No symbol covers the PLT, so an address in a stub (a CPU sample that
 * lands on the jump to rand) would be named after the closest sizeless
 * symbol below it, _init. Each stub is named as objdump names it,
 * rand@plt, from the relocation it jumps through: on x86-64, the GOT slot
 * of its `jmp *slot(%rip)` (after an endbr64 and a bnd prefix, if any)
 * found among the JUMP_SLOT (.rela.plt) and GLOB_DAT (.rela.dyn, for
 * .plt.got) relocations, or the .rela.plt index its `push` gives (a lazy
 * stub of an IBT PLT). Elsewhere the stubs of .plt are taken to follow its
 * header in .rela.plt's order, 16 bytes each (aarch64, i386). A stub that
 * names nothing (the PLT's first entry, an IRELATIVE slot) is named after
 * its section, .plt, as objdump's <.plt>. */
struct got_slot {
    uint64_t at;
    const char *name;
};

struct plt_relocs {
    struct got_slot *slots; /* unbiased GOT addresses, sorted (by_slot) */
    int nslots;
    const char **jump; /* .rela.plt's symbols, in order */
    int njump;
};

/* The symbol names of one relocation section's entries: all of .rela.plt's
 * (jump), only the GOT slots of .rela.dyn (GLOB_DAT), not its many
 * relative relocations. */
static void read_relocs(struct hp_symbolizer *s, Elf *elf, Elf_Scn *scn, struct plt_relocs *r,
                        bool jump)
{
    GElf_Shdr sh;
    Elf_Data *d = gelf_getshdr(scn, &sh) ? elf_getdata(scn, NULL) : NULL;
    if (!d || sh.sh_type != SHT_RELA || !sh.sh_entsize)
        return;
    Elf_Scn *symscn = elf_getscn(elf, sh.sh_link);
    GElf_Shdr symsh;
    Elf_Data *syms = symscn && gelf_getshdr(symscn, &symsh) ? elf_getdata(symscn, NULL) : NULL;
    int n = (int)(sh.sh_size / sh.sh_entsize);
    struct got_slot *slots = hp_arena_alloc(s->arena, (size_t)(r->nslots + n + 1) * sizeof *slots);
    const char **names = jump ? hp_arena_alloc(s->arena, (size_t)(n + 1) * sizeof *names) : NULL;
    if (!slots || (jump && !names) || !syms)
        return;
    if (r->nslots)
        memcpy(slots, r->slots, (size_t)r->nslots * sizeof *slots);
    r->slots = slots;
    for (int i = 0; i < n; i++) {
        GElf_Rela rela;
        GElf_Sym sym;
        const char *name = NULL;
        if (gelf_getrela(d, i, &rela) && GELF_R_SYM(rela.r_info) &&
            (jump || GELF_R_TYPE(rela.r_info) == R_X86_64_GLOB_DAT) &&
            gelf_getsym(syms, (int)GELF_R_SYM(rela.r_info), &sym) && sym.st_name)
            name = elf_strptr(elf, symsh.sh_link, sym.st_name);
        if (jump)
            names[i] = name;
        if (name)
            r->slots[r->nslots++] = (struct got_slot){rela.r_offset, name};
    }
    if (jump) {
        r->jump = names;
        r->njump = n;
    }
}

static int by_slot(const void *x, const void *y)
{
    const struct got_slot *a = x, *b = y;
    return a->at < b->at ? -1 : a->at > b->at;
}

static const char *slot_name(const struct plt_relocs *r, uint64_t at)
{
    struct got_slot key = {at, NULL};
    const struct got_slot *f =
        r->nslots ? bsearch(&key, r->slots, (size_t)r->nslots, sizeof key, by_slot) : NULL;
    return f ? f->name : NULL;
}

/* The symbol an x86-64 stub at (unbiased) address a jumps to, or NULL. */
static const char *x86_64_stub(const struct plt_relocs *r, uint64_t a, const uint8_t *b, size_t len)
{
    size_t j = 0;
    if (len >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa)
        j = 4; /* endbr64 */
    if (j < len && b[j] == 0xf2)
        j++; /* bnd */
    if (j + 6 <= len && b[j] == 0xff && b[j + 1] == 0x25) {
        int32_t disp;
        memcpy(&disp, b + j + 2, sizeof disp);
        return slot_name(r, a + j + 6 + (uint64_t)(int64_t)disp);
    }
    if (j + 5 <= len && b[j] == 0x68) {
        uint32_t idx;
        memcpy(&idx, b + j + 1, sizeof idx);
        return idx < (uint32_t)r->njump ? r->jump[idx] : NULL;
    }
    return NULL;
}

/* Entries for the module's PLT stubs and sections, their addresses biased
 * as the symbol table's, into out (room for max); returns how many. */
static int plt_entries(struct hp_symbolizer *s, Dwfl_Module *mod, struct sym_entry *out, int max)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    GElf_Ehdr eh;
    size_t shstrndx;
    if (!elf || !gelf_getehdr(elf, &eh) || elf_getshdrstrndx(elf, &shstrndx) != 0)
        return 0;
    struct plt_relocs r = {0};
    Elf_Scn *plts[3] = {NULL, NULL, NULL};
    const char *plt_names[3] = {".plt", ".plt.sec", ".plt.got"};
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        const char *name = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
        if (!name)
            continue;
        if (!strcmp(name, ".rela.plt"))
            read_relocs(s, elf, scn, &r, true);
        else if (!strcmp(name, ".rela.dyn") && eh.e_machine == EM_X86_64)
            read_relocs(s, elf, scn, &r, false);
        for (int k = 0; k < 3; k++)
            if (!strcmp(name, plt_names[k]) && sh.sh_type == SHT_PROGBITS)
                plts[k] = scn;
    }
    if (r.nslots)
        qsort(r.slots, (size_t)r.nslots, sizeof *r.slots, by_slot);
    int n = 0;
    for (int k = 0; k < 3; k++) {
        GElf_Shdr sh;
        Elf_Data *d = plts[k] && gelf_getshdr(plts[k], &sh) ? elf_getdata(plts[k], NULL) : NULL;
        if (!d || !d->d_buf || d->d_size < sh.sh_size || sh.sh_size > UINT32_MAX || n >= max)
            continue;
        out[n++] = (struct sym_entry){sh.sh_addr + bias, plt_names[k], (uint32_t)sh.sh_size,
                                      STB_LOCAL, STT_NOTYPE};
        const uint8_t *bytes = d->d_buf;
        uint64_t size = sh.sh_size, step = k != 2 ? 16 : sh.sh_entsize >= 8 ? sh.sh_entsize : 8;
        uint64_t first = 0;
        if (eh.e_machine != EM_X86_64) {
            /* The stubs of .plt follow its header, in .rela.plt's order. */
            if (k != 0 || !r.njump || size < (uint64_t)r.njump * 16)
                continue;
            first = size - (uint64_t)r.njump * 16;
        }
        for (uint64_t o = first, i = 0; o + step <= size && n < max; o += step, i++) {
            const char *target = eh.e_machine == EM_X86_64
                                     ? x86_64_stub(&r, sh.sh_addr + o, bytes + o, step)
                                     : r.jump[i];
            char name[600];
            if (!target || snprintf(name, sizeof name, "%s@plt", target) >= (int)sizeof name)
                continue;
            const char *kept = hp_arena_strdup(s->arena, name);
            if (kept)
                out[n++] = (struct sym_entry){sh.sh_addr + bias + o, kept, (uint32_t)step,
                                              STB_GLOBAL, STT_FUNC};
        }
    }
    return n;
}

/* Room for plt_entries: a stub per 8 bytes of the PLT sections, and the
 * sections themselves. */
static int plt_room(Dwfl_Module *mod)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t shstrndx;
    if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
        return 0;
    uint64_t room = 0;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        const char *name = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
        if (name && !strncmp(name, ".plt", 4) && (!name[4] || name[4] == '.'))
            room += sh.sh_size / 8 + 1;
    }
    return room < (1u << 20) ? (int)room : 1 << 20;
}

static struct sym_index *sym_index_of(struct hp_symbolizer *s, Dwfl_Module *mod)
{
    void **slot = NULL;
    dwfl_module_info(mod, &slot, NULL, NULL, NULL, NULL, NULL, NULL);
    if (!slot)
        return &no_index;
    if (*slot)
        return *slot;
    *slot = &no_index;
    int nsyms = dwfl_module_getsymtab(mod);
    int nplt = plt_room(mod);
    if (nsyms < 1)
        nsyms = 1;
    struct sym_index *x = hp_arena_alloc(s->arena, sizeof *x);
    if (nsyms + nplt <= 1 || !x)
        return &no_index;
    size_t cap = (size_t)(nsyms + nplt);
    struct sym_entry *tmp = hp_arena_alloc(s->arena, cap * sizeof *tmp);
    x->e = hp_arena_alloc(s->arena, cap * sizeof *x->e);
    x->max_hi = hp_arena_alloc(s->arena, cap * sizeof *x->max_hi);
    if (!tmp || !x->e || !x->max_hi)
        return &no_index;
    int n = plt_entries(s, mod, x->e, nplt);
    for (int i = 1; i < nsyms; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        GElf_Word shndx;
        const char *name = dwfl_module_getsym_info(mod, i, &sym, &addr, &shndx, NULL, NULL);
        int type = GELF_ST_TYPE(sym.st_info);
        /* Code only. The name is not read here: touching every string
         * would fault in the whole string table. */
        if (!name || sym.st_name == 0 || shndx == SHN_UNDEF || shndx == (GElf_Word)-1 ||
            (type != STT_FUNC && type != STT_GNU_IFUNC && type != STT_NOTYPE) ||
            sym.st_size > UINT32_MAX)
            continue;
        struct sym_entry *e = &x->e[n++];
        e->lo = addr;
        e->name = name;
        e->size = (uint32_t)sym.st_size;
        e->bind = (unsigned char)GELF_ST_BIND(sym.st_info);
        e->type = (unsigned char)type;
    }
    sort_entries(x->e, tmp, (size_t)n);
    uint64_t m = 0;
    for (int i = 0; i < n; i++)
        x->max_hi[i] = m = entry_hi(&x->e[i]) > m ? entry_hi(&x->e[i]) : m;
    x->n = n;
    *slot = x;
    return x;
}

/* The index of the symbol naming addr, or -1. */
static int sym_find(const struct sym_index *x, uint64_t addr)
{
    int lo = 0, hi = x->n; /* first entry starting above addr */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (x->e[mid].lo <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    int last = lo - 1;
    for (int i = last; i >= 0 && x->max_hi[i] > addr; i--) {
        if (entry_hi(&x->e[i]) <= addr)
            continue;
        /* The closest start; at one address, the strongest binding that
         * also contains addr (they are sorted strongest first). */
        for (int j = i - 1; j >= 0 && x->e[j].lo == x->e[i].lo; j--)
            if (entry_hi(&x->e[j]) > addr)
                i = j;
        return i;
    }
    /* No sized symbol contains addr. A sizeless one names it if it is the
     * closest below and no sized symbol ends between them. */
    if (last < 0 || x->e[last].size != 0 || x->max_hi[last] > x->e[last].lo)
        return -1;
    while (last > 0 && x->e[last - 1].lo == x->e[last].lo)
        last--;
    return last;
}

/* The name for addr from the index, with glibc's public alias preferred
 * (see lookup). NULL when no symbol names it. */
static const char *sym_name(const struct sym_index *x, uint64_t addr)
{
    int i = sym_find(x, addr);
    if (i < 0)
        return NULL;
    const struct sym_entry *e = &x->e[i];
    if (e->name[0] == '_' && e->name[1] == '_' && e->type == STT_FUNC) {
        int first = i;
        while (first > 0 && x->e[first - 1].lo == e->lo)
            first--;
        for (int j = first; j < x->n && x->e[j].lo == e->lo; j++) {
            const struct sym_entry *o = &x->e[j];
            if (o->name[0] != '_' && o->type == STT_FUNC && o->bind != STB_LOCAL)
                return o->name;
        }
    }
    return e->name;
}

/* ---- the vDSO ----
 *
 * The kernel's code mapped into every process ([vdso]: clock_gettime,
 * gettimeofday, time, getcpu) has no file, so a frame there would have no
 * name. Its ELF image is in memory (getauxval(AT_SYSINFO_EHDR)), section
 * headers included: the function is the symbol of its .dynsym that holds
 * the address, the global name before the weak alias (__vdso_clock_gettime
 * before clock_gettime, as perf shows it: the frame below it is the C
 * library's clock_gettime); "[vdso]" when none does. Everything read is
 * checked to lie inside the mapping. */
static const char *vdso_name(const struct hp_symbolizer *s, uintptr_t addr)
{
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    size_t span = s->vdso_hi - s->vdso_lo;
    const ElfW(Ehdr) *eh = (const void *)base;
    if (base != s->vdso_lo || span < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_phentsize != sizeof(ElfW(Phdr)) ||
        eh->e_shoff > span || eh->e_shnum > (span - eh->e_shoff) / sizeof(ElfW(Shdr)) ||
        eh->e_phoff > span || eh->e_phnum > (span - eh->e_phoff) / sizeof(ElfW(Phdr)))
        return NULL;
    /* Symbol values are virtual addresses: the first PT_LOAD's is at base. */
    const ElfW(Phdr) *ph = (const void *)(base + eh->e_phoff);
    uintptr_t bias = base;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD) {
            bias = base - ph[i].p_vaddr;
            break;
        }
    const ElfW(Shdr) *sh = (const void *)(base + eh->e_shoff);
    const char *best = NULL;
    int best_rank = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_entsize != sizeof(ElfW(Sym)) ||
            sh[i].sh_link >= eh->e_shnum || sh[i].sh_offset > span ||
            sh[i].sh_size > span - sh[i].sh_offset)
            continue;
        const ElfW(Shdr) *str = &sh[sh[i].sh_link];
        if (str->sh_offset > span || str->sh_size > span - str->sh_offset || !str->sh_size)
            continue;
        const char *strs = (const char *)(base + str->sh_offset);
        const ElfW(Sym) *sym = (const void *)(base + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof *sym;
        for (size_t k = 1; k < n; k++) {
            uintptr_t lo = bias + sym[k].st_value;
            int rank = bind_rank(GELF_ST_BIND(sym[k].st_info));
            if (GELF_ST_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_shndx == SHN_UNDEF ||
                addr < lo || addr - lo >= sym[k].st_size || sym[k].st_name >= str->sh_size ||
                !memchr(strs + sym[k].st_name, 0, str->sh_size - sym[k].st_name) ||
                rank <= best_rank)
                continue;
            best = strs + sym[k].st_name;
            best_rank = rank;
        }
    }
    return best;
}

static void vdso_lookup(struct hp_symbolizer *s, uintptr_t addr, struct hp_symbolized *out)
{
    const char *name = vdso_name(s, addr);
    struct hp_frame_line *l = hp_arena_alloc(s->arena, sizeof *l);
    if (!l)
        return;
    l->system_name = hp_arena_strdup(s->arena, name ? name : "[vdso]");
    l->function = l->system_name;
    if (!l->function)
        return;
    out->lines = l;
    out->nlines = 1;
}

static void lookup(struct hp_symbolizer *s, uintptr_t pc, struct hp_symbolized *out)
{
    memset(out, 0, sizeof *out);
    out->mapping = mapping_of(s, pc);
    if (pc - 1 >= s->vdso_lo && pc - 1 < s->vdso_hi) {
        vdso_lookup(s, pc - 1, out);
        return;
    }
    Dwfl *dwfl = sym_dwfl(s);
    if (!dwfl)
        return;
    /* pc is a return address; pc - 1 lies in the call instruction. */
    Dwarf_Addr addr = pc - 1;
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, addr);
    if (!mod)
        return;
    struct hp_frame_line lines[MAX_INLINE];
    int n = 0;

    /* glibc's functions are defined under internal names with the public
     * one as an alias (__strdup and strdup): show the name the program
     * called. */
    const char *symname;
    struct sym_index *x = sym_index_of(s, mod);
    GElf_Off symoff;
    GElf_Sym sym;
    if (x != &no_index)
        symname = sym_name(x, addr);
    else if ((symname = dwfl_module_addrinfo(mod, addr, &symoff, &sym, NULL, NULL, NULL)) &&
             symname[0] == '_' && symname[1] == '_' && GELF_ST_TYPE(sym.st_info) == STT_FUNC) {
        GElf_Addr start = addr - symoff;
        int nsyms = dwfl_module_getsymtab(mod);
        for (int i = 1; i < nsyms; i++) {
            GElf_Sym other;
            GElf_Addr oaddr;
            const char *oname = dwfl_module_getsym_info(mod, i, &other, &oaddr, NULL, NULL, NULL);
            if (oname && oname[0] != '_' && oaddr == start &&
                GELF_ST_TYPE(other.st_info) == STT_FUNC &&
                GELF_ST_BIND(other.st_info) != STB_LOCAL) {
                symname = oname;
                break;
            }
        }
    }
    char unversioned[512];
    const char *at = symname ? strchr(symname, '@') : NULL;
    if (at && strcmp(at, "@plt") != 0 && (size_t)(at - symname) < sizeof unversioned) {
        /* memcpy@@GLIBC_2.14 -> memcpy: the version is not part of the name. */
        memcpy(unversioned, symname, (size_t)(at - symname));
        unversioned[at - symname] = 0;
        symname = unversioned;
    }

    const char *file = NULL;
    int line = 0;
    bool dwarf = hp_cfg.debuginfo || own_dwarf(s, mod);
    Dwfl_Line *dl = dwarf ? dwfl_module_getsrc(mod, addr) : NULL;
    if (dl) {
        file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
        file = absolute(s, dwfl_line_comp_dir(dl), file);
    }

    Dwarf_Addr bias;
    Dwarf_Die *cu = dwarf ? dwfl_module_addrdie(mod, addr, &bias) : NULL;
    if (cu) {
        /* The functions around the address in the concrete tree, through
         * each inlined call to its caller (as eu-addr2line -i gives them),
         * from the unit's index (report/scopes.c). Where it has none (a
         * unit that imports others), from libdw: dwarf_getscopes follows
         * an inlined body to its abstract origin's parents, so
         * dwarf_getscopes_die on the innermost scope it finds. */
        Dwarf_Die found[64];
        Dwarf_Die *scopes = NULL; /* libdw's, where the index cannot say */
        int ns = hp_scopes_at(s->scopes, cu, addr - bias, found, 64);
        Dwarf_Die *sc = found;
        if (ns < 0) {
            ns = dwarf_getscopes(cu, addr - bias, &scopes);
            if (ns > 0) {
                Dwarf_Die inner = scopes[0];
                lib_free(scopes);
                scopes = NULL;
                ns = dwarf_getscopes_die(&inner, &scopes);
            }
            sc = scopes;
        }
        Dwarf_Files *files = NULL;
        size_t nfiles = 0;
        Dwarf_Attribute cattr;
        const char *comp_dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &cattr));
        for (int i = 0; i < ns; i++) {
            int tag = dwarf_tag(&sc[i]);
            if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram)
                continue;
            const char *name = die_name(&sc[i]);
            if (tag == DW_TAG_subprogram && symname)
                name = symname; /* the ELF symbol: qualified, and what tools show */
            add_line(s, lines, &n, MAX_INLINE, name, file, line);
            if (tag == DW_TAG_subprogram)
                break;
            /* The caller of an inlined body is at the call site. */
            Dwarf_Attribute attr;
            Dwarf_Word v;
            line =
                dwarf_formudata(dwarf_attr(&sc[i], DW_AT_call_line, &attr), &v) == 0 ? (int)v : 0;
            file = NULL;
            if (dwarf_formudata(dwarf_attr(&sc[i], DW_AT_call_file, &attr), &v) == 0 &&
                (files || dwarf_getsrcfiles(cu, &files, &nfiles) == 0) && v < nfiles)
                file = absolute(s, comp_dir, dwarf_filesrc(files, v, NULL, NULL));
        }
        lib_free(scopes);
    }
    if (n == 0 && symname)
        add_line(s, lines, &n, MAX_INLINE, symname, file, line);
    if (n == 0)
        return;
    out->lines = hp_arena_alloc(s->arena, (size_t)n * sizeof *lines);
    if (!out->lines)
        return;
    memcpy(out->lines, lines, (size_t)n * sizeof *lines);
    out->nlines = n;
    if (out->mapping >= 0) {
        struct hp_mapping *m = &s->maps[out->mapping];
        m->has_functions = true;
        if (lines[0].file) {
            m->has_filenames = true;
            m->has_lines = true;
        }
    }
}

/* A symbolizer for one unloaded library's file, at its old load bias. */
static struct hp_symbolizer *retained_sub(struct hp_symbolizer *s, struct retained *r)
{
    if (r->tried)
        return r->sub;
    r->tried = true;
    struct hp_symbolizer *sub = hp_arena_alloc(s->arena, sizeof *sub);
    if (!sub)
        return NULL;
    sub->arena = s->arena;
    sub->demangle = s->demangle;
    sub->scopes = s->scopes; /* keyed by where each unit's DIE is: no clash */
    sub->maps = hp_arena_alloc(s->arena, sizeof *sub->maps);
    if (!sub->maps)
        return NULL;
    sub->maps[0] = s->maps[r->index];
    sub->nmaps = 1;
    sub->dwfl_tried = true;
    sub->dwfl = hp_dw_load() ? dwfl_begin(hp_dw_offline_callbacks()) : NULL;
    if (sub->dwfl) {
        dwfl_report_begin(sub->dwfl);
        Dwfl_Module *mod =
            dwfl_report_elf(sub->dwfl, hp_basename(r->u->path), r->u->path, -1, r->u->bias, false);
        dwfl_report_end(sub->dwfl, NULL, NULL);
        /* The file must still be the one that was loaded: a library rebuilt
         * over the same path would name the old frames wrongly. */
        const unsigned char *bits;
        GElf_Addr vaddr;
        int n = mod ? dwfl_module_build_id(mod, &bits, &vaddr) : -1;
        char hex[129] = "";
        for (int i = 0; i < n && i < 64; i++)
            snprintf(hex + 2 * i, 3, "%02x", bits[i]);
        if (!mod || (r->u->build_id[0] && strcmp(hex, r->u->build_id) != 0)) {
            dwfl_end(sub->dwfl);
            sub->dwfl = NULL;
        }
    }
    r->sub = sub;
    return sub;
}

/* A frame recorded at epoch inside a library unloaded since: it is named
 * from the oldest library unloaded after epoch whose code held pc (the same
 * address may have held another library's code later). */
static bool lookup_retained(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch,
                            struct hp_symbolized *out)
{
    struct retained *best = NULL;
    for (int i = 0; i < s->nretained; i++) {
        struct retained *r = &s->retained[i];
        if (pc >= r->u->lo && pc < r->u->hi && r->u->epoch > epoch &&
            (!best || r->u->epoch < best->u->epoch))
            best = r;
    }
    if (!best)
        return false;
    struct retained_entry *e, key;
    memset(&key.key, 0, sizeof key.key);
    key.key.pc = pc;
    key.key.epoch = best->u->epoch;
    HASH_FIND(hh, s->rcache, &key.key, sizeof key.key, e);
    if (e) {
        *out = e->sym;
        return true;
    }
    struct hp_symbolizer *sub = retained_sub(s, best);
    memset(out, 0, sizeof *out);
    if (sub && sub->dwfl)
        lookup(sub, pc, out);
    out->variant = best->u->epoch;
    out->mapping = best->index;
    struct hp_mapping *m = &s->maps[best->index];
    m->has_functions = true;
    for (int l = 0; l < out->nlines; l++)
        if (out->lines[l].file)
            m->has_filenames = m->has_lines = true;
    e = hp_alloc(sizeof *e);
    if (e) {
        e->key = key.key;
        e->sym = *out;
        HASH_ADD(hh, s->rcache, key, sizeof e->key, e);
        if (!e->hh.tbl)
            hp_free(e, sizeof *e);
    }
    return true;
}

void hp_sym_lookup(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch, struct hp_symbolized *out)
{
    if (pc == HP_OTHER_IP) {
        /* The one frame of the stack that stacks fold into past the memory
         * limit (table.c). */
        static struct hp_frame_line other = {"[other]", "[other]", NULL, 0};
        memset(out, 0, sizeof *out);
        out->nlines = 1;
        out->lines = &other;
        out->mapping = -1;
        return;
    }
    if (!s) {
        memset(out, 0, sizeof *out);
        out->mapping = -1;
        return;
    }
    if (lookup_retained(s, pc, epoch, out))
        return;
    struct cache_entry *e;
    HASH_FIND(hh, s->cache, &pc, sizeof pc, e);
    if (e) {
        *out = e->sym;
        return;
    }
    lookup(s, pc, out);
    e = hp_alloc(sizeof *e);
    if (e) {
        e->pc = pc;
        e->sym = *out;
        HASH_ADD(hh, s->cache, pc, sizeof pc, e);
        if (!e->hh.tbl)
            hp_free(e, sizeof *e);
    }
}

bool hp_sym_offset(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch, uint64_t *off)
{
    struct hp_symbolized unused;
    if (!s || pc == HP_OTHER_IP || lookup_retained(s, pc, epoch, &unused))
        return false; /* an unloaded library's symbols are not at hand here */
    Dwfl *dwfl = sym_dwfl(s);
    Dwfl_Module *mod = dwfl ? dwfl_addrmodule(dwfl, pc - 1) : NULL;
    GElf_Off symoff;
    GElf_Sym sym;
    if (!mod || !dwfl_module_addrinfo(mod, pc - 1, &symoff, &sym, NULL, NULL, NULL))
        return false;
    *off = symoff;
    return true;
}
