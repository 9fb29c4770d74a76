/* The heap over time, its data (report/timeline.c): the series the
 * background thread keeps, point by point, and a copy of them to show.
 */
#ifndef HP_REPORT_TIMELINE_H
#define HP_REPORT_TIMELINE_H

#include "iface.h"

enum {
    HP_TIMELINE_TOP = 10,     /* a tick's largest stacks, which may get a series */
    HP_TIMELINE_SERIES = 32,  /* series at most */
    HP_TIMELINE_POINTS = 512, /* points at most: then merged pairwise */
};
struct hp_timeline_point {
    double t_ms; /* since the timeline started */
    double total, other;
    double v[HP_TIMELINE_SERIES];
};
/* A live leak check's result (HEAPPROF_LEAK_INTERVAL, /debug/pprof/leaks):
 * the estimated lost bytes at the moment of the check. */
struct hp_timeline_lost {
    double t_ms; /* since the timeline started */
    double definite, indirect;
};
/* A copy of the series (hp_timeline_copy). */
struct hp_timeline_series {
    int nlost; /* leak checks, in time order */
    struct hp_timeline_lost *lost;
    int npoints, nseries, per_point, merges;
    uint64_t ticks;
    double cpu_ns_mean, cpu_ns_max; /* a tick's cost */
    struct hp_timeline_point *points;
    uint32_t stacks[HP_TIMELINE_SERIES]; /* each series' stack (its leaf node) */
};

void hp_timeline_start(void);
void hp_timeline_child(void);
bool hp_timeline_on(void);
/* Takes a point when one is due; returns when the next one is (hp_mono_ms
 * time), INT64_MAX when the timeline is off. */
int64_t hp_timeline_tick(void);
/* A live leak check found these lost bytes at time_ns (the real-time
 * clock): a point of the lost series (at most HP_TIMELINE_POINTS; then
 * every other one is dropped, the first and last kept). */
void hp_timeline_lost(int64_t time_ns, double definite, double indirect);
/* Takes a point now (at exit: so that the series reaches the end). */
void hp_timeline_last_point(void);
/* The series as they are, with the point being made as the last point, in
 * the arena: 0, or -ENOENT when the timeline was never on, -ENOMEM. */
int hp_timeline_copy(struct hp_timeline_series *out, struct hp_arena *a);

#endif
