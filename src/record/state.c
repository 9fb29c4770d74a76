/* The process's profiling state: off, starting or on (hp_state), and the
 * reporting half's entry points once it is loaded (hp_report). Written by
 * record/lifecycle.c; read everywhere. Also the count of dlclose calls
 * (hp_dl_epoch), which record/dl.c advances and the stack table reads.
 */
#include "record.h"

volatile int hp_state;
const struct hp_report *hp_report;
uint32_t hp_dl_epoch;
/* Set while an execution trace runs (record/trace.c): here, so that the
 * hooks that test it do not depend on the trace's module. */
int hp_trace_on;
