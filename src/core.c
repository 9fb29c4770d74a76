/* Start-up, the sampled path, fork, the exit dump and the public API.
 *
 * heapprof initialises itself on the first allocation or from its
 * constructor, whichever comes first: allocations happen before any
 * constructor runs. With HEAPPROF unset it only forwards: every thread's
 * countdown is set so that its slow path is never taken again.
 */
#define _GNU_SOURCE
#include "hp.h"
#include "heapprof.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HP_EXPORT __attribute__((visibility("default")))

volatile int hp_state;
static int64_t start_ns;
/* True in a process that is not the root of the profiled process tree: a
 * forked child, or a program exec'd by a profiled process. Its profile gets
 * its pid in the name unless HEAPPROF already has %p. */
static bool not_root;
static int exit_dumped;
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

int64_t hp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A process exec'd by a profiled process inherits HEAPPROF (and
 * LD_PRELOAD): it must not overwrite its parent's profile. The parent's
 * environment as it was started is in /proc/PPID/environ; if it holds the
 * same HEAPPROF, this process is a descendant. */
static bool parent_is_profiled(const char *value)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%ld/environ", (long)getppid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char want[4200];
    int wl = snprintf(want, sizeof want, "HEAPPROF=%s", value);
    bool found = false;
    if (wl > 0 && (size_t)wl < sizeof want) {
        /* Entries are NUL-terminated; carry a partial entry across reads. */
        size_t have = 0;
        for (;;) {
            ssize_t n = read(fd, buf + have, sizeof buf - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            size_t start = 0;
            for (size_t i = 0; i < have; i++) {
                if (buf[i] != 0)
                    continue;
                if (i - start == (size_t)wl && !memcmp(buf + start, want, (size_t)wl))
                    found = true;
                start = i + 1;
            }
            memmove(buf, buf + start, have - start);
            have -= start;
            if (have == sizeof buf)
                have = 0; /* an entry longer than the buffer: not ours */
        }
    }
    close(fd);
    return found;
}

static void fork_prepare(void)
{
    hp_table_lock();
    hp_live_lock_all();
    hp_mem_lock();
}

static void fork_parent(void)
{
    hp_mem_unlock();
    hp_live_unlock_all();
    hp_table_unlock();
}

static void fork_child(void)
{
    /* Only the forking thread exists here; it held every lock. */
    hp_mem_child();
    hp_live_child();
    hp_table_child();
    pthread_mutex_init(&dump_lock, NULL);
    not_root = true;
    hp_sampler_child();
}

void hp_init(void)
{
    int expected = HP_STATE_UNINIT;
    if (!__atomic_compare_exchange_n(&hp_state, &expected, HP_STATE_INITING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    bool was_busy = hp_thread.busy;
    hp_thread.busy = true;
    hp_config_load();
    if (!hp_cfg.enabled) {
        __atomic_store_n(&hp_state, HP_STATE_OFF, __ATOMIC_RELEASE);
        hp_thread.busy = was_busy;
        return;
    }
    start_ns = hp_now_ns();
    if (!hp_cfg.leaks_off && !hp_cfg.leaks_path[0])
        hp_stderr_keep();
    const char *raw = secure_getenv("HEAPPROF");
    not_root = raw && parent_is_profiled(raw);
    hp_stack_init();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    __atomic_store_n(&hp_state, HP_STATE_ON, __ATOMIC_RELEASE);
    hp_thread.busy = was_busy;
}

__attribute__((constructor)) static void hp_constructor(void)
{
    hp_init();
}

void hp_on_alloc(void *p, size_t size)
{
    struct hp_thread *t = &hp_thread;
    int saved = errno;
    t->busy = true;
    void *ips[HP_MAX_FRAMES];
    int depth = hp_stack_capture(ips, HP_MAX_FRAMES);
    struct hp_bucket *b = hp_table_record(ips, depth, size);
    if (b)
        hp_live_insert(p, b);
    t->busy = false;
    errno = saved;
}

void hp_on_free(void *p)
{
    hp_live_remove(p);
}

/* Snapshot, symbolize, write; optionally report leaks. Returns 0 or a
 * negative errno from writing the profile; *nleaks gets the number of leaking
 * stacks reported. */
static int dump(const char *path, bool leaks, int *nleaks)
{
    bool was_busy = hp_thread.busy;
    hp_thread.busy = true;
    pthread_mutex_lock(&dump_lock);
    hp_stderr_choose();
    int r;
    struct hp_snapshot snap;
    if ((r = hp_snapshot_take(&snap)) == 0) {
        struct hp_symbolizer *sym = hp_sym_open(&snap.arena);
        r = hp_profile_write(&snap, sym, path, start_ns);
        if (r)
            hp_log("heapprof: cannot write the profile %s: %s", path, strerror(-r));
        if (leaks && nleaks)
            *nleaks = hp_leaks_report(&snap, sym);
        hp_sym_close(sym);
        hp_snapshot_release(&snap);
    } else {
        hp_log("heapprof: out of memory taking a snapshot: %s", strerror(-r));
    }
    pthread_mutex_unlock(&dump_lock);
    hp_thread.busy = was_busy;
    return r;
}

/* At exit, after the program's atexit handlers and C++ static destructors
 * (those run before the shared objects' destructors), so what they free is
 * not reported as leaked. Runs once, on whichever thread called exit. */
__attribute__((destructor)) static void hp_exit_dump(void)
{
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) != HP_STATE_ON)
        return;
    if (__atomic_exchange_n(&exit_dumped, 1, __ATOMIC_ACQ_REL))
        return;
    char path[4096];
    if (hp_output_path(path, sizeof path, hp_cfg.path, not_root) != 0) {
        hp_log("heapprof: the profile path is too long; no profile written");
        return;
    }
    int nleaks = 0;
    dump(path, !hp_cfg.leaks_off, &nleaks);
    if (nleaks > 0 && hp_cfg.leaks_exit_code) {
        /* As LeakSanitizer's exitcode: the CI gate the user asked for.
         * Flush the program's streams first, as exit() would have. */
        fflush(NULL);
        _exit(hp_cfg.leaks_exit_code);
    }
}

HP_EXPORT bool heapprof_enabled(void)
{
    return __atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) == HP_STATE_ON;
}

HP_EXPORT long heapprof_rate(void)
{
    return heapprof_enabled() ? hp_cfg.rate : 0;
}

HP_EXPORT int heapprof_dump(const char *path)
{
    if (!path || !*path)
        return -EINVAL;
    if (!heapprof_enabled())
        return -ENOTSUP;
    char abs[4096];
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -errno;
        int n = snprintf(abs, sizeof abs, "%s/%s", cwd, path);
        if (n < 0 || (size_t)n >= sizeof abs)
            return -ENAMETOOLONG;
        path = abs;
    }
    return dump(path, false, NULL);
}
