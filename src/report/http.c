/* The HTTP server the endpoint (report/handlers.c) runs on, served by the
 * background thread (agent.c) from one poll loop, so no client can hold up
 * another: every connection is non-blocking, has a deadline (a request must
 * arrive complete within REQUEST_MS of the accept, however slowly its bytes
 * trickle in), a size limit on the request head, and is closed after one
 * answer. A window (a `?seconds=N` delta, a CPU profile) keeps its
 * connection waiting in the loop, not the thread; as Go's handlers stop when
 * the request's context ends, a window ends at once when its client goes
 * away (the socket polled for POLLRDHUP, or read to its end), and the
 * handler is told (window_drop) so that it can release what the window
 * holds (a CPU profile's window so releases the profiler).
 *
 * Its memory is heapprof's own (hp_alloc), never the program's heap.
 */
#define _GNU_SOURCE
#include "http.h"
#include "iface.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    MAX_CONNS = 128,
    MAX_REQUEST = 8192,
    REQUEST_MS = 5000,
    WRITE_MS = 30000,
};

enum conn_state { FREE, READING, WAITING, WRITING };

struct hp_http_conn {
    struct hp_http *server;
    enum conn_state state;
    int fd;
    int64_t deadline;
    char req[MAX_REQUEST + 1];
    size_t reqlen;
    const char *body; /* inside req, after the head; NULL: none */
    size_t bodylen;
    char *out; /* hp_alloc'ed, outcap bytes */
    size_t outlen, outoff, outcap;
    bool head;           /* a HEAD request: the answer without its body */
    void *window;        /* the handler's, while the connection waits (WAITING) */
    int wake_fd1;        /* a window's descriptor plus 1 (0: none): readable, it ends the window */
    const char *headers; /* the request's header lines, in req */
};

struct hp_http {
    int lfd;
    const struct hp_http_routes *routes;
    struct hp_http_conn conns[MAX_CONNS];
};

/* ---- listening ---- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

struct hp_http *hp_http_open(const char *spec, const struct hp_http_routes *routes)
{
    char host[256], port[32];
    const char *colon = strrchr(spec, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= sizeof port) {
        hp_log("heapprof: HEAPPROF_HTTP=%.100s is not HOST:PORT; not serving", spec);
        return NULL;
    }
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host)
        hl = sizeof host - 1;
    memcpy(host, spec, hl);
    host[hl] = 0;
    strcpy(port, colon + 1);
    /* [::1]:6060 */
    if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    /* An empty host means loopback here, not every interface as in Go:
     * a heap profile is not for everyone who can reach the machine. */
    if (!host[0] || !strcmp(host, "localhost"))
        strcpy(host, "127.0.0.1");
    char *end;
    long pn = strtol(port, &end, 10);
    if (*end || pn < 0 || pn > 65535) {
        hp_log("heapprof: HEAPPROF_HTTP=%.100s: bad port; not serving", spec);
        return NULL;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gr = getaddrinfo(host, port, &hints, &res);
    if (gr != 0 || !res) {
        hp_log("heapprof: HEAPPROF_HTTP=%.100s: cannot resolve %s (%s); not serving", spec, host,
               gai_strerror(gr));
        return NULL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    int err = 0;
    if (fd < 0)
        err = errno;
    else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
             bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0)
        err = errno;
    if (err) {
        hp_log("heapprof: cannot serve on %s: %s; the program runs on without the endpoint", spec,
               strerror(err));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return NULL;
    }
    if (!is_loopback(res->ai_addr))
        hp_log("heapprof: warning: serving heap profiles on %s, which is not a loopback "
               "address: anyone who can reach it can read them",
               spec);
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char shown[128] = "?";
    int shown_port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &sin->sin_addr, shown, sizeof shown);
            shown_port = ntohs(sin->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            shown[0] = '[';
            inet_ntop(AF_INET6, &sin6->sin6_addr, shown + 1, sizeof shown - 2);
            strcat(shown, "]");
            shown_port = ntohs(sin6->sin6_port);
        }
    }
    struct hp_http *h = hp_alloc(sizeof *h);
    if (!h) {
        close(fd);
        return NULL;
    }
    h->routes = routes;
    h->lfd = hp_fd_high(fd);
    hp_log("heapprof: serving http://%s:%d/debug/pprof/", shown, shown_port);
    return h;
}

