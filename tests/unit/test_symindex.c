/* heapprof's symbol index (symbols.c: a module's code symbols sorted by
 * address, searched in two steps) names addresses as libdwfl's own
 * dwfl_module_addrinfo does. For two addresses inside every sized function
 * of the C library and of this program, heapprof's name must be libdwfl's,
 * or another name of the same function: an alias at the same address, as
 * glibc's public names (strdup for __strdup) are.
 *
 * Code without a symbol of its own: every PLT stub of the same two modules
 * is named as objdump names it (rand@plt; when objdump is at hand), and the
 * vDSO's functions by the vDSO's own symbols (__vdso_clock_gettime), the
 * rest of the vDSO [vdso]. */
#define _GNU_SOURCE
#include "record/record.h"
#include "report/report.h"

#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "check.h"

struct named {
    const char *name;
    GElf_Addr addr;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* The name without a symbol version (memcpy@@GLIBC_2.14). */
static void unversioned(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s", name);
    char *at = strchr(out, '@');
    if (at)
        *at = 0;
}

/* Whether a and b (unversioned) name functions starting at the same address. */
static bool same_function(const struct named *names, size_t n, const char *a, const char *b)
{
    struct named ka = {a, 0}, kb = {b, 0};
    const struct named *fa = bsearch(&ka, names, n, sizeof *names, by_name);
    const struct named *fb = bsearch(&kb, names, n, sizeof *names, by_name);
    return fa && fb && fa->addr == fb->addr;
}

static int checked;

static void check_module(struct hp_symbolizer *hs, Dwfl_Module *mod, const char *what)
{
    int nsyms = dwfl_module_getsymtab(mod);
    CHECK(nsyms > 1, "%s: no symbol table", what);
    if (nsyms <= 1)
        return;
    struct named *names = calloc((size_t)nsyms, sizeof *names);
    size_t n = 0;
    for (int i = 1; i < nsyms; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        const char *name = dwfl_module_getsym_info(mod, i, &sym, &addr, NULL, NULL, NULL);
        if (name && name[0] && GELF_ST_TYPE(sym.st_info) == STT_FUNC) {
            char plain[512];
            unversioned(name, plain, sizeof plain);
            names[n++] = (struct named){strdup(plain), addr};
        }
    }
    qsort(names, n, sizeof *names, by_name);
    int mismatches = 0, here = 0;
    for (int i = 1; i < nsyms; i++) {
        GElf_Sym sym;
        GElf_Addr start;
        const char *name = dwfl_module_getsym_info(mod, i, &sym, &start, NULL, NULL, NULL);
        if (!name || GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_size < 2)
            continue;
        GElf_Addr probes[2] = {start + sym.st_size / 2, start + sym.st_size - 1};
        for (int k = 0; k < 2; k++) {
            GElf_Off off;
            GElf_Sym dsym;
            const char *want = dwfl_module_addrinfo(mod, probes[k], &off, &dsym, NULL, NULL, NULL);
            if (!want)
                continue;
            /* heapprof is given return addresses and looks up pc - 1. */
            struct hp_symbolized out;
            hp_sym_lookup(hs, (uintptr_t)probes[k] + 1, 0, &out);
            const char *got = out.nlines ? out.lines[out.nlines - 1].system_name : NULL;
            char w[512], g[512];
            unversioned(want, w, sizeof w);
            unversioned(got ? got : "(none)", g, sizeof g);
            here++;
            if (strcmp(w, g) != 0 && !same_function(names, n, w, g) && mismatches++ < 10)
                CHECK(false, "%s: %#lx named %s by heapprof, %s by libdwfl", what,
                      (unsigned long)probes[k], g, w);
        }
    }
    CHECK(mismatches == 0, "%s: %d of %d addresses named differently", what, mismatches, here);
    CHECK(here > 100, "%s: only %d addresses checked", what, here);
    printf("%s: %d addresses, %d named differently\n", what, here, mismatches);
    checked += here;
    for (size_t i = 0; i < n; i++)
        free((void *)names[i].name);
    free(names);
}

static bool have_objdump = true;
static int plt_checked;

/* The name heapprof gives an address (a return address: pc - 1 is looked
 * up), or "(none)". */
static const char *name_at(struct hp_symbolizer *hs, uintptr_t addr)
{
    struct hp_symbolized out;
    hp_sym_lookup(hs, addr + 1, 0, &out);
    return out.nlines ? out.lines[out.nlines - 1].system_name : "(none)";
}

/* Every stub objdump names NAME@plt (objdump -d's labels in .plt, .plt.sec
 * and .plt.got) is NAME@plt at its first byte and its fifth. Stubs that
 * objdump names by an address (*ABS*+0x...@plt, IRELATIVE) are skipped. */
static void check_plt(struct hp_symbolizer *hs, Dwfl_Module *mod, const char *path,
                      const char *what)
{
    GElf_Addr bias;
    if (!have_objdump || !dwfl_module_getelf(mod, &bias))
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "objdump -d -j .plt -j .plt.sec -j .plt.got '%s' 2>/dev/null", path);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[1024];
    int stubs = 0, lines = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long at;
        char label[512];
        lines++;
        if (sscanf(line, "%lx <%511[^>]>:", &at, label) != 2)
            continue;
        size_t len = strlen(label);
        if (len < 5 || strcmp(label + len - 4, "@plt") != 0 || label[0] == '*')
            continue;
        char want[600];
        snprintf(want, sizeof want, "%.*s@plt", (int)strcspn(label, "@"), label);
        for (int k = 0; k < 2; k++) {
            const char *got = name_at(hs, (uintptr_t)(at + bias) + (k ? 4 : 0));
            CHECK(!strcmp(got, want), "%s: the stub %s at %#lx+%d is named %s", what, label, at,
                  k ? 4 : 0, got);
        }
        stubs++;
    }
    int status = pclose(f);
    if (!lines && status != 0) {
        have_objdump = false;
        printf("objdump did not run: PLT stubs not checked\n");
        return;
    }
    CHECK(stubs > 0, "%s: objdump names no PLT stub", what);
    printf("%s: %d PLT stubs\n", what, stubs);
    plt_checked += stubs;
}

