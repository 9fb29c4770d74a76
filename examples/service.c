/* A long-running example: a small "service" that keeps working until it is
 * told to stop, for reading heapprof's live profiles (HEAPPROF_HTTP,
 * HEAPPROF_SIGNAL, HEAPPROF_INTERVAL).
 *
 *   service [SECONDS] [PHASE_MS]
 *
 * Runs for SECONDS (default 5; 0 = until SIGTERM/SIGINT). At start,
 * early_setup() allocates 4 MiB that stays in use and is never added to, so
 * a delta profile taken later must leave it out. Each round,
 * handle_request() allocates and frees scratch buffers (churn: allocated,
 * never in use for long), cache_insert() adds entries to a cache that only
 * grows (a slow leak), and, after the first phase (PHASE_MS, default 1000
 * ms), late_growth() starts allocating as well, so a delta profile taken
 * after the first phase shows late_growth and not what came before.
 * Prints a checksum of its work at exit; exit status 0.
 *
 * With SERVICE_HOLD=1 in the environment (for tests, which must not race
 * the clock on a busy machine), the service ends only when its stdin does:
 * after SECONDS of work it prints "service: holding" and waits for the end
 * of its stdin; with SECONDS 0 it works until then. A test closes the pipe
 * when it has what it needs, and a test that dies closes it too.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline))

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

struct entry {
    struct entry *next;
    char key[48];
    char *value;
};

static struct entry *cache;
static uint64_t checksum;

SITE static void handle_request(int round)
{
    char *scratch = malloc(64 * 1024);
    memset(scratch, round & 0xff, 64 * 1024);
    checksum += (unsigned char)scratch[round % 1024];
    free(scratch);
}

SITE static void cache_insert(int round)
{
    struct entry *e = malloc(sizeof *e);
    snprintf(e->key, sizeof e->key, "key-%d", round);
    e->value = malloc(4096);
    memset(e->value, 'v', 4096);
    e->next = cache;
    cache = e;
    checksum += (uint64_t)round;
}

static char *early[64];

SITE static void early_setup(void)
{
    for (int i = 0; i < 64; i++) {
        early[i] = malloc(64 * 1024);
        memset(early[i], 'e', 64 * 1024);
    }
}

static char **late;
static size_t nlate;

SITE static void late_growth(int round)
{
    char **grown = realloc(late, (nlate + 1) * sizeof *late);
    if (!grown)
        return;
    late = grown;
    late[nlate] = malloc(32 * 1024);
    memset(late[nlate], 'l', 32 * 1024);
    nlate++;
    checksum += (uint64_t)round * 3;
}

static int64_t ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* SERVICE_HOLD: true once stdin has ended (or failed). wait: block until
 * then (or SIGTERM/SIGINT); else only look. */
static int stdin_ended(int wait)
{
    char buf[512];
    for (;;) {
        struct pollfd p = {0, POLLIN, 0};
        int r = poll(&p, 1, wait ? -1 : 0);
        if (r < 0 && errno == EINTR) {
            if (stop)
                return 1;
            continue;
        }
        if (r <= 0)
            return r < 0;
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}

int main(int argc, char **argv)
{
    long seconds = argc > 1 ? strtol(argv[1], NULL, 10) : 5;
    long phase_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
    const char *h = getenv("SERVICE_HOLD");
    int hold = h && *h && strcmp(h, "0") != 0;
    /* No SA_RESTART: a signal ends the wait for stdin too. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    early_setup();
    int round = 0;
    while (!stop && (seconds == 0 || ms_since(&t0) < seconds * 1000)) {
        if (hold && seconds == 0 && stdin_ended(0))
            break;
        handle_request(round);
        if (round % 4 == 0)
            cache_insert(round);
        if (ms_since(&t0) >= phase_ms)
            late_growth(round);
        round++;
        usleep(2000);
    }
    if (hold && seconds > 0 && !stop) {
        printf("service: holding\n");
        fflush(stdout);
        stdin_ended(1);
    }
    /* The checksum keeps the work from being optimised away; the output
     * stays the same however many rounds ran. */
    printf("service: done%s\n", checksum == 42 ? "." : "");
    return 0;
}
