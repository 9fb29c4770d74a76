/* The /debug/pprof/ endpoint, in net/http/pprof's conventions.
 *
 * Served by the background thread (agent.c) from one poll loop, so no
 * client can hold up another: every connection is non-blocking, has a
 * deadline (a request must arrive complete within REQUEST_MS of the accept,
 * however slowly its bytes trickle in), a size limit on the request head,
 * and is closed after one response. A `?seconds=N` delta keeps its
 * connection waiting in the loop, not the thread; as Go's handlers stop when
 * the request's context ends, a window ends at once when its client goes
 * away (the socket polled for POLLRDHUP, or read to its end), and a CPU
 * profile's window so releases the profiler. The thread is marked busy,
 * so its allocations (symbolizing, encoding, buffers) go straight to the
 * real allocator and are never counted in the program's profile.
 *
 * Served: /debug/pprof/ (index), heap, allocs, peak (heapprof's own: the
 * in-use profile at the peak), cmdline, timeline (heapprof's own: the heap
 * over time as a chart, or ?format=json, timeline.c), and profile: a CPU profile over
 * ?seconds=N (30 by default, as Go's; at most MAX_SECONDS), whose timers run
 * only during the window (record/cpu.c); like a delta, its connection waits
 * in the loop, so the other endpoints keep answering meanwhile. A second
 * profile request while one runs gets Go's answer: 500, "Could not enable
 * CPU profiling: cpu profiling already in use". Left out: trace, goroutine,
 * block, mutex, threadcreate (Go runtime profiles a C program does not
 * have) and symbol (heapprof's profiles carry their own symbols): each gets
 * a 404 that says so (left_out), not Go's bare "404 page not found".
 */
#define _GNU_SOURCE
#include "report.h"
#include "heapprof.h"

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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_CONNS = 128,
    MAX_REQUEST = 8192,
    REQUEST_MS = 5000,
    WRITE_MS = 30000,
    MAX_SECONDS = 3600,
};

enum conn_state { FREE, READING, WAITING, WRITING };
enum profile_kind { HEAP, ALLOCS, PEAK };

struct conn {
    struct hp_http *server;
    enum conn_state state;
    int fd;
    int64_t deadline;
    char req[MAX_REQUEST + 1];
    size_t reqlen;
    char *out;
    size_t outlen, outoff;
    /* A delta in progress. */
    struct hp_snapshot *base;
    long seconds;
    enum profile_kind kind;
    bool head;
    bool cpu; /* a CPU profile's window */
};

struct hp_http {
    int lfd;
    struct conn conns[MAX_CONNS];
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

struct hp_http *hp_http_open(const char *spec)
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
    struct hp_http *h = calloc(1, sizeof *h);
    if (!h) {
        close(fd);
        return NULL;
    }
    h->lfd = hp_fd_high(fd);
    hp_log("heapprof: serving http://%s:%d/debug/pprof/", shown, shown_port);
    return h;
}

/* ---- responses ---- */

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

