/* The reporting half's entry points: the table the recording half finds
 * with dlsym once it has loaded this object (record/core.c), and calls for
 * dumps (dump.c), the background thread (agent.c) and the timeline's files
 * at exit (timeline_render.c). The top of the reporting half: no module of
 * it calls up into this one.
 */
#include "iface.h"
#include "agent.h"
#include "dump.h"
#include "dw.h"
#include "leakcheck.h"
#include "timeline_render.h"
#include "trace_json.h"

static void child(void)
{
    hp_dump_child();
    hp_dw_child();
    hp_agent_child();
}

HEAPPROF_API const struct hp_report hp_report_entry = {
    .dump_to = hp_dump_to,
    .agent_start = hp_agent_start,
    .agent_child = child,
    .timeline_write = hp_timeline_write,
    .cpu_write = hp_dump_cpu,
    .snapshot = hp_dump_snapshot,
    .trace_write = hp_trace_write,
    .leak_check = hp_leakcheck_api,
};
