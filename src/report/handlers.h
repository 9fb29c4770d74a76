/* The /debug/pprof/ endpoint's handlers (report/handlers.c): what the HTTP
 * server (report/http.c) serves, given to it when it opens.
 */
#ifndef HP_REPORT_HANDLERS_H
#define HP_REPORT_HANDLERS_H

#include "http.h"

extern const struct hp_http_routes hp_handlers;

#endif
