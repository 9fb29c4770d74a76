/* Execution traces as Chrome Trace Event JSON (report/trace_json.c), from
 * what record/trace.c recorded.
 */
#ifndef HP_REPORT_TRACE_JSON_H
#define HP_REPORT_TRACE_JSON_H

#include "iface.h"

/* The trace's JSON (gzipped with gz) into out and len, held by the arena a.
 * 0 or -errno. */
int hp_trace_encode(struct hp_arena *a, const struct hp_trace *t, bool gz, uint8_t **out,
                    size_t *len);
/* Writes it to path atomically, gzipped when path ends in .gz. 0 or
 * -errno. */
int hp_trace_write(const char *path, struct hp_trace *t);

#endif
