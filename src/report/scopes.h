/* The function scopes of a compilation unit, indexed once: which
 * subprogram and which inlined calls hold an address (report/scopes.c).
 *
 * libdw's dwarf_getscopes walks the unit's tree of DIEs from its root at
 * every call; in a large unit built with -g (CPython's ceval.c, thousands
 * of inlined calls) that was 0.6 ms a frame, and 2.4 s of an exit dump
 * with 3,300 distinct frames. The index walks each unit once, at its first
 * lookup, and answers each address from the ranges it kept.
 */
#ifndef HP_REPORT_SCOPES_H
#define HP_REPORT_SCOPES_H

#include "hp.h"

#include <dwarf.h>
#include <elfutils/libdw.h>

struct hp_scopes;

/* An index for one dump, its memory from a (released with the arena);
 * hp_scopes_end frees its hash table, which is not. */
struct hp_scopes *hp_scopes_begin(struct hp_arena *a);
void hp_scopes_end(struct hp_scopes *x);

/* The DW_TAG_subprogram and DW_TAG_inlined_subroutine DIEs of the unit cu
 * whose code holds addr (an address in the unit's terms: the module's
 * address less its DWARF bias), innermost first, the concrete tree's path
 * (each inlined call, then its caller) as dwarf_getscopes_die gives it:
 * their number, at most max; or -1 when the unit cannot be indexed (it
 * imports others, as dwz's output does, or its tree is malformed), where
 * the caller asks libdw. */
int hp_scopes_at(struct hp_scopes *x, Dwarf_Die *cu, Dwarf_Addr addr, Dwarf_Die *out, int max);

#endif
