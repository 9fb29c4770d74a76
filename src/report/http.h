/* The HTTP server the endpoint runs on (report/http.c): sockets,
 * connections, request heads, answers, and windows (a connection kept open
 * without an answer until its deadline, or until its client goes away).
 * What is served is the handlers' (report/handlers.c): the server calls
 * them through the table given when it opens.
 */
#ifndef HP_REPORT_HTTP_H
#define HP_REPORT_HTTP_H

#include "iface.h"

struct hp_http;      /* the server */
struct hp_http_conn; /* one connection: one request, one answer */
struct pollfd;

struct hp_http_routes {
    /* A request head arrived whole: answer it (hp_http_respond) or open a
     * window (hp_http_wait). path and query (NULL: none) are the request
     * line's target, split at its '?'; a HEAD request gets the head of the
     * answer given. */
    void (*request)(struct hp_http_conn *c, const char *method, const char *path,
                    const char *query);
    /* A window's deadline came: answer it now. The window is the handler's
     * again (the connection no longer holds it). */
    void (*window_end)(struct hp_http_conn *c, void *window);
    /* The connection of an open window closes without its answer (its
     * client went away): release what the window holds. */
    void (*window_drop)(void *window);
};

/* Listens on spec (HOST:PORT; an empty host or localhost is 127.0.0.1):
 * NULL, and one line on stderr, when it cannot. */
struct hp_http *hp_http_open(const char *spec, const struct hp_http_routes *routes);
/* The descriptors to poll, up to max into fds; lowers *deadline to the
 * earliest of the connections'. Returns how many. */
int hp_http_pollfds(struct hp_http *h, struct pollfd *fds, int max, int64_t *deadline);
/* Serves what poll found in fds, and the deadlines that passed. */
void hp_http_service(struct hp_http *h, const struct pollfd *fds, int n);
/* After fork, in the child: closes the child's copies; it does not serve. */
void hp_http_child(struct hp_http *h);

/* ---- for the handlers ---- */
/* The answer: status, Content-Type, extra header lines (each ending in
 * "\r\n"; NULL: none) and the body, copied. */
void hp_http_respond(struct hp_http_conn *c, int status, const char *ctype, const char *extra,
                     const void *body, size_t len);
/* A short text/plain answer (at most 511 bytes). */
void hp_http_respond_text(struct hp_http_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The request's body (what its Content-Length announced, as much as fits
 * in the request's buffer), len bytes; NULL when it has none. */
const char *hp_http_body(const struct hp_http_conn *c, size_t *len);
/* Opens a window: no answer until ms from now (window_end), or until the
 * client goes away (window_drop). window is the handler's own. */
void hp_http_wait(struct hp_http_conn *c, int64_t ms, void *window);
/* The same, and the window also ends (window_end) as soon as fd is
 * readable. window_end may open the window again (hp_http_wait) instead
 * of answering: a request that waits for several things in turn. */
void hp_http_wait_fd(struct hp_http_conn *c, int64_t ms, int fd, void *window);
/* Whether the request's header `name` (case-insensitive) holds token, as
 * Accept-Encoding holds gzip. */
bool hp_http_header_has(const struct hp_http_conn *c, const char *name, const char *token);
/* Calls fn for each window open on c's server, with the ms left. */
void hp_http_each_window(const struct hp_http_conn *c,
                         void (*fn)(const void *window, int64_t ms_left, void *arg), void *arg);

#endif