static int each_module(Dwfl_Module *mod, void **ud, const char *name, Dwarf_Addr start, void *arg)
{
    (void)ud;
    (void)start;
    struct hp_symbolizer *hs = arg;
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    if (!strncmp(base, "libc.so", 7) || !strcmp(base, "test-symindex")) {
        check_module(hs, mod, base);
        check_plt(hs, mod, name, base);
    }
    return DWARF_CB_OK;
}

/* The vDSO: a function by its own name, its ELF header by the mapping's. */
static void check_vdso(struct hp_symbolizer *hs)
{
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    void *h = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
    void *fn = h ? dlsym(h, "__vdso_clock_gettime") : NULL;
    if (!base || !fn) {
        printf("no vDSO with __vdso_clock_gettime here: not checked\n");
        return;
    }
    const char *got = name_at(hs, (uintptr_t)fn + 4);
    CHECK(!strcmp(got, "__vdso_clock_gettime"), "vDSO: __vdso_clock_gettime+4 is named %s", got);
    got = name_at(hs, base + 4);
    CHECK(!strcmp(got, "[vdso]"), "vDSO: its ELF header is named %s, want [vdso]", got);
    printf("vDSO: named\n");
}

int main(void)
{
    static const Dwfl_Callbacks callbacks = {
        .find_elf = dwfl_linux_proc_find_elf,
        .find_debuginfo = dwfl_standard_find_debuginfo,
    };
    Dwfl *dwfl = dwfl_begin(&callbacks);
    CHECK(dwfl != NULL, "dwfl_begin");
    dwfl_report_begin(dwfl);
    CHECK(dwfl_linux_proc_report(dwfl, getpid()) == 0, "dwfl_linux_proc_report");
    dwfl_report_end(dwfl, NULL, NULL);

    struct hp_arena arena;
    memset(&arena, 0, sizeof arena);
    struct hp_symbolizer *hs = hp_sym_open(&arena);
    CHECK(hs != NULL, "hp_sym_open");
    if (hs && dwfl)
        dwfl_getmodules(dwfl, each_module, hs, 0);
    CHECK(checked > 1000, "only %d addresses checked in all", checked);
    CHECK(!have_objdump || plt_checked > 10, "only %d PLT stubs checked", plt_checked);
    if (hs)
        check_vdso(hs);
    hp_sym_close(hs);
    hp_arena_release(&arena);
    dwfl_end(dwfl);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
