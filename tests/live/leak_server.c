/* leak_server: a server-like program whose lost memory is known exactly, for
 * the live leak checks (/debug/pprof/leaks, tests/live/test_leaks_live.py).
 *
 *   leak_server [-c CACHE] [-t THREADS] [-r PER_SECOND] [-s SIZE]
 *
 * What runs:
 *   churn threads (THREADS, default 3)  allocate and free all the time, in
 *       bursts of BURST operations ("requests") of 16..4111 bytes from
 *       churn_alloc, each thread holding RING of them in an array on its own
 *       stack; the objects hold no pointers. Each burst's duration is the
 *       request's latency; "stall" prints the longest since the last "stall".
 *   the cache  CACHE (default 1000) objects of 72 bytes from cache_put, kept
 *       in an array from cache_table that the global `cache` points to:
 *       always reachable.
 *   the leaker  on command, leak_one loses objects: each is filled with
 *       bytes that are not pointers, held only in the volatile global `hold`,
 *       which is then overwritten; the stack below is cleared (scrub) so no
 *       stale copy stays above a stack pointer. Definitely lost.
 *   with -r, a thread loses PER_SECOND objects of SIZE bytes (default 96) a
 *       second by itself, through leak_tick and leak_one, on a schedule of
 *       absolute times (a late thread catches up), and notes when each was
 *       lost (CLOCK_REALTIME, just before and just after).
 *
 * Commands on stdin, one a line; each answers one line on stdout:
 *   leak N [SIZE]  loses N objects of SIZE (default 96) bytes from leak_one:
 *                  "leaked N total T bytes B" (T objects, B bytes lost on
 *                  command so far)
 *   grow MIB       keeps MIB MiB more of reachable objects that point at one
 *                  another (big_put): "grown MIB objects N"
 *   ping           "pong"
 *   stall          "stall max_us=U requests=R": the longest churn request
 *                  since the last "stall", and how many were served
 *   wait           waitpid(-1, WNOHANG) now: "wait rc=R errno=E children=C
 *                  sigchld=S": its result, the processes whose parent this
 *                  process is (from /proc), and the SIGCHLDs received so far
 *   spawn N        a thread runs /bin/true N times by fork and exec, waiting
 *                  for each: "spawn started", then, when done,
 *                  "spawned N failed F"
 *   check [PATH]   heapprof_leak_check(PATH or NULL, &counts), looked up with
 *                  dlsym (heapprof is preloaded, not linked): "check rc=R
 *                  definite=OBJECTS/BYTES indirect=O/B reachable=O/B
 *                  estimated=E", or "check unavailable" without heapprof
 *   times          the rate leaker's notes: "times N", then N lines
 *                  "t BEFORE_NS AFTER_NS"
 *   quit           "bye", and exits 0
 * It prints "leak_server: ready" once the cache is full and the threads run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heapprof.h"

#define SITE __attribute__((noinline))
enum { RING = 64, BURST = 200, CACHE_SIZE = 72, MAX_TIMES = 1 << 16 };

static inline void escape(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

void *volatile hold; /* a lost object's only pointer, overwritten */
void **cache;        /* cache_table: CACHE objects from cache_put */
void **big;          /* big_put's objects, grown by "grow" */
static size_t nbig, capbig;

static uint64_t leaked_objects, leaked_bytes;
static volatile sig_atomic_t sigchld;
static uint64_t stall_max_ns, requests; /* atomics */
static int64_t tick_before[MAX_TIMES], tick_after[MAX_TIMES];
static size_t nticks; /* atomic */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* One line on stdout, whole, from any thread. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line)
        n = (int)sizeof line - 1;
    pthread_mutex_lock(&out_mu);
    for (int off = 0; off < n;) {
        ssize_t w = write(1, line + off, (size_t)(n - off));
        if (w <= 0)
            break;
        off += (int)w;
    }
    pthread_mutex_unlock(&out_mu);
}

static int64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Clears the stack below the caller's frame, where the frames of
 * leak_one, malloc and heapprof's hook were: a stale copy of a lost
 * object's address there would be above the stack pointer of the frames
 * called next, and read as a root. */
SITE static void scrub(void)
{
    char buf[64 * 1024];
    memset(buf, 0, sizeof buf);
    escape(buf);
}

