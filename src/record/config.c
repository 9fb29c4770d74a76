/* Configuration from the environment, read once at start-up.
 *
 * Every variable is checked; a bad value gets one line on stderr naming the
 * variable and what is used instead, and never stops the program. The
 * output path is read with secure_getenv, so a setuid program ignores it.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct hp_config hp_cfg;

enum { DEFAULT_MAX_MEMORY_MIB = 64 };
enum { DEFAULT_CPU_HZ = 100 };
enum { DEFAULT_RATE = 524288, DEFAULT_LEAK_STACKS = 10, DEFAULT_LEAK_FRAMES = 8 };

/* Parses a whole decimal integer in [min, max]; false on anything else. */
static bool parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A size in bytes, with an optional K, M or G suffix (KiB, MiB, GiB), in
 * [min, max]; the default, and one line on stderr, for anything else. */
static size_t env_size(const char *name, size_t min, size_t max, size_t def)
{
    const char *s = getenv(name);
    if (!s)
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    if (end != s && (*end == 'K' || *end == 'k'))
        shift = 10, end++;
    else if (end != s && (*end == 'M' || *end == 'm'))
        shift = 20, end++;
    else if (end != s && (*end == 'G' || *end == 'g'))
        shift = 30, end++;
    if (!errno && end != s && *end == 0 && s[0] != '-' && v <= (max >> shift) &&
        (v << shift) >= min)
        return (size_t)(v << shift);
    hp_log("heapprof: %s=\"%.64s\" is not a size from %zuM to %zuG (bytes, or with K, M or G); "
           "using %zuM",
           name, s, min >> 20, max >> 30, def >> 20);
    return def;
}

static long env_long(const char *name, long min, long max, long def)
{
    const char *s = getenv(name);
    long v;
    if (!s)
        return def;
    if (parse_long(s, min, max, &v))
        return v;
    hp_log("heapprof: %s=\"%.64s\" is not a whole number from %ld to %ld; using %ld", name, s, min,
           max, def);
    return def;
}

/* Resolved once against the start-up directory: programs chdir. */
static bool absolute_path(const char *name, const char *value, char *out, size_t len)
{
    int r = hp_absolute_path(out, len, value);
    if (r == -ENAMETOOLONG)
        hp_log("heapprof: %s is too long; ignoring it", name);
    else if (r)
        hp_log("heapprof: %s=%.200s is relative and the working directory is unknown (%s); "
               "ignoring it",
               name, value, strerror(-r));
    return r == 0;
}

/* The directory part of path must exist and be writable now, or the profile
 * could only fail at exit, when it is too late to say so usefully. */
static bool dir_writable(const char *path, const char *what, const char *off)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0) {
        strcpy(dir, "/");
    } else {
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        hp_log("heapprof: cannot write the %s in %s (not a directory); %s", what, dir, off);
        return false;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        hp_log("heapprof: cannot write the %s in %s (%s); %s", what, dir, strerror(errno), off);
        return false;
    }
    return true;
}

/* A boolean as users spell it: 1/0, yes/no, true/false, on/off, in any
 * case; the default and one line on stderr for anything else. */
static bool env_bool(const char *name, bool def)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    const char *s = getenv(name);
    if (!s)
        return def;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcasecmp(s, yes[i]))
            return true;
        if (!strcasecmp(s, no[i]))
            return false;
    }
    hp_log("heapprof: %s=\"%.64s\" is not one of 1/0, yes/no, true/false, on/off; using %s", name,
           s, def ? "1" : "0");
    return def;
}

static int parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2},   {"HUP", SIGHUP}, {"PROF", SIGPROF},
                 {"URG", SIGURG},   {"WINCH", SIGWINCH}, {"PWR", SIGPWR}};
    if (!strncasecmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].name))
            return names[i].sig;
    long v;
    if (parse_long(s, SIGRTMIN, SIGRTMAX, &v))
        return (int)v;
    return 0;
}

/* HEAPPROF_CPU and HEAPPROF_CPU_HZ: read whether HEAPPROF is set or not. */
static void cpu_config_load(void)
{
    hp_cfg.cpu_hz = (int)env_long("HEAPPROF_CPU_HZ", 1, 1000, DEFAULT_CPU_HZ);
    const char *timer = getenv("HEAPPROF_CPU_TIMER");
    if (timer && !strcasecmp(timer, "process"))
        hp_cfg.cpu_process_timer = true;
    else if (timer && *timer && strcasecmp(timer, "thread") != 0)
        hp_log("heapprof: HEAPPROF_CPU_TIMER=\"%.32s\" is not thread or process; using thread",
               timer);
    const char *cpu = secure_getenv("HEAPPROF_CPU");
    if (!cpu || !*cpu)
        return;
    char path[sizeof hp_cfg.cpu_path];
    if (!absolute_path("HEAPPROF_CPU", cpu, path, sizeof path))
        return;
    size_t plen = strlen(path);
    if (plen && path[plen - 1] == '/') {
        hp_log("heapprof: HEAPPROF_CPU=%.200s names a directory, not a file; no CPU profile", cpu);
        return;
    }
    if (!dir_writable(path, "CPU profile", "no CPU profile"))
        return;
    strcpy(hp_cfg.cpu_path, path);
}

