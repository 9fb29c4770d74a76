/* Every live thread's current stack (report/goroutine.c), as Go's
 * /debug/pprof/goroutine shows goroutines: a pprof profile, its grouped
 * text (debug=1) and one block per thread (debug=2); and where the live
 * threads were created (/debug/pprof/threadcreate).
 */
#ifndef HP_REPORT_GOROUTINE_H
#define HP_REPORT_GOROUTINE_H

#include "symbols.h"

/* The live threads' stacks, in a's arena: debug 0 a gzipped pprof profile
 * (goroutine/count, grouped by stack and thread name, each sample labelled
 * "thread"), 1 the grouped text, 2 one block per thread. 0 or -errno. */
int hp_goroutine_render(struct hp_arena *a, int debug, uint8_t **out, size_t *outlen);
/* The stacks that created the live threads: threadcreate/count, debug 0 a
 * gzipped pprof profile, otherwise Go's grouped text. 0 or -errno. */
int hp_threadcreate_render(struct hp_arena *a, int debug, uint8_t **out, size_t *outlen);

#endif