SITE static void leak_one(size_t size)
{
    char *p = malloc(size);
    if (!p)
        abort();
    memset(p, 0x5a, size);
    hold = p;
    escape(p);
    hold = NULL;
}

SITE static void leak_many(long n, size_t size)
{
    for (long i = 0; i < n; i++)
        leak_one(size);
}

SITE static void *cache_table(size_t n)
{
    return calloc(n, sizeof(void *));
}

SITE static void *cache_put(uint64_t key)
{
    uint64_t *o = malloc(CACHE_SIZE);
    for (size_t i = 0; i < CACHE_SIZE / 8; i++)
        o[i] = key + i;
    return o;
}

SITE static void *big_put(size_t size, uint64_t *rng)
{
    uint64_t *o = malloc(size);
    if (!o)
        abort();
    for (size_t w = 0; w < size / 8; w++)
        o[w] = (w % 8 == 7 && nbig) ? (uint64_t)(uintptr_t)big[xorshift(rng) % nbig]
                                    : xorshift(rng) % 1000;
    return o;
}

SITE static void grow(long mib)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull + nbig;
    size_t bytes = 0, n = 0;
    while (bytes < (size_t)mib << 20) {
        if (nbig == capbig) {
            capbig = capbig ? 2 * capbig : 4096;
            big = realloc(big, capbig * sizeof *big);
            if (!big)
                abort();
        }
        size_t size = 16 + xorshift(&rng) % 2033;
        big[nbig] = big_put(size, &rng);
        nbig++;
        n++;
        bytes += size;
    }
    say("grown %ld objects %zu\n", mib, n);
}

SITE static void *churn_alloc(size_t size, uint64_t tag)
{
    uint64_t *o = malloc(size);
    if (!o)
        abort();
    for (size_t i = 0; i < size / 8; i++)
        o[i] = tag + i; /* small integers, never addresses */
    return o;
}

