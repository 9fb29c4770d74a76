/* The reporting half's own interfaces (src/report/): symbols, the profile
 * writer, the leak summary, the HTTP endpoint and the background thread.
 * It sees the recording half only through iface.h.
 */
#ifndef HP_REPORT_H
#define HP_REPORT_H

#include "iface.h"
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

/* ---- the heap over time (report/timeline.c) ---- */
void hp_timeline_start(void);
void hp_timeline_child(void);
bool hp_timeline_on(void);
/* Takes a point when one is due; returns when the next one is (hp_mono_ms
 * time), INT64_MAX when the timeline is off. */
int64_t hp_timeline_tick(void);
/* The chart as a self-contained HTML page, or the series as JSON, in a
 * buffer of the arena: 0, or -ENOENT when the timeline is off, -ENOMEM. */
int hp_timeline_render(struct hp_arena *a, bool json, char **out, size_t *len);
/* At exit: a last point, then NAME.timeline.html and NAME.timeline.json
 * beside the profile path; the path of each file written into html and
 * json (size len), "" for one not written. 0 or the last -errno. */
int hp_timeline_write(const char *profile, char *html, char *json, size_t len);
#endif
