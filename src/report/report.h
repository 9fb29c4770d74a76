/* The reporting half (src/report/) as its unit tests see it: the seam
 * (iface.h), symbols and the heap profile. Its own modules do not include
 * this header: each includes the headers of the modules it calls, from the
 * bottom up:
 *
 *   text.c, wire.c, tasks.c, symbols.c       text, protobuf wire and gzip,
 *                                            the threads, symbolization
 *   pprof.c                                  the pprof profile builder
 *   profile.c, cpuprof.c                     the heap and CPU profiles
 *   leaks.c, reach.c                         the leak summary, the leak check
 *   timeline.c, timeline_render.c            the heap over time: data, views
 *   http.c, handlers.c                       the endpoint: server, routes
 *   dump.c                                   dumps, one at a time
 *   agent.c                                  the background thread
 *   report.c                                 the entry points (struct hp_report)
 *
 * It sees the recording half only through iface.h.
 */
#ifndef HP_REPORT_H
#define HP_REPORT_H

#include "iface.h"
#include "profile.h"
#include "symbols.h"

#endif
