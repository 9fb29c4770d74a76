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
};
/* Gives every lost live object its verdict (hp_live_set_verdict); 0, or
 * -errno when the check could not be made or finish (no verdicts then). */
int hp_reach_check(struct hp_reach_stats *stats);

#endif
