/* The mutex and block profiles (report/contention.c): record/contention.c's
 * table as Go's runtime/pprof writes those profiles, gzipped pprof or the
 * ?debug=1 text.
 */
#ifndef HP_REPORT_CONTENTION_H
#define HP_REPORT_CONTENTION_H

#include "symbols.h"

/* Sample types contentions/count and delay/nanoseconds, period type
 * contentions/count, period the mutex fraction (1 for block); duration
 * since start_ns (a window's start, or the process's). Into p's arena. */
int hp_cont_encode(struct hp_cont_profile *p, struct hp_symbolizer *sym, int64_t start_ns,
                   const char *comment, uint8_t **out, size_t *outlen);
/* Go's legacy text (--- mutex: / --- contention:), one line per stack,
 * biggest delay first, with its symbolized frames. NUL-terminated, in p's
 * arena; NULL without memory. */
char *hp_cont_text(struct hp_cont_profile *p, struct hp_symbolizer *sym, size_t *len);

#endif
