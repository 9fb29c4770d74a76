/* Configuration from the environment, read once at start-up.
 *
 * Every variable is checked; a bad value gets one line on stderr naming the
 * variable and what is used instead, and never stops the program. The
 * output path is read with secure_getenv, so a setuid program ignores it.
 *
 * Relative paths are resolved against the working directory at start-up,
 * and written back into the environment made absolute (config_startup), so
 * that a child that changed directory first writes where its parent does.
 *
 * At start-up a process also names, one line each, the HEAPPROF_*
 * variables heapprof does not know (with the closest name it does) and
 * those that cannot take effect in the mode it runs in; unless its parent
 * runs heapprof too, and so said it already.
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
#include <sys/auxv.h>
#include <unistd.h>

struct hp_config hp_cfg;

/* Every variable heapprof reads, and the only place each is described: its
 * name (and an older spelling still read), its kind, default and range,
 * whether a setuid program reads it, and one line of documentation. The
 * unknown-variable line at start-up is drawn from it, and a test
 * (tests/test_options.py) holds the README's table and the wrapper's --help
 * to it. Nothing else in heapprof calls getenv for a HEAPPROF_* variable:
 * hp_env does. */
static const struct hp_option options[] = {
    {"HEAPPROF", NULL, HP_OPT_PATH, 0, 0, 0, true, false,
     "where the exit profile goes (gzipped pprof); %p is the pid; unset: profiling is off"},
    {"HEAPPROF_RATE", NULL, HP_OPT_INT, HEAPPROF_DEFAULT_RATE, 1, 1L << 40, false, false,
     "mean bytes between samples; 1 records every allocation (exact mode)"},
    {"HEAPPROF_SEED", NULL, HP_OPT_TEXT, 0, 0, 0, false, false,
     "seed of the sampler's random numbers (a whole number); unset: random"},
    {"HEAPPROF_MAX_MEMORY", NULL, HP_OPT_SIZE, 64L << 20, 4L << 20, 1L << 40, false, false,
     "ceiling of the stack table (bytes, or with K, M or G)"},
    {"HEAPPROF_LEAKS", NULL, HP_OPT_PATH, 0, 0, 0, true, false,
     "where the leak summary goes: stderr, a file, or off"},
    {"HEAPPROF_LEAK_STACKS", NULL, HP_OPT_INT, 10, 0, 100000, false, false,
     "stacks listed in the leak summary"},
    {"HEAPPROF_LEAK_FRAMES", NULL, HP_OPT_INT, 8, 1, HP_MAX_FRAMES, false, false,
     "frames shown for each stack in the leak summary"},
    {"HEAPPROF_SUPPRESSIONS", NULL, HP_OPT_PATH, 0, 0, 0, true, false,
     "a file of LeakSanitizer-style leak:PATTERN lines"},
    {"HEAPPROF_LEAK_EXIT_CODE", "HEAPPROF_LEAKS_EXIT_CODE", HP_OPT_INT, 0, 0, 255, false, false,
     "the exit status when memory is lost (0: the program's own)"},
    {"HEAPPROF_LEAK_EXIT_ANY", "HEAPPROF_LEAKS_EXIT_ANY", HP_OPT_BOOL, 0, 0, 1, false, false,
     "the exit status on any memory never freed, not only lost"},
    {"HEAPPROF_LEAK_CHECK", "HEAPPROF_LEAK_SCAN", HP_OPT_BOOL, 1, 0, 1, false, false,
     "the leak check at exit (0: list memory never freed instead)"},
    {"HEAPPROF_LEAK_REACHABLE", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "list the stacks of memory still reachable too"},
    {"HEAPPROF_LEAK_STATS", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "one line on what the leak check read and how long it took"},
    {"HEAPPROF_HTTP", NULL, HP_OPT_TEXT, 0, 0, 0, false, false,
     "host:port to serve /debug/pprof/ on (alone: record and serve, no exit files)"},
    {"HEAPPROF_SIGNAL", NULL, HP_OPT_TEXT, 0, 0, 0, false, false,
     "a signal that writes a numbered snapshot (USR1, USR2, HUP, ... or a real-time number)"},
    {"HEAPPROF_INTERVAL", NULL, HP_OPT_INT, 0, 0, 86400L * 365, false, false,
     "seconds between numbered snapshots (0: none)"},
    {"HEAPPROF_SIGNAL_LEAKS", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "signal and interval snapshots run a leak check and carry its leak labels"},
    {"HEAPPROF_LEAK_INTERVAL", NULL, HP_OPT_INT, 0, 0, 86400L * 365, false, false,
     "seconds between leak checks while the program runs, for the timeline's lost series (0: "
     "none)"},
    {"HEAPPROF_PEAK", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "also write the in-use profile at the estimated peak"},
    {"HEAPPROF_ANNOUNCE", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "one line at exit naming the files written"},
    {"HEAPPROF_DEBUGINFO", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "let libdw fetch debug info with debuginfod while symbolizing"},
    {"HEAPPROF_TIMELINE", NULL, HP_OPT_BOOL, 0, 0, 1, false, false,
     "also write the heap over time (HTML and JSON)"},
    {"HEAPPROF_TIMELINE_MS", NULL, HP_OPT_INT, 100, 1, 60000, false, false,
     "milliseconds between the timeline's points"},
    {"HEAPPROF_CPU", NULL, HP_OPT_PATH, 0, 0, 0, true, false,
     "where a CPU profile of the whole run goes"},
    {"HEAPPROF_CPU_HZ", NULL, HP_OPT_INT, HEAPPROF_DEFAULT_CPU_HZ, 1, 1000, false, false,
     "CPU samples per second of CPU time"},
    {"HEAPPROF_CPU_TIMER", NULL, HP_OPT_TEXT, 0, 0, 0, false, false,
     "thread (per-thread CPU timers) or process (setitimer)"},
    {"HEAPPROF_MUTEX_FRACTION", NULL, HP_OPT_INT, 0, 0, 1000000000, false, false,
     "the mutex profile keeps 1 in N lock contentions (0: off)"},
    {"HEAPPROF_BLOCK_RATE", NULL, HP_OPT_INT, 0, 0, 1000000000000LL, false, false,
     "the block profile keeps a wait of d ns with probability d/N (0: off; 1: every wait)"},
    {"HEAPPROF_UNWIND", NULL, HP_OPT_TEXT, 0, 0, 0, false, false,
     "fast (heapprof's own unwinder, libunwind where it cannot), libunwind, or check (both, "
     "compared; a count at exit)"},
    {"HEAPPROF_TRACE", NULL, HP_OPT_PATH, 0, 0, 0, true, false,
     "where an execution trace of the run's start goes (Chrome Trace Event JSON; .gz: gzipped)"},
    {"HEAPPROF_TRACE_SECONDS", NULL, HP_OPT_INT, 10, 0, 3600, false, false,
     "seconds HEAPPROF_TRACE covers from the start; 0: until exit"},
};

