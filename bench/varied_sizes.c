/* One call site, buffers of every length: does a heap profiler's own memory
 * grow with the run?
 *
 * usage: varied_sizes GIB [STEP_GIB]
 * Allocates GIB GiB in total (a decimal number: 0.5, 80, 1300) from a single
 * call site, each buffer of a uniform random length 1..1 MiB (xorshift64,
 * fixed seed, so every run allocates the same sequence). 64 buffers are live
 * at a time, in a ring: the oldest is freed and a new one allocated in its
 * place. Only the first byte of each buffer is written, so the program's own
 * resident memory stays small and the run is fast.
 *
 * Every STEP_GIB GiB allocated (default GIB/16), and once before the first
 * allocation, it prints
 *     progress GIB RSS_KB
 * GIB the GiB allocated so far (three decimals), RSS_KB the process's
 * resident set from /proc/self/statm, read with open/read into a stack buffer
 * and printed with write(2): the measurement allocates nothing, so a profiler
 * sees only the ring's allocations. At the end one line of key=value pairs:
 *     done gib=... allocs=... seconds=... cpu_seconds=... hwm_kib=...
 * (hwm_kib: VmHWM, the peak RSS so far, before any exit dump.)
 *
 * Lengths up to 1 MiB straddle glibc's mmap threshold, which starts at 128
 * KiB and rises to the size of the largest mmap'd chunk freed (glibc's
 * dynamic threshold): after the first frees almost every buffer comes from
 * the heap. The program leaves that to glibc and calls no mallopt.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LIVE = 64, MAX_LEN = 1 << 20 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t xorshift64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The one call site. noinline: it stays one frame with one return address,
 * whatever the compiler does with main's loop. */
__attribute__((noinline)) static char *new_buffer(size_t len)
{
    char *p = malloc(len);
    if (p)
        p[0] = (char)len;
    return p;
}

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads a small /proc file into buf (NUL-terminated); returns its length or
 * -1. No stdio: nothing is allocated. */
static long read_proc(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (long)n;
}

/* Resident set in KiB: the second field of /proc/self/statm, in pages. */
static long rss_kib(void)
{
    char buf[256];
    if (read_proc("/proc/self/statm", buf, sizeof buf) <= 0)
        return -1;
    char *p = buf;
    strtoul(p, &p, 10);
    unsigned long pages = strtoul(p, NULL, 10);
    return (long)(pages * (unsigned long)sysconf(_SC_PAGESIZE) / 1024);
}

/* VmHWM from /proc/self/status, in KiB. */
static long hwm_kib(void)
{
    char buf[4096];
    if (read_proc("/proc/self/status", buf, sizeof buf) <= 0)
        return -1;
    char *p = strstr(buf, "VmHWM:");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

static void say(const char *line, int len)
{
    if (len > 0 && write(1, line, (size_t)len) < 0)
        _exit(3);
}

/* GiB with three decimals, from whole MiB, without floating point in the
 * format (snprintf's integer conversions use no heap). */
static void progress(uint64_t bytes)
{
    char line[96];
    uint64_t mib = bytes >> 20;
    int n =
        snprintf(line, sizeof line, "progress %llu.%03llu %ld\n", (unsigned long long)(mib / 1024),
                 (unsigned long long)(mib % 1024 * 1000 / 1024), rss_kib());
    say(line, n);
}

int main(int argc, char **argv)
{
    double gib = argc >= 2 ? strtod(argv[1], NULL) : 0;
    double step_gib = argc >= 3 ? strtod(argv[2], NULL) : gib / 16;
    if (argc < 2 || argc > 3 || !(gib > 0) || !(step_gib > 0)) {
        fprintf(stderr, "usage: %s GIB [STEP_GIB]\n", argv[0]);
        return 2;
    }
    const uint64_t total = (uint64_t)(gib * (double)(1ull << 30));
    const uint64_t step = (uint64_t)(step_gib * (double)(1ull << 30));
    if (step == 0) {
        fprintf(stderr, "%s: STEP_GIB too small\n", argv[0]);
        return 2;
    }
    static char *ring[LIVE];
    uint64_t bytes = 0, next = step, allocs = 0, shown = 0;
    double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    progress(0);
    while (bytes < total) {
        size_t len = 1 + (size_t)(xorshift64() % MAX_LEN);
        unsigned k = (unsigned)(allocs % LIVE);
        free(ring[k]);
        ring[k] = new_buffer(len);
        if (!ring[k]) {
            fprintf(stderr, "%s: malloc(%zu) failed\n", argv[0], len);
            return 1;
        }
        allocs++;
        bytes += len;
        if (bytes >= next) {
            progress(bytes);
            shown = bytes;
            while (next <= bytes)
                next += step;
        }
    }
    if (shown != bytes)
        progress(bytes);
    for (unsigned k = 0; k < LIVE; k++)
        free(ring[k]);
    double w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
    char line[200];
    uint64_t mib = bytes >> 20;
    int n =
        snprintf(line, sizeof line,
                 "done gib=%llu.%03llu allocs=%llu seconds=%.3f cpu_seconds=%.3f "
                 "hwm_kib=%ld\n",
                 (unsigned long long)(mib / 1024), (unsigned long long)(mib % 1024 * 1000 / 1024),
                 (unsigned long long)allocs, w1 - w0, c1 - c0, hwm_kib());
    say(line, n);
    return 0;
}
