/* The leak check (report/reach.c): which live objects are lost at exit, as
 * LeakSanitizer and memcheck judge it, and which are still reachable.
 */
#ifndef HP_REPORT_REACH_H
#define HP_REPORT_REACH_H

#include "iface.h"

struct hp_reach_stats {
    uint64_t objects;            /* live objects checked */
    uint64_t definite, indirect; /* of them, lost */
    uint64_t root_bytes;         /* roots read */
    uint64_t heap_bytes;         /* objects read (exact mode) */
    uint64_t faults;             /* pages skipped as unreadable */
    uint64_t child_bytes;        /* the child's own memory at its peak */
    int64_t ns;                  /* how long it took, the fork included */
    int64_t pause_ns;            /* how long the program's threads were held */
    bool retried;                /* the copy was made twice (struct hp_reach) */
};
/* At exit: gives every lost live object its verdict (hp_live_set_verdict);
 * 0, or -errno when the check could not be made or finish (no verdicts
 * then). */
int hp_reach_check(struct hp_reach_stats *stats);

/* A check in two steps: hp_reach_start clones the process and returns at
 * once; the clone's answer comes on fd (poll it), read by hp_reach_finish,
 * or hp_reach_cancel ends it. Live (a check while the program runs, as
 * /debug/pprof/leaks asks): the clone runs at the lowest priority on one
 * CPU, and the verdicts come back as a snapshot taken with them, in the
 * clone, at the moment of the clone; the parent's live set is untouched. */
enum { HP_REACH_LIVE_HEADER = 11 };
struct hp_reach {
    pid_t pid;
    int fd;
    bool live;
    int64_t t0, pause_ns;
    bool retried;  /* a thread woke during the first copy: made again, all held */
    char why[192]; /* when it fails: the reason in words, or empty */
    /* A live answer as it is read (hp_reach_pump): the header, the
     * snapshot's entries, the trailer, in that order. */
    struct {
        int part; /* 0 header, 1 entries, 2 trailer, 3 whole */
        int err;  /* the read's error, kept for hp_reach_finish */
        size_t got;
        uint64_t head[HP_REACH_LIVE_HEADER];
        uint64_t trailer[2];
        struct hp_snap_bucket *entries;
        size_t n;
    } in;
};
int hp_reach_start(struct hp_reach *rc, bool live);
/* A live check: reads what the clone has sent so far into out, without
 * waiting. 0: the answer is whole; -EAGAIN: more is to come (poll rc->fd
 * again); otherwise the error. A snapshot of many megabytes comes from a
 * clone at the lowest priority in many pieces: a caller that serves others
 * meanwhile (the HTTP server, the periodic check) reads each as it comes
 * rather than waiting for the whole. */
int hp_reach_pump(struct hp_reach *rc, struct hp_snapshot *out);
/* Waits for the rest of the answer (out: the live snapshot, released by
 * the caller with hp_snapshot_release, the same out as hp_reach_pump's;
 * NULL at exit) and reaps the clone. */
int hp_reach_finish(struct hp_reach *rc, struct hp_reach_stats *stats, struct hp_snapshot *out);
void hp_reach_cancel(struct hp_reach *rc);
/* In a child after fork: no clone of a live check is this process's. */
void hp_reach_child(void);

#endif
