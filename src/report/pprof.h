/* The pprof profile builder (report/pprof.c), shared by the heap profile
 * (report/profile.c) and the CPU profile (report/cpuprof.c): samples go in
 * one at a time, each stack's frames symbolized once and named by
 * self-contained Location, Function and Mapping entries, so that pprof
 * needs no binary to read the profile.
 */
#ifndef HP_REPORT_PPROF_H
#define HP_REPORT_PPROF_H

#include "symbols.h"

/* A label: key and str are indexes into the string table
 * (hp_pprof_string), 0 for none; num is a number label's value. */
struct hp_pprof_label {
    int64_t key, str, num;
};

/* What the Profile message says besides its samples. */
struct hp_pprof_head {
    const char *types[4][2]; /* sample types: type, unit */
    int ntypes;
    const char *period_type[2];
    int64_t period;
    int64_t time_nanos, duration_nanos;
    const char *default_type; /* NULL: none */
    const char *comment;      /* NULL: none */
};

struct hp_pprof;
/* A profile in the arena a, symbolized by sym. nodes: the frames given
 * carry node numbers of the stack table (heap profiles), so locations are
 * cached by node. NULL without memory. The string table starts with "",
 * "bytes" and "thread". */
struct hp_pprof *hp_pprof_begin(struct hp_arena *a, struct hp_symbolizer *sym, bool nodes);
/* s's index in the string table, added if new (NULL is ""). */
int64_t hp_pprof_string(struct hp_pprof *p, const char *s);
/* One sample: its frames (leaf first, return addresses), values, labels. */
void hp_pprof_sample(struct hp_pprof *p, const struct hp_frame *fs, int depth,
                     const int64_t *values, size_t nvalues, const struct hp_pprof_label *labels,
                     size_t nlabels);
/* False once memory or the stream failed: the rest need not be added. */
bool hp_pprof_ok(const struct hp_pprof *p);
/* The rest of the Profile message, then the end of the gzip stream: the
 * profile (in the arena) into out and outlen. 0 or -errno. Ends p either
 * way. */
int hp_pprof_end(struct hp_pprof *p, const struct hp_pprof_head *h, uint8_t **out, size_t *outlen);

#endif