void hp_config_load(void)
{
    memset(&hp_cfg, 0, sizeof hp_cfg);
    hp_cfg.rate = DEFAULT_RATE;
    hp_cfg.announce = env_bool("HEAPPROF_ANNOUNCE", false);
    cpu_config_load();
    const char *out = secure_getenv("HEAPPROF");
    /* HEAPPROF_HTTP alone: record and serve, with no exit profile and no
     * leak summary (the live profiles are what was asked for). */
    const char *serve = getenv("HEAPPROF_HTTP");
    bool serve_only = (!out || !*out) && serve && *serve;
    if ((!out || !*out) && !serve_only)
        return;
    if (!serve_only) {
        if (!absolute_path("HEAPPROF", out, hp_cfg.path, sizeof hp_cfg.path))
            return;
        size_t plen = strlen(hp_cfg.path);
        if (plen && hp_cfg.path[plen - 1] == '/') {
            hp_log("heapprof: HEAPPROF=%.200s names a directory, not a file; profiling is off",
                   out);
            return;
        }
        if (!dir_writable(hp_cfg.path, "profile", "profiling is off"))
            return;
    }

    hp_cfg.rate = env_long("HEAPPROF_RATE", 1, 1L << 40, DEFAULT_RATE);
    hp_cfg.max_memory = env_size("HEAPPROF_MAX_MEMORY", (size_t)4 << 20, (size_t)1 << 40,
                                 (size_t)DEFAULT_MAX_MEMORY_MIB << 20);
    const char *seed = getenv("HEAPPROF_SEED");
    if (seed) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(seed, &end, 0);
        if (errno || *end || end == seed || seed[0] == '-')
            hp_log("heapprof: HEAPPROF_SEED=\"%.64s\" is not a whole number; using a random seed",
                   seed);
        else {
            hp_cfg.seed = v;
            hp_cfg.seed_set = true;
        }
    }

    const char *leaks = secure_getenv("HEAPPROF_LEAKS");
    if (leaks && (!strcasecmp(leaks, "off") || !strcmp(leaks, "0")))
        hp_cfg.leaks_off = true;
    else if (leaks && *leaks && strcasecmp(leaks, "stderr") != 0)
        absolute_path("HEAPPROF_LEAKS", leaks, hp_cfg.leaks_path, sizeof hp_cfg.leaks_path);
    hp_cfg.leak_stacks = (int)env_long("HEAPPROF_LEAK_STACKS", 0, 100000, DEFAULT_LEAK_STACKS);
    hp_cfg.leak_frames =
        (int)env_long("HEAPPROF_LEAK_FRAMES", 1, HP_MAX_FRAMES, DEFAULT_LEAK_FRAMES);
    const char *supp = secure_getenv("HEAPPROF_SUPPRESSIONS");
    if (supp && *supp)
        absolute_path("HEAPPROF_SUPPRESSIONS", supp, hp_cfg.suppressions,
                      sizeof hp_cfg.suppressions);
    hp_cfg.leaks_exit_code = (int)env_long("HEAPPROF_LEAKS_EXIT_CODE", 0, 255, 0);
    hp_cfg.leaks_exit_any = env_bool("HEAPPROF_LEAKS_EXIT_ANY", false);
    hp_cfg.leak_scan = env_bool("HEAPPROF_LEAK_SCAN", true);
    hp_cfg.leak_reachable = env_bool("HEAPPROF_LEAK_REACHABLE", false);
    hp_cfg.leak_stats = env_bool("HEAPPROF_LEAK_STATS", false);
    const char *http = getenv("HEAPPROF_HTTP");
    if (http && *http) {
        if (strlen(http) >= sizeof hp_cfg.http)
            hp_log("heapprof: HEAPPROF_HTTP is too long; not serving");
        else
            strcpy(hp_cfg.http, http);
    }
    const char *sig = getenv("HEAPPROF_SIGNAL");
    if (sig && *sig && !(hp_cfg.snap_signal = parse_signal(sig)))
        hp_log("heapprof: HEAPPROF_SIGNAL=\"%.32s\" is not a signal heapprof can use (USR1, USR2, "
               "HUP, PROF, URG, WINCH, PWR or a real-time signal number); no snapshots on signal",
               sig);
    hp_cfg.interval = env_long("HEAPPROF_INTERVAL", 0, 86400 * 365, 0);
    hp_cfg.peak = env_bool("HEAPPROF_PEAK", false);
    hp_cfg.debuginfo = env_bool("HEAPPROF_DEBUGINFO", false);
    hp_cfg.timeline = env_bool("HEAPPROF_TIMELINE", false);
    /* Undocumented but for tests: the timeline's sampling period. */
    hp_cfg.timeline_ms = env_long("HEAPPROF_TIMELINE_MS", 1, 60000, 100);
    if (serve_only)
        hp_cfg.leaks_off = true;
    hp_cfg.enabled = true;
}
