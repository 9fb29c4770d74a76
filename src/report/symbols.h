/* Symbolization (report/symbols.c): return addresses to functions, files
 * and lines, inlined frames included, and the executable mappings a profile
 * lists them in. Opened once per dump, in the dump's arena.
 */
#ifndef HP_REPORT_SYMBOLS_H
#define HP_REPORT_SYMBOLS_H

#include "iface.h"

struct hp_frame_line {
    const char *function;    /* demangled; NULL when unknown */
    const char *system_name; /* as in the symbol table */
    const char *file;        /* NULL when unknown */
    int line;
};
struct hp_symbolized {
    int nlines; /* innermost first; 0 when nothing is known */
    struct hp_frame_line *lines;
    int mapping; /* index into the mapping list, -1 when none */
    /* 0, or which unloaded library's saved symbols answered: the same
     * address can mean different code before and after a dlclose. */
    uint32_t variant;
};
struct hp_mapping {
    uint64_t start, limit, offset;
    const char *file;
    const char *build_id; /* lowercase hex, or "" */
    bool has_functions, has_filenames, has_lines;
};
struct hp_symbolizer;
struct hp_symbolizer *hp_sym_open(struct hp_arena *a);
/* Symbolizes the return address pc of a frame recorded at epoch (its
 * struct hp_frame's); the epoch lets addresses in libraries unloaded since
 * then get the names they had. */
void hp_sym_lookup(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch,
                   struct hp_symbolized *out);
int hp_sym_mappings(struct hp_symbolizer *s, struct hp_mapping **out);
/* The offset of pc - 1 (the call instruction) from the start of the
 * function symbol that holds it: false when no symbol does. */
bool hp_sym_offset(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch, uint64_t *off);
void hp_sym_close(struct hp_symbolizer *s);

#endif
