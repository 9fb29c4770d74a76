/* The background thread: numbered snapshots on a signal or at an interval
 * (dump.c), the HTTP endpoint (the server, http.c, serving the handlers of
 * handlers.c) and the heap over time (timeline.c).
 *
 * Started only when one of HEAPPROF_HTTP, HEAPPROF_SIGNAL,
 * HEAPPROF_INTERVAL or HEAPPROF_TIMELINE asks for it. The signal handler does nothing but write a
 * byte to a pipe, which is async-signal-safe; the snapshot is taken here.
 * The thread blocks every signal, so the program's own signals are never
 * delivered to it, and it is marked busy, so nothing it allocates is
 * recorded. A forked child has no copy of this thread: it closes the
 * descriptors, and neither serves nor takes signal or interval snapshots;
 * it still writes its exit profile. A program exec'd by a profiled process
 * inherits HEAPPROF_HTTP with the rest of the environment: it does not serve
 * the address its ancestor serves, and says nothing about it (its stderr is
 * the program's); only the process that was started with the address
 * serves it (parent_serves).
 */
#define _GNU_SOURCE
#include "agent.h"
#include "iface.h"
#include "dump.h"
#include "handlers.h"
#include "http.h"
#include "leakcheck.h"
#include "reach.h"
#include "timeline.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int pipe_r = -1, pipe_w = -1;
static struct hp_http *http;
static bool running;

static void on_signal(int sig)
{
    int saved = errno;
    if (pipe_w >= 0)
        (void)!write(pipe_w, "s", 1);
    errno = saved;
}

/* Whether this process's parent (which forked it, and then it or this
 * process exec'd) runs heapprof with the same HEAPPROF_HTTP, and so serves
 * the address or left it to its own parent: the parent's environment as it
 * started (/proc/PPID/environ) holds the same entry, and the parent has
 * libheapprof mapped. The second test keeps serving a
 * program started by an unprofiled shell that merely has the variable
 * (`HEAPPROF_HTTP=:6060 sh run.sh`, where run.sh preloads the library). A
 * parent whose /proc entries cannot be read counts as unprofiled. */
static bool parent_serves(void)
{
    const char *raw = hp_env("HEAPPROF_HTTP");
    pid_t ppid = getppid();
    if (!raw || ppid <= 1 || !hp_proc_environ_inherits(ppid, "HEAPPROF_HTTP", raw))
        return false;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/maps", (long)ppid);
    struct hp_arena a = {0};
    const char *maps = hp_read_file(&a, path, NULL);
    bool profiled = maps && strstr(maps, "/libheapprof") != NULL;
    hp_arena_release(&a);
    return profiled;
}

/* HEAPPROF_LEAK_INTERVAL: a live check's clone, while one runs. */
static struct hp_reach periodic;
static bool periodic_on;
static int64_t periodic_t0;
/* A periodic check that has not answered in this long is ended. */
enum { PERIODIC_LIMIT_MS = 600000 };

/* A periodic check that fails says why on stderr, once for each new
 * reason (a server checked every minute would otherwise repeat it). */
static void periodic_failed(int err)
{
    static char said[256];
    char why[256];
    hp_leakcheck_why(why, sizeof why, err, &periodic);
    if (strcmp(why, said) != 0) {
        snprintf(said, sizeof said, "%s", why);
        hp_log("heapprof: a periodic leak check (HEAPPROF_LEAK_INTERVAL) could not be made: %s",
               why);
    }
}

/* Starts the periodic check when it is due (not while another check runs:
 * it then waits for the next interval). */
static void periodic_start(void)
{
    if (periodic_on || !hp_leakcheck_claim())
        return;
    int r = hp_reach_start(&periodic, true);
    if (r == 0) {
        periodic_on = true;
        periodic_t0 = hp_mono_ms();
    } else {
        periodic_failed(r);
        hp_leakcheck_release();
    }
}

/* The periodic check's answer so far: read as it comes, between the
 * server's requests and the timeline's points. */
static struct hp_snapshot periodic_got;

static void periodic_finish(void)
{
    if (hp_reach_pump(&periodic, &periodic_got) == -EAGAIN)
        return; /* more to come */
    struct hp_snapshot s = periodic_got;
    memset(&periodic_got, 0, sizeof periodic_got);
    struct hp_reach_stats st;
    int r = hp_reach_finish(&periodic, &st, &s);
    if (r == 0)
        hp_leakcheck_note(&s, &st);
    else
        periodic_failed(r);
    hp_snapshot_release(&s);
    periodic_on = false;
    hp_leakcheck_release();
}

