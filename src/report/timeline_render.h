/* The heap over time, shown (report/timeline_render.c): the timeline's
 * series named, as an HTML page or JSON, and as files at exit.
 */
#ifndef HP_REPORT_TIMELINE_RENDER_H
#define HP_REPORT_TIMELINE_RENDER_H

#include "iface.h"

/* The chart as a self-contained HTML page, or the series as JSON, in a
 * buffer of the arena: 0, or -ENOENT when the timeline is off, -ENOMEM. */
int hp_timeline_render(struct hp_arena *a, bool json, char **out, size_t *len);
/* At exit: a last point, then NAME.timeline.html and NAME.timeline.json
 * beside the profile path; the path of each file written into html and
 * json (size len), "" for one not written. 0 or the last -errno. */
int hp_timeline_write(const char *profile, char *html, char *json, size_t len);

#endif
