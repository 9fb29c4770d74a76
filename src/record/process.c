/* The process as heapprof names it: its arguments and the path it was run
 * by as it started, when profiling started, whether it is the root of the
 * profiled process tree, and its output paths.
 */
#define _GNU_SOURCE
#include "record.h"
#include "heapprof.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int64_t start_ns;
/* True in a process that is not the root of the profiled process tree: a
 * forked child, or a program exec'd by a profiled process. Its profile gets
 * its pid in the name unless HEAPPROF already has %p. */
static bool not_root;
static void note_start(void);

/* A process exec'd by a profiled process inherits HEAPPROF (and
 * LD_PRELOAD): it must not overwrite its parent's profile. The parent's
 * environment as it was started is in /proc/PPID/environ; if it holds the
 * same HEAPPROF (or the relative path the parent made absolute for its
 * children: config.c), this process is a descendant. */
static bool parent_is_profiled(const char *name, const char *value)
{
    return hp_proc_environ_inherits(getppid(), name, value);
}

bool hp_parent_is_profiled(const char *name, const char *value)
{
    return parent_is_profiled(name, value);
}

void hp_process_start(void)
{
    start_ns = hp_now_ns();
    note_start();
    const char *raw = hp_env("HEAPPROF");
    not_root = raw && parent_is_profiled("HEAPPROF", raw);
}

void hp_process_child(void)
{
    not_root = true;
}

/* The program as it started: its arguments (before it rewrites its title,
 * as servers do) and the path the user ran it by, a symlink included
 * (redis-server is a link to redis-check-rdb): profiles and the leak summary
 * name the program so, while symbols still come from the real file. */
static char *start_cmdline;
static size_t start_cmdline_len;
static char run_as[PATH_MAX];

static void note_start(void)
{
    struct hp_arena a = {0};
    size_t len = 0;
    const char *text = hp_read_file(&a, "/proc/self/cmdline", &len);
    if (text && len && (start_cmdline = hp_alloc(len + 1)) != NULL) {
        memcpy(start_cmdline, text, len);
        start_cmdline_len = len;
    }
    hp_arena_release(&a);
    if (!start_cmdline || !start_cmdline[0])
        return;
    const char *argv0 = start_cmdline;
    char candidate[PATH_MAX], exe[PATH_MAX];
    candidate[0] = 0;
    if (strchr(argv0, '/')) {
        if (hp_absolute_path(candidate, sizeof candidate, argv0) != 0)
            candidate[0] = 0;
    } else {
        /* As the shell found it: the first PATH entry that has it. */
        const char *path = getenv("PATH");
        while (path && *path && !candidate[0]) {
            const char *end = strchr(path, ':');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            int w = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)n, path, argv0);
            if (w <= 0 || (size_t)w >= sizeof candidate || candidate[0] != '/' ||
                access(candidate, X_OK) != 0)
                candidate[0] = 0;
            path = end ? end + 1 : NULL;
        }
    }
    /* The candidate is the program when it is the same file as the one the
     * kernel ran (a stat of each: realpath would read every link on both
     * paths, a dozen calls at each start-up). */
    if (!candidate[0])
        return;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    struct stat c, e;
    if (n > 0 && (exe[n] = 0, strcmp(candidate, exe) != 0) && stat(candidate, &c) == 0 &&
        stat(exe, &e) == 0 && c.st_dev == e.st_dev && c.st_ino == e.st_ino)
        snprintf(run_as, sizeof run_as, "%s", candidate);
}

const char *hp_start_cmdline(size_t *len)
{
    *len = start_cmdline_len;
    return start_cmdline;
}

const char *hp_run_as(void)
{
    return run_as[0] ? run_as : NULL;
}

int hp_process_path(char *out, size_t len)
{
    return hp_output_path(out, len, hp_cfg.path, not_root);
}

int hp_process_leaks_path(char *out, size_t len)
{
    int r = hp_output_path(out, len, hp_cfg.leaks_path, false);
    if (r == 0 && not_root && !hp_path_in_place(out))
        r = hp_output_path(out, len, hp_cfg.leaks_path, true);
    return r;
}

int64_t hp_start_ns(void)
{
    return start_ns;
}