static void *agent_main(void *arg)
{
    hp_busy_begin();     /* for good: nothing this thread does is recorded */
    hp_cpu_own_thread(); /* nor profiled */
    int64_t next_snap = hp_cfg.interval ? hp_mono_ms() + hp_cfg.interval * 1000 : INT64_MAX;
    int64_t next_leak =
        hp_cfg.leak_interval ? hp_mono_ms() + hp_cfg.leak_interval * 1000 : INT64_MAX;
    struct pollfd fds[256];
    for (;;) {
        int n = 0;
        int64_t next_point = hp_timeline_tick();
        int64_t deadline = next_snap < next_point ? next_snap : next_point;
        if (next_leak < deadline)
            deadline = next_leak;
        int leak_at = -1;
        if (periodic_on) {
            leak_at = n;
            fds[n].fd = periodic.fd;
            fds[n].events = POLLIN;
            fds[n].revents = 0;
            n++;
        }
        if (pipe_r >= 0) {
            fds[n].fd = pipe_r;
            fds[n].events = POLLIN;
            fds[n].revents = 0;
            n++;
        }
        if (http)
            n += hp_http_pollfds(http, fds + n, (int)(sizeof fds / sizeof fds[0]) - n, &deadline);
        int64_t now = hp_mono_ms();
        int timeout = deadline == INT64_MAX ? -1
                      : deadline <= now     ? 0
                                        : (int)(deadline - now < 60000 ? deadline - now : 60000);
        int r = hp_poll(fds, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (leak_at >= 0 && fds[leak_at].revents) {
            periodic_finish();
        } else if (periodic_on && hp_mono_ms() - periodic_t0 > PERIODIC_LIMIT_MS) {
            hp_reach_cancel(&periodic);
            hp_snapshot_release(&periodic_got);
            memset(&periodic_got, 0, sizeof periodic_got);
            periodic_failed(-ETIMEDOUT);
            periodic_on = false;
            hp_leakcheck_release();
        }
        if (hp_mono_ms() >= next_leak) {
            periodic_start();
            next_leak = hp_mono_ms() + hp_cfg.leak_interval * 1000;
        }
        int sig_at = leak_at >= 0 ? 1 : 0;
        if (pipe_r >= 0 && n > sig_at && (fds[sig_at].revents & POLLIN)) {
            char drain[64];
            /* Several signals before we got here make one snapshot. */
            while (hp_read(pipe_r, drain, sizeof drain) > 0)
                ;
            hp_dump_snapshot();
        }
        if (http)
            hp_http_service(http, fds, n);
        if (hp_mono_ms() >= next_snap) {
            hp_dump_snapshot();
            next_snap = hp_mono_ms() + hp_cfg.interval * 1000;
        }
    }
    return arg;
}

void hp_agent_start(void)
{
    if (!hp_cfg.http[0] && !hp_cfg.snap_signal && !hp_cfg.interval && !hp_cfg.timeline &&
        !hp_cfg.leak_interval)
        return;
    bool was_busy = hp_busy_begin();
    if (hp_cfg.http[0] && !parent_serves())
        http = hp_http_open(hp_cfg.http, &hp_handlers);
    /* The endpoint serves the timeline, so it keeps one too. */
    if (hp_cfg.timeline || http)
        hp_timeline_start();
    if (hp_cfg.snap_signal) {
        int p[2];
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
            pipe_r = hp_fd_high(p[0]);
            pipe_w = hp_fd_high(p[1]);
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal;
            sa.sa_flags = SA_RESTART;
            sigemptyset(&sa.sa_mask);
            if (hp_sigaction(hp_cfg.snap_signal, &sa, NULL) != 0)
                hp_log("heapprof: cannot handle signal %d: %s; no snapshots on signal",
                       hp_cfg.snap_signal, strerror(errno));
        } else {
            hp_log("heapprof: cannot make a pipe: %s; no snapshots on signal", strerror(errno));
        }
    }
    if (http || pipe_r >= 0 || hp_cfg.interval || hp_timeline_on() || hp_cfg.leak_interval) {
        int r = hp_thread_spawn(agent_main, "heapprof");
        if (r != 0)
            hp_log("heapprof: cannot start the background thread: %s", strerror(r));
        else
            running = true;
    }
    hp_busy_end(was_busy);
}

void hp_agent_child(void)
{
    hp_timeline_child();
    hp_leakcheck_child();
    if (periodic_on && periodic.fd >= 0)
        close(periodic.fd); /* the parent's check: its clone is not this process's child */
    periodic_on = false;
    hp_snapshot_release(&periodic_got);
    memset(&periodic_got, 0, sizeof periodic_got);
    if (!running)
        return;
    running = false;
    if (http)
        hp_http_child(http);
    http = NULL;
    int w = pipe_w;
    pipe_w = -1;
    if (w >= 0)
        close(w);
    if (pipe_r >= 0)
        close(pipe_r);
    pipe_r = -1;
}
