/* The reporting half's own interfaces (src/report/): symbols, the profile
 * writer, the leak summary, the HTTP endpoint and the background thread.
 * It sees the recording half only through iface.h.
 */
#ifndef HP_REPORT_H
#define HP_REPORT_H

#include "iface.h"
#include "timeline.h"
#include "timeline_render.h"
#include "leaks.h"
#include "reach.h"
#include "cpuprof.h"
#include "profile.h"
#include "symbols.h"
#include "text.h"

int hp_dump_to(const char *path, enum hp_dump_kind kind, int *nleaks);

/* ---- the background thread (report/agent.c), HTTP (report/http.c) ---- */
void hp_agent_start(void);
void hp_agent_child(void);
struct hp_http;
struct pollfd;
struct hp_http *hp_http_open(const char *spec);
int hp_http_pollfds(struct hp_http *h, struct pollfd *fds, int max, int64_t *deadline);
void hp_http_service(struct hp_http *h, const struct pollfd *fds, int n);
void hp_http_child(struct hp_http *h);

#endif