static void note_stall(int64_t ns)
{
    uint64_t cur = __atomic_load_n(&stall_max_ns, __ATOMIC_RELAXED);
    while ((uint64_t)ns > cur &&
           !__atomic_compare_exchange_n(&stall_max_ns, &cur, (uint64_t)ns, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        ;
    __atomic_add_fetch(&requests, 1, __ATOMIC_RELAXED);
}

static void *churn(void *arg)
{
    uint64_t rng = 0x12345678u + (uintptr_t)arg * 7919;
    void *ring[RING] = {0};
    struct timespec pause = {0, 1000000};
    for (;;) {
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        for (int k = 0; k < BURST; k++) {
            size_t i = xorshift(&rng) % RING;
            free(ring[i]);
            ring[i] = churn_alloc(16 + xorshift(&rng) % 4096, k);
        }
        note_stall(now_ns(CLOCK_MONOTONIC) - t0);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

SITE static void leak_tick(size_t size)
{
    size_t i = __atomic_load_n(&nticks, __ATOMIC_RELAXED);
    int64_t before = now_ns(CLOCK_REALTIME);
    leak_one(size);
    int64_t after = now_ns(CLOCK_REALTIME);
    if (i < MAX_TIMES) {
        tick_before[i] = before;
        tick_after[i] = after;
        __atomic_store_n(&nticks, i + 1, __ATOMIC_RELEASE);
    }
}

struct rate {
    long per_second;
    size_t size;
};

static void *rate_leaker(void *arg)
{
    const struct rate *r = arg;
    int64_t period = 1000000000LL / r->per_second;
    int64_t next = now_ns(CLOCK_MONOTONIC);
    for (;;) {
        next += period;
        struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        leak_tick(r->size);
        scrub();
    }
    return NULL;
}

static void on_sigchld(int sig)
{
    (void)sig;
    sigchld++;
}

/* Processes whose parent is this one, from /proc (the kernel's
 * /proc/PID/task/TID/children is not always built in). */
static int count_children(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
        int ppid;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self)
            n++;
    }
    closedir(d);
    return n;
}

static void *spawner(void *arg)
{
    long n = (long)arg, failed = 0;
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed++;
    }
    say("spawned %ld failed %ld\n", n, failed);
    return NULL;
}

typedef int (*leak_check_fn)(const char *, struct heapprof_leak_counts *);

static void api_check(char *path)
{
    leak_check_fn check = (leak_check_fn)dlsym(RTLD_DEFAULT, "heapprof_leak_check");
    if (!check) {
        say("check unavailable\n");
        return;
    }
    if (path)
        path[strcspn(path, "\n")] = 0;
    struct heapprof_leak_counts c;
    memset(&c, 0, sizeof c);
    int r = check(path, &c);
    say("check rc=%d definite=%llu/%llu indirect=%llu/%llu reachable=%llu/%llu estimated=%d\n", r,
        (unsigned long long)c.definite_objects, (unsigned long long)c.definite_bytes,
        (unsigned long long)c.indirect_objects, (unsigned long long)c.indirect_bytes,
        (unsigned long long)c.reachable_objects, (unsigned long long)c.reachable_bytes,
        (int)c.estimated);
}

/* One command; false on "quit". */
SITE static int handle(char *line)
{
    long n = 0, size = 96;
    if (sscanf(line, "leak %ld %ld", &n, &size) >= 1) {
        leak_many(n, (size_t)size);
        scrub();
        leaked_objects += (uint64_t)n;
        leaked_bytes += (uint64_t)n * (uint64_t)size;
        say("leaked %ld total %llu bytes %llu\n", n, (unsigned long long)leaked_objects,
            (unsigned long long)leaked_bytes);
    } else if (sscanf(line, "grow %ld", &n) == 1) {
        grow(n);
    } else if (!strcmp(line, "ping\n")) {
        say("pong\n");
    } else if (!strcmp(line, "stall\n")) {
        uint64_t ns = __atomic_exchange_n(&stall_max_ns, 0, __ATOMIC_RELAXED);
        uint64_t r = __atomic_exchange_n(&requests, 0, __ATOMIC_RELAXED);
        say("stall max_us=%llu requests=%llu\n", (unsigned long long)(ns / 1000),
            (unsigned long long)r);
    } else if (!strcmp(line, "wait\n")) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        int err = r < 0 ? errno : 0;
        int kids = count_children();
        say("wait rc=%d errno=%s children=%d sigchld=%d\n", (int)r,
            err == ECHILD ? "ECHILD"
            : err         ? strerror(err)
                          : "0",
            kids, (int)sigchld);
    } else if (sscanf(line, "spawn %ld", &n) == 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, spawner, (void *)n) != 0)
            abort();
        pthread_detach(t);
        say("spawn started\n");
    } else if (!strncmp(line, "check", 5) && (line[5] == '\n' || line[5] == ' ')) {
        api_check(line[5] == ' ' ? line + 6 : NULL);
    } else if (!strcmp(line, "times\n")) {
        size_t k = __atomic_load_n(&nticks, __ATOMIC_ACQUIRE);
        say("times %zu\n", k);
        for (size_t i = 0; i < k; i++)
            say("t %lld %lld\n", (long long)tick_before[i], (long long)tick_after[i]);
    } else if (!strcmp(line, "quit\n")) {
        say("bye\n");
        return 0;
    } else {
        say("unknown command: %.64s\n", line);
    }
    return 1;
}

int main(int argc, char **argv)
{
    long ncache = 1000, nthreads = 3;
    static struct rate rate = {0, 96};
    int opt;
    while ((opt = getopt(argc, argv, "c:t:r:s:")) != -1) {
        switch (opt) {
        case 'c':
            ncache = atol(optarg);
            break;
        case 't':
            nthreads = atol(optarg);
            break;
        case 'r':
            rate.per_second = atol(optarg);
            break;
        case 's':
            rate.size = (size_t)atol(optarg);
            break;
        default:
            fprintf(stderr, "usage: leak_server [-c CACHE] [-t THREADS] [-r PER_SECOND] "
                            "[-s SIZE]\n");
            return 2;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);

    cache = cache_table((size_t)ncache);
    for (long i = 0; i < ncache; i++)
        cache[i] = cache_put((uint64_t)i * 1000);
    for (long i = 0; i < nthreads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, churn, (void *)i) != 0)
            return 1;
    }
    if (rate.per_second > 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, rate_leaker, &rate) != 0)
            return 1;
    }
    say("leak_server: ready\n");
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (!handle(line))
            return 0;
    }
    return 0;
}
