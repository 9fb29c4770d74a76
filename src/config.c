/* Configuration from the environment, read once at start-up.
 *
 * Every variable is checked; a bad value gets one line on stderr naming the
 * variable and what is used instead, and never stops the program. The
 * output path is read with secure_getenv, so a setuid program ignores it.
 */
#define _GNU_SOURCE
#include "hp.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hp_config hp_cfg;

enum { DEFAULT_MAX_MEMORY_MIB = 64 };
enum { DEFAULT_RATE = 524288, DEFAULT_LEAK_STACKS = 10, DEFAULT_LEAK_FRAMES = 8 };

/* Some programs close stderr at exit (coreutils' close_stdout does), after
 * which the leak summary would be lost. A copy of stderr is kept on a high
 * descriptor, checked by device and inode before each use, because a program
 * may have put something else on that number since. */
static int err_fd = -1;
static dev_t err_dev;
static ino_t err_ino;

void hp_stderr_keep(void)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return;
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 900);
    if (fd < 0)
        return;
    err_fd = fd;
    err_dev = st.st_dev;
    err_ino = st.st_ino;
}

/* Chosen once per dump, before symbolization opens files that could take a
 * closed descriptor 2's number. */
static int chosen_fd = -1;

void hp_stderr_choose(void)
{
    struct stat st;
    chosen_fd = STDERR_FILENO;
    if (fcntl(STDERR_FILENO, F_GETFD) < 0 && err_fd >= 0 && fstat(err_fd, &st) == 0 &&
        st.st_dev == err_dev && st.st_ino == err_ino)
        chosen_fd = err_fd;
}

int hp_stderr_fd(void)
{
    return chosen_fd >= 0 ? chosen_fd : STDERR_FILENO;
}

int hp_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

void hp_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    hp_write_all(hp_stderr_fd(), buf, (size_t)n);
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

static bool absolute_path(const char *name, const char *value, char *out, size_t len)
{
    if (value[0] == '/') {
        if (strlen(value) >= len) {
            hp_log("heapprof: %s is too long; ignoring it", name);
            return false;
        }
        strcpy(out, value);
        return true;
    }
    /* Resolved once against the start-up directory: programs chdir. */
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        hp_log("heapprof: %s=%.200s is relative and the working directory is unknown (%s); "
               "ignoring it",
               name, value, strerror(errno));
        return false;
    }
    int n = snprintf(out, len, "%s/%s", strcmp(cwd, "/") ? cwd : "", value);
    if (n < 0 || (size_t)n >= len) {
        hp_log("heapprof: %s is too long; ignoring it", name);
        return false;
    }
    return true;
}

/* The directory part of path must exist and be writable now, or the profile
 * could only fail at exit, when it is too late to say so usefully. */
static bool dir_writable(const char *path)
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
        hp_log("heapprof: cannot write the profile in %s (not a directory); profiling is off", dir);
        return false;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        hp_log("heapprof: cannot write the profile in %s (%s); profiling is off", dir,
               strerror(errno));
        return false;
    }
    return true;
}

static int parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2},   {"HUP", SIGHUP}, {"PROF", SIGPROF},
                 {"URG", SIGURG},   {"WINCH", SIGWINCH}, {"PWR", SIGPWR}};
    if (!strncmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name))
            return names[i].sig;
    long v;
    if (parse_long(s, SIGRTMIN, SIGRTMAX, &v))
        return (int)v;
    return 0;
}

