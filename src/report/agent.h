/* The background thread (report/agent.c): the endpoint, snapshots on a
 * signal or at an interval, the timeline's ticks.
 */
#ifndef HP_REPORT_AGENT_H
#define HP_REPORT_AGENT_H

#include "iface.h"

/* Starts it when HEAPPROF_HTTP, HEAPPROF_SIGNAL, HEAPPROF_INTERVAL or
 * HEAPPROF_TIMELINE asks for it. */
void hp_agent_start(void);
/* In a forked child, which has no copy of the thread. */
void hp_agent_child(void);

#endif