/* ---- answers ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static void conn_close(struct hp_http_conn *c)
{
    void *window = c->window;
    c->window = NULL;
    if (window)
        c->server->routes->window_drop(window);
    if (c->fd >= 0)
        close(c->fd);
    hp_free(c->out, c->outcap);
    struct hp_http *server = c->server;
    memset(c, 0, sizeof *c);
    c->server = server;
    c->fd = -1;
    c->state = FREE;
}

void hp_http_respond(struct hp_http_conn *c, int status, const char *ctype, const char *extra,
                     const void *body, size_t len)
{
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "X-Content-Type-Options: nosniff\r\n"
                      "Cache-Control: no-store\r\n"
                      "Connection: close\r\n"
                      "%s\r\n",
                      status, reason(status), ctype, len, extra ? extra : "");
    if (hl < 0 || (size_t)hl >= sizeof head)
        hl = 0;
    size_t total = (size_t)hl + (c->head ? 0 : len);
    hp_free(c->out, c->outcap);
    c->outcap = total ? total : 1;
    c->out = hp_alloc(c->outcap);
    if (!c->out) {
        c->outcap = 0;
        conn_close(c); /* no memory for an answer: drop the connection */
        return;
    }
    memcpy(c->out, head, (size_t)hl);
    if (!c->head && len)
        memcpy(c->out + hl, body, len);
    c->outlen = total;
    c->outoff = 0;
    c->state = WRITING;
    c->deadline = hp_mono_ms() + WRITE_MS;
}

void hp_http_respond_text(struct hp_http_conn *c, int status, const char *fmt, ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof body)
        n = sizeof body - 1;
    hp_http_respond(c, status, "text/plain; charset=utf-8", NULL, body, (size_t)n);
}

void hp_http_wait(struct hp_http_conn *c, int64_t ms, void *window)
{
    c->window = window;
    c->state = WAITING;
    c->deadline = hp_mono_ms() + ms;
    c->wake_fd1 = 0;
}

void hp_http_wait_fd(struct hp_http_conn *c, int64_t ms, int fd, void *window)
{
    hp_http_wait(c, ms, window);
    c->wake_fd1 = fd + 1;
}

void hp_http_each_window(const struct hp_http_conn *c,
                         void (*fn)(const void *window, int64_t ms_left, void *arg), void *arg)
{
    int64_t now = hp_mono_ms();
    for (int i = 0; i < MAX_CONNS; i++) {
        const struct hp_http_conn *w = &c->server->conns[i];
        if (w->state == WAITING && w->window)
            fn(w->window, w->deadline - now, arg);
    }
}

bool hp_http_header_has(const struct hp_http_conn *c, const char *name, const char *token)
{
    size_t nl = strlen(name);
    for (const char *l = c->headers; l && *l;) {
        while (*l == '\r' || *l == '\n')
            l++;
        const char *end = strpbrk(l, "\r\n");
        size_t ll = end ? (size_t)(end - l) : strlen(l);
        if (ll > nl && !strncasecmp(l, name, nl) && l[nl] == ':') {
            char value[512];
            size_t vl = ll - nl - 1 < sizeof value - 1 ? ll - nl - 1 : sizeof value - 1;
            memcpy(value, l + nl + 1, vl);
            value[vl] = 0;
            if (strcasestr(value, token))
                return true;
        }
        l += ll;
    }
    return false;
}

/* ---- requests ---- */