void hp_config_load(void)
{
    memset(&hp_cfg, 0, sizeof hp_cfg);
    hp_cfg.rate = DEFAULT_RATE;
    const char *out = secure_getenv("HEAPPROF");
    if (!out || !*out)
        return;
    if (!absolute_path("HEAPPROF", out, hp_cfg.path, sizeof hp_cfg.path))
        return;
    size_t plen = strlen(hp_cfg.path);
    if (plen && hp_cfg.path[plen - 1] == '/') {
        hp_log("heapprof: HEAPPROF=%.200s names a directory, not a file; profiling is off", out);
        return;
    }
    if (!dir_writable(hp_cfg.path))
        return;

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
    if (leaks && (!strcmp(leaks, "off") || !strcmp(leaks, "0")))
        hp_cfg.leaks_off = true;
    else if (leaks && *leaks && strcmp(leaks, "stderr") != 0)
        absolute_path("HEAPPROF_LEAKS", leaks, hp_cfg.leaks_path, sizeof hp_cfg.leaks_path);
    hp_cfg.leak_stacks = (int)env_long("HEAPPROF_LEAK_STACKS", 0, 100000, DEFAULT_LEAK_STACKS);
    hp_cfg.leak_frames =
        (int)env_long("HEAPPROF_LEAK_FRAMES", 1, HP_MAX_FRAMES, DEFAULT_LEAK_FRAMES);
    const char *supp = secure_getenv("HEAPPROF_SUPPRESSIONS");
    if (supp && *supp)
        absolute_path("HEAPPROF_SUPPRESSIONS", supp, hp_cfg.suppressions,
                      sizeof hp_cfg.suppressions);
    hp_cfg.leaks_exit_code = (int)env_long("HEAPPROF_LEAKS_EXIT_CODE", 0, 255, 0);
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
    hp_cfg.peak = env_long("HEAPPROF_PEAK", 0, 1, 0) == 1;
    hp_cfg.announce = env_long("HEAPPROF_ANNOUNCE", 0, 1, 0) == 1;
    hp_cfg.debuginfo = env_long("HEAPPROF_DEBUGINFO", 0, 1, 0) == 1;
    hp_cfg.enabled = true;
}

/* Inserts ".TAG" before the profile's extension, so that out.pb.gz becomes
 * out.TAG.pb.gz and still reads as a gzipped profile. */
int hp_path_with_tag(char *out, size_t len, const char *path, const char *tag)
{
    const char *ext = strstr(hp_basename(path), ".pb");
    if (!ext)
        ext = path + strlen(path);
    int n = snprintf(out, len, "%.*s.%s%s", (int)(ext - path), path, tag, ext);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* A name for one of the process's descriptors: /dev/stdin, /dev/stdout,
 * /dev/stderr, /dev/fd/N, /proc/self/fd/N, /proc/thread-self/fd/N or
 * /proc/PID/fd/N. */
static bool names_descriptor(const char *path)
{
    static const char *const prefixes[] = {"/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/"};
    if (!strcmp(path, "/dev/stdin") || !strcmp(path, "/dev/stdout") || !strcmp(path, "/dev/stderr"))
        return true;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(path, prefixes[i], strlen(prefixes[i])))
            return all_digits(path + strlen(prefixes[i]));
    if (strncmp(path, "/proc/", 6) != 0)
        return false;
    const char *p = path + 6, *slash = strchr(p, '/');
    if (!slash || slash == p || strncmp(slash, "/fd/", 4) != 0)
        return false;
    for (const char *q = p; q < slash; q++)
        if (*q < '0' || *q > '9')
            return false;
    return all_digits(slash + 4);
}

bool hp_path_in_place(const char *path)
{
    if (names_descriptor(path))
        return true;
    struct stat st, target;
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode))
        return false;
    /* A symlink is replaced like a file (never followed into a file someone
     * else planted it to), unless it leads to a FIFO, device or socket. */
    if (S_ISLNK(st.st_mode))
        return stat(path, &target) == 0 && !S_ISREG(target.st_mode) && !S_ISDIR(target.st_mode);
    return true;
}

int hp_output_path(char *out, size_t len, const char *pattern, bool child)
{
    long pid = (long)getpid();
    size_t o = 0;
    bool had_pid = false;
    for (const char *p = pattern; *p; p++) {
        char tmp[32];
        const char *ins = NULL;
        char one[2] = {*p, 0};
        if (p[0] == '%' && p[1] == 'p') {
            snprintf(tmp, sizeof tmp, "%ld", pid);
            ins = tmp;
            had_pid = true;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            ins = "%";
            p++;
        } else {
            ins = one;
        }
        size_t n = strlen(ins);
        if (o + n >= len)
            return -ENAMETOOLONG;
        memcpy(out + o, ins, n);
        o += n;
    }
    out[o] = 0;
    if (child && !had_pid) {
        char tmp[4096], tag[32];
        if (o >= sizeof tmp)
            return -ENAMETOOLONG;
        memcpy(tmp, out, o + 1);
        snprintf(tag, sizeof tag, "%ld", pid);
        return hp_path_with_tag(out, len, tmp, tag);
    }
    return 0;
}
