/* The heap profile (report/profile.c): a snapshot as a gzipped pprof
 * profile, as Go's runtime writes one.
 */
#ifndef HP_REPORT_PROFILE_H
#define HP_REPORT_PROFILE_H

#include "symbols.h"

/* Writes a gzipped pprof profile of the snapshot to path atomically.
 * Returns 0 or a negative errno. Symbolizes each address once; sym may be
 * shared with the leak report. */
int hp_profile_write(struct hp_snapshot *s, struct hp_symbolizer *sym, const char *path,
                     int64_t start_ns);
/* Encodes the profile into a gzip buffer held by the snapshot's arena.
 * default_type: NULL for the heap profile, "alloc_space" for allocs. */
int hp_profile_encode(struct hp_snapshot *s, struct hp_symbolizer *sym, int64_t start_ns,
                      const char *default_type, uint8_t **out, size_t *outlen);

#endif