const struct hp_option *hp_options(size_t *n)
{
    *n = sizeof options / sizeof options[0];
    return options;
}

static const struct hp_option *option(const char *name)
{
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (!strcmp(options[i].name, name) || (options[i].alias && !strcmp(options[i].alias, name)))
            return &options[i];
    return NULL;
}

const char *hp_env(const char *name)
{
    const struct hp_option *o = option(name);
    if (!o)
        return getenv(name);
    const char *v = o->secure ? secure_getenv(o->name) : getenv(o->name);
    if (!v && o->alias)
        v = o->secure ? secure_getenv(o->alias) : getenv(o->alias);
    return v;
}

/* The name a variable was given by: its own, or its older spelling. */
static const char *given_name(const char *name)
{
    const struct hp_option *o = option(name);
    if (o && o->alias && !getenv(o->name) && getenv(o->alias))
        return o->alias;
    return o ? o->name : name;
}

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
static size_t env_size(const char *name)
{
    const struct hp_option *o = option(name);
    size_t min = (size_t)o->min, max = (size_t)o->max, def = (size_t)o->def;
    const char *s = hp_env(name);
    name = given_name(name);
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

static long env_long(const char *name)
{
    const struct hp_option *o = option(name);
    long min = o->min, max = o->max, def = o->def;
    const char *s = hp_env(name);
    long v;
    name = given_name(name);
    if (!s)
        return def;
    if (parse_long(s, min, max, &v))
        return v;
    hp_log("heapprof: %s=\"%.64s\" is not a whole number from %ld to %ld; using %ld", name, s, min,
           max, def);
    return def;
}

/* Resolved once at start-up, not at exit: programs chdir. */
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
static bool env_bool(const char *name)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    bool def = option(name)->def != 0;
    const char *s = hp_env(name);
    name = given_name(name);
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

/* HEAPPROF_TRACE and HEAPPROF_TRACE_SECONDS: read whether HEAPPROF is set
 * or not, as the CPU profile's; the trace's budget is half of
 * HEAPPROF_MAX_MEMORY, read here too. */
/* Once, by whichever needs it first: a bad value is said once. */
static void max_memory_load(void)
{
    static bool read;
    if (!read) {
        read = true;
        hp_cfg.max_memory = env_size("HEAPPROF_MAX_MEMORY");
    }
}

static void trace_config_load(void)
{
    hp_cfg.trace_seconds = (int)env_long("HEAPPROF_TRACE_SECONDS");
    const char *tr = hp_env("HEAPPROF_TRACE");
    if (!tr || !*tr)
        return;
    max_memory_load();
    char path[sizeof hp_cfg.trace_path];
    if (!absolute_path("HEAPPROF_TRACE", tr, path, sizeof path))
        return;
    size_t plen = strlen(path);
    if (plen && path[plen - 1] == '/') {
        hp_log("heapprof: HEAPPROF_TRACE=%.200s names a directory, not a file; no trace", tr);
        return;
    }
    if (!dir_writable(path, "trace", "no trace"))
        return;
    strcpy(hp_cfg.trace_path, path);
}

/* HEAPPROF_CPU and HEAPPROF_CPU_HZ: read whether HEAPPROF is set or not. */
static void cpu_config_load(void)
{
    hp_cfg.cpu_hz = (int)env_long("HEAPPROF_CPU_HZ");
    const char *timer = hp_env("HEAPPROF_CPU_TIMER");
    if (timer && !strcasecmp(timer, "process"))
        hp_cfg.cpu_process_timer = true;
    else if (timer && *timer && strcasecmp(timer, "thread") != 0)
        hp_log("heapprof: HEAPPROF_CPU_TIMER=\"%.32s\" is not thread or process; using thread",
               timer);
    trace_config_load();
    const char *cpu = hp_env("HEAPPROF_CPU");
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
    hp_cfg.rate = HEAPPROF_DEFAULT_RATE;
    hp_cfg.announce = env_bool("HEAPPROF_ANNOUNCE");
    cpu_config_load();
    const char *out = hp_env("HEAPPROF");
    /* HEAPPROF_HTTP alone: record and serve, with no exit profile and no
     * leak summary (the live profiles are what was asked for). */
    const char *serve = hp_env("HEAPPROF_HTTP");
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

    hp_cfg.rate = env_long("HEAPPROF_RATE");
    max_memory_load();
    const char *seed = hp_env("HEAPPROF_SEED");
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

    const char *leaks = hp_env("HEAPPROF_LEAKS");
    if (leaks && (!strcasecmp(leaks, "off") || !strcmp(leaks, "0")))
        hp_cfg.leaks_off = true;
    else if (leaks && *leaks && strcasecmp(leaks, "stderr") != 0)
        absolute_path("HEAPPROF_LEAKS", leaks, hp_cfg.leaks_path, sizeof hp_cfg.leaks_path);
    hp_cfg.leak_stacks = (int)env_long("HEAPPROF_LEAK_STACKS");
    hp_cfg.leak_frames = (int)env_long("HEAPPROF_LEAK_FRAMES");
    const char *supp = hp_env("HEAPPROF_SUPPRESSIONS");
    if (supp && *supp)
        absolute_path("HEAPPROF_SUPPRESSIONS", supp, hp_cfg.suppressions,
                      sizeof hp_cfg.suppressions);
    hp_cfg.leaks_exit_code = (int)env_long("HEAPPROF_LEAK_EXIT_CODE");
    hp_cfg.leaks_exit_any = env_bool("HEAPPROF_LEAK_EXIT_ANY");
    hp_cfg.leak_scan = env_bool("HEAPPROF_LEAK_CHECK");
    hp_cfg.leak_reachable = env_bool("HEAPPROF_LEAK_REACHABLE");
    hp_cfg.leak_stats = env_bool("HEAPPROF_LEAK_STATS");
    const char *http = hp_env("HEAPPROF_HTTP");
    if (http && *http) {
        if (strlen(http) >= sizeof hp_cfg.http)
            hp_log("heapprof: HEAPPROF_HTTP is too long; not serving");
        else
            strcpy(hp_cfg.http, http);
    }
    const char *sig = hp_env("HEAPPROF_SIGNAL");
    if (sig && *sig && !(hp_cfg.snap_signal = parse_signal(sig)))
        hp_log("heapprof: HEAPPROF_SIGNAL=\"%.32s\" is not a signal heapprof can use (USR1, USR2, "
               "HUP, PROF, URG, WINCH, PWR or a real-time signal number); no snapshots on signal",
               sig);
    hp_cfg.interval = env_long("HEAPPROF_INTERVAL");
    hp_cfg.snap_leaks = env_bool("HEAPPROF_SIGNAL_LEAKS");
    hp_cfg.leak_interval = env_long("HEAPPROF_LEAK_INTERVAL");
    hp_cfg.peak = env_bool("HEAPPROF_PEAK");
    hp_cfg.debuginfo = env_bool("HEAPPROF_DEBUGINFO");
    hp_cfg.timeline = env_bool("HEAPPROF_TIMELINE");
    /* Undocumented but for tests: the timeline's sampling period. */
    hp_cfg.timeline_ms = env_long("HEAPPROF_TIMELINE_MS");
    if (serve_only)
        hp_cfg.leaks_off = true;
    /* The mutex and block profiles (record/contention.c): the hooks read
     * these from the start. */
    __atomic_store_n(&hp_mutex_fraction, (int)env_long("HEAPPROF_MUTEX_FRACTION"),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&hp_block_rate, (int64_t)env_long("HEAPPROF_BLOCK_RATE"), __ATOMIC_RELAXED);
    hp_cfg.enabled = true;
}

/* ---- at start-up: unknown variables, and those that cannot take effect ---- */

/* One of heapprof's names, in any case: HEAPPROF or HEAPPROF_... (not
 * HEAPPROFILE, gperftools' variable). The name's length in *len. */
static bool ours(const char *entry, size_t *len)
{
    const char *eq = strchr(entry, '=');
    if (!eq || strncasecmp(entry, "HEAPPROF", 8) != 0 || (entry[8] != '=' && entry[8] != '_'))
        return false;
    *len = (size_t)(eq - entry);
    return true;
}

static int upper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* Edit distance between a (a_len bytes) and b, in any case: insertions,
 * deletions, substitutions and swaps of neighbours (RAET for RATE) count
 * one each (optimal string alignment). */
static size_t distance(const char *a, size_t a_len, const char *b)
{
    enum { MAX = 48 };
    size_t b_len = strlen(b);
    if (a_len >= MAX || b_len >= MAX)
        return MAX;
    static size_t d[MAX + 1][MAX + 1]; /* start-up runs on one thread */
    for (size_t i = 0; i <= a_len; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= b_len; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= a_len; i++) {
        for (size_t j = 1; j <= b_len; j++) {
            int ca = upper(a[i - 1]), cb = upper(b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == upper(b[j - 2]) && upper(a[i - 2]) == cb &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[a_len][b_len];
}

/* One line for each HEAPPROF_* variable heapprof does not read, with the
 * closest name it does when one is close: a third of the name's own part
 * (after HEAPPROF_) may differ, from 1 to 3 edits, so that HEAPPROF_RAET
 * finds HEAPPROF_RATE and HEAPPROF_LIB finds nothing. */
static int say_unknown(bool print)
{
    int said = 0;
    for (char **e = environ; e && *e; e++) {
        size_t len;
        if (!ours(*e, &len))
            continue;
        const char *best = NULL;
        size_t best_d = (size_t)-1;
        bool exact = false;
        for (size_t i = 0; i < 2 * (sizeof options / sizeof options[0]) && !exact; i++) {
            const char *known = i % 2 ? options[i / 2].alias : options[i / 2].name;
            if (!known)
                continue;
            if (strlen(known) == len && !strncmp(*e, known, len)) {
                exact = true;
                break;
            }
            size_t d = distance(*e, len, known);
            if (d < best_d) /* the nearest spelling; the current name on a tie */
                best = known, best_d = d;
        }
        if (exact)
            continue;
        said++;
        if (!print)
            continue;
        size_t own = len > 9 ? (len - 9) / 3 : 0;
        size_t limit = own < 1 ? 1 : own > 3 ? 3 : own;
        if (best && best_d <= limit)
            hp_log("heapprof: unknown variable %.*s (did you mean %s?)", (int)len, *e, best);
        else
            hp_log("heapprof: unknown variable %.*s", (int)len, *e);
    }
    return said;
}

/* A variable's value when it asks for something: set, not empty, and not a
 * value that only turns something off or names the default (0, no, false,
 * off, HEAPPROF_LEAKS=stderr), which is so whatever the mode. */
static const char *asking(const char *name)
{
    static const char *const off[] = {"0", "no", "false", "off"};
    const char *v = hp_env(name);
    if (!v || !*v)
        return NULL;
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (!strcasecmp(v, off[i]))
            return NULL;
    if (!strcmp(name, "HEAPPROF_LEAKS") && !strcasecmp(v, "stderr"))
        return NULL;
    return v;
}

static bool print_lines; /* say_ineffective: print, or only count */

static int no_effect(const char *name, const char *why)
{
    if (!asking(name))
        return 0;
    if (print_lines)
        hp_log("heapprof: %s has no effect %s", given_name(name), why);
    return 1;
}

/* One line for each variable that asks for something this mode cannot do:
 * no profiling at all (neither HEAPPROF nor HEAPPROF_HTTP), the endpoint
 * alone (no exit profile, no leak summary), no leak summary
 * (HEAPPROF_LEAKS=off), no leak check (HEAPPROF_LEAK_SCAN=0), exact mode.
 * HEAPPROF_CPU_HZ, HEAPPROF_CPU_TIMER and HEAPPROF_DEBUGINFO are never
 * named: the program may start CPU profiles itself (heapprof_cpu_start). */
static int say_ineffective(bool print)
{
    static const char *const leak_vars[] = {"HEAPPROF_LEAKS",          "HEAPPROF_LEAK_STACKS",
                                            "HEAPPROF_LEAK_FRAMES",    "HEAPPROF_SUPPRESSIONS",
                                            "HEAPPROF_LEAK_EXIT_CODE", "HEAPPROF_LEAK_EXIT_ANY",
                                            "HEAPPROF_LEAK_REACHABLE", "HEAPPROF_LEAK_STATS"};
    static const char *const other_vars[] = {"HEAPPROF_RATE",         "HEAPPROF_SEED",
                                             "HEAPPROF_MAX_MEMORY",   "HEAPPROF_SIGNAL",
                                             "HEAPPROF_INTERVAL",     "HEAPPROF_PEAK",
                                             "HEAPPROF_TIMELINE",     "HEAPPROF_TIMELINE_MS",
                                             "HEAPPROF_SIGNAL_LEAKS", "HEAPPROF_LEAK_INTERVAL"};
    const size_t nleak = sizeof leak_vars / sizeof leak_vars[0];
    const char *out = hp_env("HEAPPROF");
    int said = 0;
    print_lines = print;
    if (out && *out && !hp_cfg.enabled)
        return 0; /* a line already said why profiling is off */
    if (!hp_cfg.enabled) {
        const char *why = "without HEAPPROF (profiling is off: no profile, no leak check)";
        for (size_t i = 0; i < nleak; i++)
            said += no_effect(leak_vars[i], why);
        for (size_t i = 0; i < sizeof other_vars / sizeof other_vars[0]; i++)
            said += no_effect(other_vars[i], why);
        if (!hp_cfg.cpu_path[0])
            said += no_effect("HEAPPROF_ANNOUNCE",
                              "without HEAPPROF or HEAPPROF_CPU (nothing is written at exit)");
        return said;
    }
    if (!hp_cfg.path[0]) {
        for (size_t i = 0; i < nleak; i++)
            said += no_effect(leak_vars[i], "without HEAPPROF (HEAPPROF_HTTP alone: no exit "
                                            "profile, no leak check)");
        said += no_effect("HEAPPROF_SIGNAL", "without HEAPPROF (HEAPPROF_HTTP alone: snapshots "
                                             "are files named after HEAPPROF)");
        said += no_effect("HEAPPROF_INTERVAL", "without HEAPPROF (HEAPPROF_HTTP alone: snapshots "
                                               "are files named after HEAPPROF)");
        said += no_effect("HEAPPROF_PEAK", "without HEAPPROF (HEAPPROF_HTTP alone: "
                                           "/debug/pprof/peak serves it; no file is written)");
        said += no_effect("HEAPPROF_TIMELINE", "without HEAPPROF (HEAPPROF_HTTP alone: "
                                               "/debug/pprof/timeline serves it; no file is "
                                               "written)");
        if (!hp_cfg.cpu_path[0])
            said += no_effect("HEAPPROF_ANNOUNCE", "without HEAPPROF or HEAPPROF_CPU "
                                                   "(HEAPPROF_HTTP alone: nothing is written at "
                                                   "exit)");
    } else if (hp_cfg.leaks_off) {
        for (size_t i = 1; i < nleak; i++)
            said +=
                no_effect(leak_vars[i], "with HEAPPROF_LEAKS=off (no leak summary, no leak check)");
    } else {
        if (!hp_cfg.leaks_exit_code)
            said += no_effect("HEAPPROF_LEAK_EXIT_ANY",
                              "without HEAPPROF_LEAKS_EXIT_CODE (the exit status to give)");
        else if (!hp_cfg.leak_scan)
            said += no_effect("HEAPPROF_LEAK_EXIT_ANY",
                              "with HEAPPROF_LEAK_SCAN=0 (without the leak check, the exit "
                              "status is for any memory never freed already)");
        if (!hp_cfg.leak_scan) {
            said += no_effect("HEAPPROF_LEAK_REACHABLE",
                              "with HEAPPROF_LEAK_SCAN=0 (without the leak check, every stack "
                              "never freed is listed)");
            said += no_effect("HEAPPROF_LEAK_STATS", "with HEAPPROF_LEAK_SCAN=0 (no leak check)");
        }
    }
    if (hp_cfg.rate <= 1)
        said += no_effect("HEAPPROF_SEED", "in exact mode (HEAPPROF_RATE=1 records every "
                                           "allocation: nothing is drawn at random)");
    if (hp_cfg.enabled && !hp_cfg.snap_signal && !hp_cfg.interval)
        said += no_effect("HEAPPROF_SIGNAL_LEAKS",
                          "without HEAPPROF_SIGNAL or HEAPPROF_INTERVAL (no snapshots to carry "
                          "the verdicts)");
    if (hp_cfg.enabled && hp_cfg.leak_interval && !hp_cfg.timeline && !hp_cfg.http[0])
        said += no_effect("HEAPPROF_LEAK_INTERVAL",
                          "without HEAPPROF_TIMELINE or HEAPPROF_HTTP (the checks' lost bytes are "
                          "shown on the timeline)");
    if (!hp_cfg.timeline && !hp_cfg.http[0])
        said += no_effect("HEAPPROF_TIMELINE_MS",
                          "without HEAPPROF_TIMELINE or HEAPPROF_HTTP (no timeline is kept)");
    return said;
}

/* Whether the parent process runs heapprof: then it said at its own
 * start-up what this one would say (a child inherits the environment), so
 * only the process that starts a profiled tree speaks. A process exec'd in
 * place of a profiled one (a shell's last command) speaks again. */
static bool parent_runs_heapprof(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/maps", (long)getppid());
    struct hp_arena a = {0};
    const char *maps = hp_read_file(&a, path, NULL);
    bool yes = maps && strstr(maps, "/libheapprof");
    hp_arena_release(&a);
    return yes;
}

/* The path variables in use, relative, made absolute in the environment
 * as they were resolved (against the directory at start-up): a child that
 * changes directory before it runs a program then passes the program the
 * paths its parent writes to. The entries are replaced in place, in the
 * array the program's main gets (envp) and in environ if it differs: no
 * setenv, whose copy a program that builds its children's environment from
 * main's envp (bash does) would not pass on. */
static void absolute_in_environ(char **envp)
{
    static const struct {
        const char *name;
        const char *abs;
    } vars[] = {{"HEAPPROF", hp_cfg.path},
                {"HEAPPROF_LEAKS", hp_cfg.leaks_path},
                {"HEAPPROF_SUPPRESSIONS", hp_cfg.suppressions},
                {"HEAPPROF_CPU", hp_cfg.cpu_path},
                {"HEAPPROF_TRACE", hp_cfg.trace_path}};
    static char entries[sizeof vars / sizeof vars[0]][4200];
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *raw = hp_env(vars[i].name);
        if (!raw || !*raw || raw[0] == '/' || !vars[i].abs[0])
            continue;
        int n = snprintf(entries[i], sizeof entries[i], "%s=%s", vars[i].name, vars[i].abs);
        if (n < 0 || (size_t)n >= sizeof entries[i])
            continue;
        size_t nl = strlen(vars[i].name);
        char **arrays[2] = {envp, environ != envp ? environ : NULL};
        for (int k = 0; k < 2; k++)
            for (char **e = arrays[k]; e && *e; e++)
                if (!strncmp(*e, vars[i].name, nl) && (*e)[nl] == '=')
                    *e = entries[i];
    }
}

/* At start-up (record/lifecycle.c, from the first constructor of this
 * object): relative paths made absolute in the environment passed on, and
 * the lines about unknown and ineffective variables. */
void hp_config_startup(char **envp)
{
    if (getauxval(AT_SECURE))
        return; /* a setuid program: it reads no paths, and says nothing */
    absolute_in_environ(envp);
    if (say_unknown(false) + say_ineffective(false) == 0 || parent_runs_heapprof())
        return;
    say_unknown(true);
    say_ineffective(true);
}