/* The request line (METHOD SP TARGET SP HTTP/x.y) goes to the handlers. */
static void handle_request(struct hp_http_conn *c)
{
    char *eol = strstr(c->req, "\r\n");
    if (!eol)
        eol = strchr(c->req, '\n');
    if (!eol) {
        hp_http_respond_text(c, 400, "bad request\n");
        return;
    }
    *eol = 0;
    c->headers = eol + 1;
    char method[16], target[2048], version[16];
    if (sscanf(c->req, "%15s %2047s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        hp_http_respond_text(c, 400, "bad request line\n");
        return;
    }
    c->head = !strcmp(method, "HEAD");
    char *query = strchr(target, '?');
    if (query)
        *query++ = 0;
    c->server->routes->request(c, method, target, query);
}

/* Whether the request is whole: its head, and the body its Content-Length
 * announces (a POST to /debug/pprof/symbol carries its addresses there),
 * which must fit in the same MAX_REQUEST bytes. */
static bool head_complete(struct hp_http_conn *c)
{
    char *end = strstr(c->req, "\r\n\r\n");
    size_t skip = 4;
    if (!end) {
        end = strstr(c->req, "\n\n");
        skip = 2;
    }
    if (!end)
        return false;
    size_t headlen = (size_t)(end - c->req) + skip;
    size_t want = 0;
    for (const char *p = c->req; p && p < end; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (!strncasecmp(p, "Content-Length:", 15)) {
            want = strtoul(p + 15, NULL, 10);
            break;
        }
    }
    if (want > MAX_REQUEST - headlen)
        want = MAX_REQUEST - headlen; /* what does not fit is not read */
    if (c->reqlen < headlen + want && c->reqlen < MAX_REQUEST)
        return false;
    c->body = c->req + headlen;
    c->bodylen = c->reqlen - headlen < want ? c->reqlen - headlen : want;
    return true;
}

const char *hp_http_body(const struct hp_http_conn *c, size_t *len)
{
    *len = c->body ? c->bodylen : 0;
    return c->body;
}

static void on_readable(struct hp_http_conn *c)
{
    for (;;) {
        ssize_t n = hp_recv(c->fd, c->req + c->reqlen, MAX_REQUEST - c->reqlen, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->reqlen += (size_t)n;
        c->req[c->reqlen] = 0;
        if (memchr(c->req, 0, c->reqlen)) {
            /* Not HTTP: answer at once rather than wait for a head. */
            hp_http_respond_text(c, 400, "bad request\n");
            return;
        }
        if (head_complete(c)) {
            handle_request(c);
            return;
        }
        if (c->reqlen >= MAX_REQUEST) {
            hp_http_respond_text(c, 431, "request head too large\n");
            return;
        }
    }
}

/* The client of a window is heard from before its answer: it went away
 * (then the window ends here: conn_close tells the handler), or sent more,
 * which is dropped (one request per connection). */
static void on_waiting(struct hp_http_conn *c, short revents)
{
    if (revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
        conn_close(c);
        return;
    }
    char drain[512];
    for (;;) {
        ssize_t n = hp_recv(c->fd, drain, sizeof drain, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
    }
}

static void on_writable(struct hp_http_conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            break;
        c->outoff += (size_t)n;
    }
    conn_close(c);
}

static void accept_all(struct hp_http *h)
{
    for (;;) {
        int fd = hp_accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct hp_http_conn *c = NULL;
        for (int i = 0; i < MAX_CONNS && !c; i++)
            if (h->conns[i].state == FREE)
                c = &h->conns[i];
        if (!c) {
            /* Full of slow clients: refuse this one rather than wait. */
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
        }
        memset(c, 0, sizeof *c);
        c->server = h;
        c->fd = fd;
        c->state = READING;
        c->deadline = hp_mono_ms() + REQUEST_MS;
    }
}

/* ---- the loop (agent.c) ---- */

int hp_http_pollfds(struct hp_http *h, struct pollfd *fds, int max, int64_t *deadline)
{
    int n = 0;
    if (n < max) {
        fds[n].fd = h->lfd;
        fds[n].events = POLLIN;
        fds[n].revents = 0;
        n++;
    }
    for (int i = 0; i < MAX_CONNS && n < max; i++) {
        struct hp_http_conn *c = &h->conns[i];
        if (c->state == FREE)
            continue;
        if (c->deadline < *deadline)
            *deadline = c->deadline;
        fds[n].fd = c->fd;
        /* A window waits for its client going away: its FIN (POLLRDHUP,
         * or a read of 0), a reset (POLLHUP, POLLERR, always reported). */
        fds[n].events = c->state == READING   ? POLLIN
                        : c->state == WAITING ? POLLIN | POLLRDHUP
                                              : POLLOUT;
        fds[n].revents = 0;
        n++;
        if (c->state == WAITING && c->wake_fd1 && n < max) {
            fds[n].fd = c->wake_fd1 - 1;
            fds[n].events = POLLIN;
            fds[n].revents = 0;
            n++;
        }
    }
    return n;
}

void hp_http_service(struct hp_http *h, const struct pollfd *fds, int n)
{
    for (int k = 0; k < n; k++) {
        if (!fds[k].revents)
            continue;
        if (fds[k].fd == h->lfd) {
            accept_all(h);
            continue;
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            struct hp_http_conn *c = &h->conns[i];
            if (c->state == WAITING && c->wake_fd1 && c->wake_fd1 - 1 == fds[k].fd) {
                c->deadline = 0; /* what the window waited for came: it ends below */
                break;
            }
            if (c->state == FREE || c->fd != fds[k].fd)
                continue;
            if (c->state == READING)
                on_readable(c);
            else if (c->state == WAITING)
                on_waiting(c, fds[k].revents);
            else if (c->state == WRITING)
                on_writable(c);
            break;
        }
    }
    int64_t now = hp_mono_ms();
    for (int i = 0; i < MAX_CONNS; i++) {
        struct hp_http_conn *c = &h->conns[i];
        if (c->state == FREE || c->deadline > now)
            continue;
        if (c->state == WAITING) {
            /* The window is the handler's again: its answer cannot drop it. */
            void *window = c->window;
            c->window = NULL;
            h->routes->window_end(c, window);
            if (c->state == WRITING)
                on_writable(c);
            else if (!(c->state == WAITING && c->window)) /* not waiting again */
                conn_close(c);
        } else {
            /* Too slow to send a request or to read the answer. */
            conn_close(c);
        }
    }
}

/* After fork, in the child: the listening socket and the connections are
 * the parent's; the child closes its copies and does not serve. */
void hp_http_child(struct hp_http *h)
{
    close(h->lfd);
    h->lfd = -1;
    for (int i = 0; i < MAX_CONNS; i++)
        if (h->conns[i].state != FREE) {
            close(h->conns[i].fd);
            if (h->conns[i].state == WAITING && h->conns[i].wake_fd1)
                close(h->conns[i].wake_fd1 - 1);
        }
}
