/* The CPU profile (report/cpuprof.c): record/cpu.c's samples as a gzipped
 * pprof profile, as Go writes one.
 */
#ifndef HP_REPORT_CPUPROF_H
#define HP_REPORT_CPUPROF_H

#include "symbols.h"

/* Sample types samples/count and cpu/nanoseconds, period type
 * cpu/nanoseconds, period 1e9/hz; encoded into a buffer of p's arena.
 * comment: NULL or one line for the profile's comments. */
int hp_cpu_encode(struct hp_cpu_profile *p, struct hp_symbolizer *sym, const char *comment,
                  uint8_t **out, size_t *outlen);
/* The line hp_cpu_encode is given for p (drops, [other], SIGPROF taken by
 * the program, the fallback timer), into buf; NULL when there is nothing
 * to say. */
const char *hp_cpu_comment(const struct hp_cpu_profile *p, char *buf, size_t len);

#endif