static void conn_close(struct conn *c)
{
    if (c->cpu && c->state == WAITING) {
        struct hp_cpu_profile p;
        if (hp_cpu_stop(HP_CPU_HTTP, &p) == 0)
            hp_cpu_release(&p);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    if (c->base) {
        hp_snapshot_release(c->base);
        free(c->base);
    }
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->state = FREE;
}

static void respond(struct conn *c, int status, const char *ctype, const char *extra,
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
    free(c->out);
    c->out = malloc(total ? total : 1);
    if (!c->out) {
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

static void respond_text(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void respond_text(struct conn *c, int status, const char *fmt, ...)
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
    respond(c, status, "text/plain; charset=utf-8", NULL, body, (size_t)n);
}

/* A growable text buffer on the real heap (this thread is busy). */
struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

static void html_escape(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            bprintf(b, "&lt;");
        else if (*s == '>')
            bprintf(b, "&gt;");
        else if (*s == '&')
            bprintf(b, "&amp;");
        else
            bprintf(b, "%c", *s);
    }
}

/* The arguments the program started with: a server that rewrites its title
 * (its argv) later does not change them. */
static size_t read_cmdline(char *out, size_t cap)
{
    struct hp_arena a = {0};
    size_t len = 0;
    const char *text = hp_start_cmdline(&len);
    if (!text)
        text = hp_read_file(&a, "/proc/self/cmdline", &len);
    if (len > cap)
        len = cap;
    if (text)
        memcpy(out, text, len);
    hp_arena_release(&a);
    /* Arguments are NUL-separated, as Go joins os.Args with "\x00"; drop
     * the final NUL. */
    if (len && out[len - 1] == 0)
        len--;
    return len;
}

static void serve_index(struct conn *c)
{
    struct hp_snapshot s;
    size_t nb = 0;
    if (hp_snapshot_take(&s) == 0)
        nb = s.nbuckets;
    hp_snapshot_release(&s);
    bool peak = hp_snapshot_peak(&s) == 0;
    hp_snapshot_release(&s);
    char cmd[4096];
    size_t cl = read_cmdline(cmd, sizeof cmd - 1);
    for (size_t i = 0; i < cl; i++)
        if (!cmd[i])
            cmd[i] = ' ';
    cmd[cl] = 0;
    struct buf b = {0};
    bprintf(&b,
            "<!DOCTYPE html>\n<html>\n<head>\n<title>/debug/pprof/</title>\n"
            "<style>.profile-name{display:inline-block; width:6rem;}</style>\n"
            "</head>\n<body>\n/debug/pprof/\n<br>\n<p>heapprof %s, process %ld: ",
            HEAPPROF_VERSION, (long)getpid());
    html_escape(&b, cmd);
    bprintf(&b,
            ", sampling every %ld bytes on average%s; heapprof's own memory: %zu KiB (stack "
            "table %zu KiB of at most %zu KiB, HEAPPROF_MAX_MEMORY; live set %zu KiB)%s</p>\n",
            hp_cfg.rate, hp_cfg.rate <= 1 ? " (exact: every allocation)" : "",
            hp_mem_mapped() >> 10, hp_table_bytes() >> 10, hp_cfg.max_memory >> 10,
            hp_live_bytes() >> 10,
            hp_table_folded() ? "; new stacks are counted under [other]" : "");
    /* The windows that clients wait on: a CPU profile among them is why a
     * new one gets the 500 meanwhile. */
    int64_t now = hp_mono_ms();
    int nwin = 0;
    for (int i = 0; i < MAX_CONNS; i++) {
        const struct conn *w = &c->server->conns[i];
        if (w->state != WAITING)
            continue;
        const char *what = w->cpu              ? "a CPU profile (profile)"
                           : w->kind == ALLOCS ? "an allocs delta"
                                               : "a heap delta";
        int64_t left = (w->deadline - now + 999) / 1000;
        bprintf(&b, "%s%s over %ld s, %lld s left", nwin++ ? "; " : "<p>In progress: ", what,
                w->seconds, (long long)(left > 0 ? left : 0));
    }
    if (nwin)
        bprintf(&b, ". A window ends early when its client disconnects.</p>\n");
    bprintf(&b, "Types of profiles available:\n<table>\n"
                "<thead><td>Count</td><td>Profile</td></thead>\n");
    bprintf(&b, "<tr><td>%zu</td><td><a href='allocs?debug=1'>allocs</a></td></tr>\n", nb);
    bprintf(&b, "<tr><td>1</td><td><a href='cmdline'>cmdline</a></td></tr>\n");
    bprintf(&b, "<tr><td>%zu</td><td><a href='heap?debug=1'>heap</a></td></tr>\n", nb);
    bprintf(&b, "<tr><td>%d</td><td><a href='peak?debug=1'>peak</a></td></tr>\n", peak ? 1 : 0);
    bprintf(&b, "<tr><td>1</td><td><a href='timeline'>timeline</a></td></tr>\n");
    bprintf(&b, "<tr><td></td><td><a href='profile'>profile</a></td></tr>\n");
    bprintf(&b,
            "</table>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n"
            "<li><div class=profile-name>allocs: </div> A sampling of all past memory "
            "allocations (the heap profile with alloc_space shown by default)</li>\n"
            "<li><div class=profile-name>cmdline: </div> The command line invocation of the "
            "current program</li>\n"
            "<li><div class=profile-name>heap: </div> A sampling of memory allocations of live "
            "objects. You can specify the seconds GET parameter to get a delta profile over that "
            "many seconds, and debug=1 for a text form.</li>\n"
            "<li><div class=profile-name>peak: </div> The live objects when the estimated in-use "
            "bytes were at their highest (heapprof's own; within about 6%% below the peak)</li>\n"
            "<li><div class=profile-name>timeline: </div> The heap over time: the estimated "
            "in-use bytes of the stacks that hold the most, as a stacked area chart "
            "(heapprof's own; format=json for the series)</li>\n"
            "<li><div class=profile-name>profile: </div> CPU profile. You can specify the "
            "duration in the seconds GET parameter (30 by default). After you get the profile "
            "file, use the go tool pprof command to investigate the profile.</li>\n"
            "</ul>\n</p>\n<p>Read them with <code>go tool pprof http://HOST:PORT/debug/pprof/"
            "heap</code>.</p>\n</body>\n</html>\n");
    if (b.oom)
        respond_text(c, 500, "out of memory\n");
    else
        respond(c, 200, "text/html; charset=utf-8", NULL, b.p, b.len);
    free(b.p);
}

static int by_inuse_desc(const void *x, const void *y)
{
    const struct hp_snap_bucket *a = x, *b = y;
    if (a->est[3] != b->est[3])
        return a->est[3] < b->est[3] ? 1 : -1;
    return a->est[1] < b->est[1] ? 1 : a->est[1] > b->est[1] ? -1 : 0;
}

/* The legacy text form Go writes for ?debug=1, each bucket's stack with
 * function names and lines. Go writes raw sampled counts and the rate
 * (2R, "heap/2R"), and readers unbias each line by its average size; a
 * bucket here mixes sizes, so the values written are the unbiased
 * estimates, and the header says "heap/2": rate 1, nothing to scale. */
static void serve_text(struct conn *c, struct hp_snapshot *s)
{
    qsort(s->buckets, s->nbuckets, sizeof *s->buckets, by_inuse_desc);
    int64_t t[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < s->nbuckets; i++)
        for (int k = 0; k < 4; k++)
            t[k] += s->buckets[i].est[k];
    struct buf b = {0};
    bprintf(&b, "heap profile: %lld: %lld [%lld: %lld] @ heap/2\n", (long long)t[2],
            (long long)t[3], (long long)t[0], (long long)t[1]);
    struct hp_symbolizer *sym = hp_sym_open(&s->arena);
    for (size_t i = 0; i < s->nbuckets && !b.oom; i++) {
        struct hp_snap_bucket *sb = &s->buckets[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        int depth = hp_stack_frames(sb->stack, fs, HP_MAX_FRAMES);
        bprintf(&b, "%lld: %lld [%lld: %lld] @", (long long)sb->est[2], (long long)sb->est[3],
                (long long)sb->est[0], (long long)sb->est[1]);
        for (int d = 0; d < depth; d++)
            bprintf(&b, " %#lx", (unsigned long)(fs[d].ip - 1));
        bprintf(&b, "\n");
        const struct hp_labelset *ls = hp_labelset_at(sb->labels);
        if (ls) {
            bprintf(&b, "# labels: bytes=%llu", (unsigned long long)hp_snap_avg_size(sb));
            if (ls->thread)
                bprintf(&b, " thread=%s", ls->thread);
            for (int k = 0; k < ls->n; k++)
                bprintf(&b, " %s=%s", ls->kv[2 * k], ls->kv[2 * k + 1]);
            bprintf(&b, "\n");
        }
        for (int d = 0; d < depth; d++) {
            struct hp_symbolized fr;
            uintptr_t pc = fs[d].ip;
            hp_sym_lookup(sym, pc, fs[d].epoch, &fr);
            if (fr.nlines == 0)
                bprintf(&b, "#\t%#lx\n", (unsigned long)(pc - 1));
            for (int l = 0; l < fr.nlines; l++) {
                const struct hp_frame_line *ln = &fr.lines[l];
                if (ln->file)
                    bprintf(&b, "#\t%#lx\t%s\t%s:%d\n", (unsigned long)(pc - 1), ln->function,
                            ln->file, ln->line);
                else
                    bprintf(&b, "#\t%#lx\t%s\n", (unsigned long)(pc - 1), ln->function);
            }
        }
        bprintf(&b, "\n");
    }
    hp_sym_close(sym);
    bprintf(&b,
            "# heapprof %s: the values above are unbiased estimates (sampling rate %ld bytes), "
            "one line per stack and size class\n",
            HEAPPROF_VERSION, s->rate);
    if (b.oom)
        respond_text(c, 500, "out of memory\n");
    else
        respond(c, 200, "text/plain; charset=utf-8", NULL, b.p, b.len);
    free(b.p);
}

static void serve_profile(struct conn *c, struct hp_snapshot *s)
{
    enum profile_kind kind = c->kind;
    struct hp_symbolizer *sym = hp_sym_open(&s->arena);
    uint8_t *gz;
    size_t len;
    int r =
        hp_profile_encode(s, sym, hp_start_ns(), kind == ALLOCS ? "alloc_space" : NULL, &gz, &len);
    hp_sym_close(sym);
    if (r) {
        respond_text(c, 500, "could not encode the profile: %s\n", strerror(-r));
        return;
    }
    const char *name = kind == ALLOCS ? "allocs" : kind == PEAK ? "peak" : "heap";
    char extra[128];
    snprintf(extra, sizeof extra, "Content-Disposition: attachment; filename=\"%s\"\r\n", name);
    respond(c, 200, "application/octet-stream", extra, gz, len);
}

/* ---- requests ---- */

static bool query_param(const char *query, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t pl = amp ? (size_t)(amp - p) : strlen(p);
        if (pl > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = pl - kl - 1;
            if (vl >= len)
                vl = len - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = 0;
            return true;
        }
        if (pl == kl && !strncmp(p, key, kl)) {
            out[0] = 0;
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static void serve_timeline(struct conn *c, const char *query)
{
    char val[16];
    bool json = false;
    if (query && query_param(query, "format", val, sizeof val)) {
        json = !strcmp(val, "json");
        if (!json && strcmp(val, "html") != 0) {
            respond_text(c, 400, "bad format: want json or html\n");
            return;
        }
    }
    struct hp_arena a = {0};
    char *text;
    size_t len;
    int r = hp_timeline_render(&a, json, &text, &len);
    if (r == -ENOENT)
        respond_text(c, 404, "the timeline is off\n");
    else if (r)
        respond_text(c, 500, "could not make the timeline: %s\n", strerror(-r));
    else
        respond(c, 200, json ? "application/json" : "text/html; charset=utf-8", NULL, text, len);
    hp_arena_release(&a);
}

/* A CPU profile's window starts; the answer comes when it ends. */
static void start_cpu(struct conn *c, const char *query)
{
    char val[64];
    long seconds = 30; /* Go's default, also for a value it cannot use */
    if (query && query_param(query, "seconds", val, sizeof val)) {
        char *end;
        long v = strtol(val, &end, 10);
        if (!*end && v > MAX_SECONDS) {
            respond_text(c, 400, "bad seconds: want a whole number from 1 to %d\n", MAX_SECONDS);
            return;
        }
        if (!*end && end != val && v > 0)
            seconds = v;
    }
    int r = hp_cpu_start(hp_cfg.cpu_hz, HP_CPU_HTTP, NULL);
    if (r) {
        char body[256];
        int n = snprintf(body, sizeof body, "Could not enable CPU profiling: %s\n",
                         r == -EBUSY   ? "cpu profiling already in use"
                         : r == -EPERM ? "the program handles SIGPROF itself"
                                       : strerror(-r));
        respond(c, 500, "text/plain; charset=utf-8", "X-Go-Pprof: 1\r\n", body,
                n > 0 && (size_t)n < sizeof body ? (size_t)n : 0);
        return;
    }
    c->cpu = true;
    c->seconds = seconds;
    c->state = WAITING;
    c->deadline = hp_mono_ms() + seconds * 1000;
}

static void finish_cpu(struct conn *c)
{
    struct hp_cpu_profile p;
    int r = hp_cpu_stop(HP_CPU_HTTP, &p);
    c->cpu = false;
    if (r) {
        respond_text(c, 500, "the CPU profile was stopped: %s\n", strerror(-r));
        return;
    }
    char comment[512];
    struct hp_symbolizer *sym = hp_sym_open(&p.arena);
    uint8_t *gz;
    size_t len;
    r = hp_cpu_encode(&p, sym, hp_cpu_comment(&p, comment, sizeof comment), &gz, &len);
    hp_sym_close(sym);
    if (r)
        respond_text(c, 500, "could not encode the profile: %s\n", strerror(-r));
    else
        respond(c, 200, "application/octet-stream",
                "Content-Disposition: attachment; filename=\"profile\"\r\n", gz, len);
    hp_cpu_release(&p);
}

/* A 404 for a path of net/http/pprof's that is not served here says why,
 * and what to use instead; anything else gets Go's plain answer. */
static void left_out(struct conn *c, const char *path, size_t pl)
{
    static const struct {
        const char *name, *why;
    } known[] = {
        {"trace", "is not served yet (Go's execution trace has no C counterpart here); for where "
                  "the time goes, take a CPU profile: /debug/pprof/profile?seconds=N"},
        {"symbol", "is not served: heapprof's profiles carry their own symbols (function names, "
                   "files and lines), so go tool pprof never needs to ask for them"},
        {"goroutine", "is a Go runtime profile: a C program has no goroutines"},
        {"block", "is a Go runtime profile (goroutines blocked on channels and locks): not "
                  "served for a C program"},
        {"mutex", "is a Go runtime profile (contended Go mutexes): not served for a C program"},
        {"threadcreate", "is a Go runtime profile: not served for a C program"},
    };
    if (!strncmp(path, "/debug/pprof/", pl + 1))
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (!strcmp(path + pl + 1, known[i].name)) {
                respond_text(c, 404,
                             "heapprof: /debug/pprof/%s %s. Served: heap, allocs, peak, "
                             "profile, timeline, cmdline (the index is /debug/pprof/).\n",
                             known[i].name, known[i].why);
                return;
            }
    respond_text(c, 404, "404 page not found\n");
}

static void handle_request(struct conn *c)
{
    /* Request line: METHOD SP TARGET SP HTTP/x.y */
    char *eol = strstr(c->req, "\r\n");
    if (!eol)
        eol = strchr(c->req, '\n');
    if (!eol) {
        respond_text(c, 400, "bad request\n");
        return;
    }
    *eol = 0;
    char method[16], target[2048], version[16];
    if (sscanf(c->req, "%15s %2047s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        respond_text(c, 400, "bad request line\n");
        return;
    }
    c->head = !strcmp(method, "HEAD");
    char *query = strchr(target, '?');
    if (query)
        *query++ = 0;
    const char *path = target;
    const char *prefix = "/debug/pprof";
    size_t pl = strlen(prefix);
    enum {
        R_INDEX,
        R_HEAP,
        R_ALLOCS,
        R_PEAK,
        R_CMDLINE,
        R_TIMELINE,
        R_PROFILE,
        R_NONE
    } route = R_NONE;
    if (!strncmp(path, prefix, pl)) {
        const char *rest = path + pl;
        if (!*rest || !strcmp(rest, "/"))
            route = R_INDEX;
        else if (!strcmp(rest, "/heap"))
            route = R_HEAP;
        else if (!strcmp(rest, "/allocs"))
            route = R_ALLOCS;
        else if (!strcmp(rest, "/peak"))
            route = R_PEAK;
        else if (!strcmp(rest, "/cmdline"))
            route = R_CMDLINE;
        else if (!strcmp(rest, "/timeline"))
            route = R_TIMELINE;
        else if (!strcmp(rest, "/profile"))
            route = R_PROFILE;
    }
    if (route == R_NONE) {
        left_out(c, path, pl);
        return;
    }
    if (strcmp(method, "GET") != 0 && !c->head) {
        static const char msg[] = "method not allowed: use GET or HEAD\n";
        respond(c, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", msg, sizeof msg - 1);
        return;
    }
    if (route == R_INDEX) {
        serve_index(c);
        return;
    }
    if (route == R_CMDLINE) {
        char cmd[65536];
        size_t len = read_cmdline(cmd, sizeof cmd);
        respond(c, 200, "text/plain; charset=utf-8", NULL, cmd, len);
        return;
    }
    char val[64];
    if (route == R_TIMELINE) {
        serve_timeline(c, query);
        return;
    }
    if (route == R_PROFILE) {
        start_cpu(c, query);
        return;
    }
    long debug = 0, seconds = 0;
    if (query && query_param(query, "debug", val, sizeof val))
        debug = strtol(val, NULL, 10);
    if (query && query_param(query, "seconds", val, sizeof val)) {
        char *end;
        seconds = strtol(val, &end, 10);
        if (*end || seconds <= 0 || seconds > MAX_SECONDS) {
            respond_text(c, 400, "bad seconds: want a whole number from 1 to %d\n", MAX_SECONDS);
            return;
        }
        if (route == R_PEAK || debug) {
            respond_text(c, 400,
                         "seconds= gives a delta of the heap or allocs profile, "
                         "without debug=\n");
            return;
        }
    }
    c->kind = route == R_ALLOCS ? ALLOCS : route == R_PEAK ? PEAK : HEAP;
    struct hp_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        respond_text(c, 500, "out of memory\n");
        return;
    }
    int r = c->kind == PEAK ? hp_snapshot_peak(s) : hp_snapshot_take(s);
    if (r) {
        hp_snapshot_release(s);
        free(s);
        if (r == -ENOENT)
            respond_text(c, 404, "no peak profile yet: nothing sampled so far\n");
        else
            respond_text(c, 500, "could not take a snapshot: %s\n", strerror(-r));
        return;
    }
    if (seconds) {
        /* The window's start; the answer comes when it ends. */
        c->base = s;
        c->seconds = seconds;
        c->state = WAITING;
        c->deadline = hp_mono_ms() + seconds * 1000;
        return;
    }
    if (debug)
        serve_text(c, s);
    else
        serve_profile(c, s);
    hp_snapshot_release(s);
    free(s);
}

static void finish_delta(struct conn *c)
{
    struct hp_snapshot s;
    int r = hp_snapshot_take(&s);
    if (r == 0)
        r = hp_snapshot_delta(&s, c->base);
    if (r == 0) {
        char comment[96];
        snprintf(comment, sizeof comment,
                 "heapprof delta over %ld s: alloc values in the window, inuse values the change",
                 c->seconds);
        s.comment = comment;
        serve_profile(c, &s);
    } else {
        respond_text(c, 500, "could not take a snapshot: %s\n", strerror(-r));
    }
    hp_snapshot_release(&s);
    if (c->base) { /* NULL if the answer could not be made (conn_close) */
        hp_snapshot_release(c->base);
        free(c->base);
        c->base = NULL;
    }
}

static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->req + c->reqlen, MAX_REQUEST - c->reqlen, 0);
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
            respond_text(c, 400, "bad request\n");
            return;
        }
        if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
            handle_request(c);
            return;
        }
        if (c->reqlen >= MAX_REQUEST) {
            respond_text(c, 431, "request head too large\n");
            return;
        }
    }
}

/* The client of a window is heard from before its answer: it went away
 * (then the window ends here, and a CPU profile's releases the profiler:
 * conn_close), or sent more, which is dropped (one request per
 * connection). */
static void on_waiting(struct conn *c, short revents)
{
    if (revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
        conn_close(c);
        return;
    }
    char drain[512];
    for (;;) {
        ssize_t n = recv(c->fd, drain, sizeof drain, 0);
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

static void on_writable(struct conn *c)
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
        int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct conn *c = NULL;
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

/* ---- the loop's interface (agent.c) ---- */

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
        struct conn *c = &h->conns[i];
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
            struct conn *c = &h->conns[i];
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
        struct conn *c = &h->conns[i];
        if (c->state == FREE || c->deadline > now)
            continue;
        if (c->state == WAITING) {
            if (c->cpu)
                finish_cpu(c);
            else
                finish_delta(c);
            if (c->state == WRITING)
                on_writable(c);
            else
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
        if (h->conns[i].state != FREE)
            close(h->conns[i].fd);
}
