/* The leak summary (report/leaks.c): at exit, the stacks whose sampled
 * allocations are still live, by the leak check's verdict.
 */
#ifndef HP_REPORT_LEAKS_H
#define HP_REPORT_LEAKS_H

#include "symbols.h"
#include "text.h"

/* Writes the summary (to HEAPPROF_LEAKS, or stderr) and returns the number
 * of stacks that fail the CI gate (after suppressions): with verdicts,
 * those with lost memory (or, with HEAPPROF_LEAKS_EXIT_ANY, any never
 * freed); without, every stack never freed. */
int hp_leaks_report(struct hp_snapshot *s, struct hp_symbolizer *sym);
/* The same summary appended to t (whose arena it also uses), not written:
 * for a live check (report/leakcheck.c). Returns the same number. */
int hp_leaks_render(struct hp_snapshot *s, struct hp_symbolizer *sym, struct hp_text *t);

#endif
