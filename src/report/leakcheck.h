/* Leak checks while the program runs (report/leakcheck.c): one at a time,
 * their answers (a profile, the summary's text, a window's change), and
 * the last one's totals.
 */
#ifndef HP_REPORT_LEAKCHECK_H
#define HP_REPORT_LEAKCHECK_H

#include "iface.h"
#include "heapprof.h"
#include "reach.h"
#include "text.h"

/* The right to run a check (and, for a window, its second one): false
 * while another holds it. */
bool hp_leakcheck_claim(void);
void hp_leakcheck_release(void);
/* After fork, in the child. */
void hp_leakcheck_child(void);

/* A whole check, on the calling thread: claims, runs, releases. 0, or
 * -errno and why in words (-EBUSY: another runs). out is released by the
 * caller (hp_snapshot_release) in every case. */
int hp_leakcheck_run(struct hp_snapshot *out, struct hp_reach_stats *st, char *why, size_t len);
/* Why a check failed, in words. rc may be NULL. */
void hp_leakcheck_why(char *out, size_t len, int err, const struct hp_reach *rc);

/* Estimated objects and bytes per verdict: [0] definite, [1] indirect,
 * [2] reachable. */
struct hp_leak_totals {
    uint64_t objects[3], bytes[3];
};
void hp_leak_totals(const struct hp_snapshot *s, struct hp_leak_totals *t);
/* A check finished: kept as the last, and a point of the timeline's lost
 * series. */
void hp_leakcheck_note(const struct hp_snapshot *s, const struct hp_reach_stats *st);
/* The last check's totals; false when none ran. */
bool hp_leakcheck_last(struct hp_leak_totals *t, struct hp_reach_stats *st, int64_t *time_ns,
                       uint64_t *count);

/* Turns end into what became lost since start (both live checks): per
 * bucket and verdict, the growth of its lost objects; reachable entries
 * dropped. */
int hp_leak_delta(struct hp_snapshot *end, const struct hp_snapshot *start);
/* The answers: the leak summary as text, after a line on the check (or on
 * the window, window_s > 0); the profile, gzipped, in s's arena. */
void hp_leakcheck_text(struct hp_text *t, struct hp_snapshot *s, const struct hp_reach_stats *st,
                       long window_s);
int hp_leakcheck_encode(struct hp_snapshot *s, long window_s, uint8_t **gz, size_t *len);
/* heapprof_leak_check() (the reporting half's entry point). */
int hp_leakcheck_api(const char *path, struct heapprof_leak_counts *counts);

#endif
