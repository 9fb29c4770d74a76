/* cpuburn: threads that split their CPU time between named functions in a
 * known ratio, for the CPU profile tests (tests/cpu/) and bench/cpu.py.
 *
 * Each worker thread loops until it has used SECONDS of its own CPU time
 * (CLOCK_THREAD_CPUTIME_ID): it runs burn_a for 3u, then burn_b for u, with u
 * drawn uniformly from 0.5 to 2.5 ms at every round, so burn_a gets exactly
 * 3/4 of the thread's CPU whatever the machine's load, and the rounds never
 * line up with the kernel's tick. Each burn function spins in its own body
 * and reads the clock only every few tens of microseconds, so nearly all of
 * its time is its own (flat), not the clock's.
 *
 * usage: cpuburn [-t THREADS] [-s SECONDS | -w ROUNDS] [-x STATUS] [--alloc] [--fork]
 *                [--churn] [--mask] [--block-all] [--loader]
 *                [--own-sigprof MS] [--api FILE]
 *   -w ROUNDS        a fixed amount of work instead (ROUNDS rounds per
 *                    thread, the same split in iterations), for timing
 *   --alloc          also allocate (keep_some), for the heap endpoints
 *   --fork           fork first: the child burns burn_c alone for SECONDS and
 *                    exits normally; the parent waits for it
 *   --churn          workers come and go: each round of work is done by a
 *                    new thread, which exits after it (threads exiting and
 *                    starting mid-profile)
 *   --mask           workers block SIGPROF for their first half, then
 *                    unblock it
 *   --block-all      workers block every signal for good (as liblzma's do)
 *   --loader         walk_objects (dl_iterate_phdr in a loop) instead of
 *                    burn_b
 *   --own-sigprof MS once the process has used MS ms of CPU time (so what
 *                    comes before does not depend on the machine's load),
 *                    install the program's own SIGPROF handler and
 *                    ITIMER_PROF, and say whether it ran
 *   --api FILE       (cpuburn-linked) heapprof_cpu_start(FILE) before the
 *                    work, heapprof_cpu_stop() after it
 * Output: one line naming what was done, the same with or without heapprof.
 *
 * With CPUBURN_HOLD=1 in the environment (for tests that read a running
 * cpuburn's endpoint, which must not race the clock on a busy machine),
 * cpuburn ends only when its stdin does: the workers stop when they have
 * burned SECONDS each or when stdin ends, whichever comes first, and the
 * program reads stdin to its end before it prints its line and exits. A
 * test gives a large SECONDS and closes the pipe when it has what it
 * needs; a test that dies closes it too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef HEAPPROF_LINKED
#include "heapprof.h"
#endif

static double seconds = 2.0;
static int alloc_too, churn, mask, block_all, loader;
static long fixed_work; /* -w: rounds per thread, a fixed amount of work */
static volatile uint64_t sink;
static int stdin_done;   /* CPUBURN_HOLD: stdin has ended; the workers stop */
static int workers_done; /* workers (or chains) that have finished */

static int stopped(void)
{
    return __atomic_load_n(&stdin_done, __ATOMIC_RELAXED);
}

static int64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Not static: the profiles name them. */
void burn_a(int64_t ns);
void burn_b(int64_t ns);
void burn_c(int64_t ns);
void keep_some(unsigned *seed);
void walk_objects(int64_t ns);

/* Spins until the thread has used ns more CPU; or, with -w (fixed work),
 * for ns / 20000 passes without reading the clock. */
#define BURN_BODY(ns, mul)                                                                         \
    do {                                                                                           \
        int64_t end = fixed_work ? 0 : cpu_ns() + (ns), passes = (ns) / 20000;                     \
        uint64_t x = sink;                                                                         \
        do {                                                                                       \
            for (int i = 0; i < 20000; i++)                                                        \
                x = x * (mul) + (uint64_t)i;                                                       \
        } while (fixed_work ? --passes > 0 : cpu_ns() < end);                                      \
        sink = x;                                                                                  \
    } while (0)

__attribute__((noinline)) void burn_a(int64_t ns)
{
    BURN_BODY(ns, 6364136223846793005ull);
}

__attribute__((noinline)) void burn_b(int64_t ns)
{
    BURN_BODY(ns, 2862933555777941757ull);
}

__attribute__((noinline)) void burn_c(int64_t ns)
{
    BURN_BODY(ns, 3202034522624059733ull);
}

static int count_objects(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    ++*(int *)data;
    return 0;
}

/* --loader: walks the loader's list of objects for ns of CPU, as C++
 * exception unwinding and profilers do (glibc's loader lock, taken and
 * released at every call). */
__attribute__((noinline)) void walk_objects(int64_t ns)
{
    int64_t end = cpu_ns() + ns;
    int n = 0;
    do {
        for (int i = 0; i < 100; i++)
            dl_iterate_phdr(count_objects, &n);
    } while (cpu_ns() < end);
    sink += (uint64_t)n;
}

/* Keeps a window of 64 blocks alive, so the heap profile has something. */
__attribute__((noinline)) void keep_some(unsigned *seed)
{
    static __thread void *kept[64];
    unsigned i = (unsigned)rand_r(seed) % 64;
    free(kept[i]);
    kept[i] = malloc(4096 + (size_t)(rand_r(seed) % 65536));
    if (kept[i])
        memset(kept[i], 1, 64);
}

/* One round: 3u of burn_a, u of burn_b. */
static void round_of_work(unsigned *seed)
{
    int64_t u = 500000 + (int64_t)(rand_r(seed) % 2000000);
    burn_a(3 * u);
    if (loader)
        walk_objects(u);
    else
        burn_b(u);
    if (alloc_too)
        keep_some(seed);
}

static void *worker_body(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    int64_t total = (int64_t)(seconds * 1e9), start = cpu_ns();
    if (fixed_work) {
        for (long i = 0; i < fixed_work; i++)
            round_of_work(&seed);
        return NULL;
    }
    if (block_all) {
        /* As liblzma and some thread pools do: no signal, ever. */
        sigset_t s;
        sigfillset(&s);
        pthread_sigmask(SIG_BLOCK, &s, NULL);
    }
    if (mask) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGPROF);
        pthread_sigmask(SIG_BLOCK, &s, NULL);
        while (cpu_ns() - start < total / 2 && !stopped())
            round_of_work(&seed);
        pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    }
    while (cpu_ns() - start < total && !stopped())
        round_of_work(&seed);
    return NULL;
}

static void *worker(void *arg)
{
    worker_body(arg);
    __atomic_add_fetch(&workers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* --churn: each round on a thread of its own. */
struct churn_arg {
    unsigned seed;
    int64_t used_ns; /* the CPU time of the last thread, all of its life */
};

static void *one_round(void *arg)
{
    struct churn_arg *a = arg;
    for (int i = 0; i < 20; i++)
        round_of_work(&a->seed);
    a->used_ns = cpu_ns();
    return NULL;
}

static void *churner(void *arg)
{
    struct churn_arg a = {(unsigned)(uintptr_t)arg * 2654435761u + 7, 0};
    /* Until this chain of threads has used SECONDS of CPU, each thread's
     * whole life summed. */
    int64_t used = 0;
    while (used < (int64_t)(seconds * 1e9) && !stopped()) {
        pthread_t th;
        if (pthread_create(&th, NULL, one_round, &a) != 0)
            break;
        pthread_join(th, NULL);
        used += a.used_ns;
        a.seed = a.seed * 1103515245u + 12345u;
    }
    __atomic_add_fetch(&workers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static volatile sig_atomic_t own_ran;
static void own_handler(int sig)
{
    (void)sig;
    own_ran = 1;
}

int main(int argc, char **argv)
{
    int threads = 2, status = 0, do_fork = 0;
    long own_ms = -1;
    const char *api = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "-w") && i + 1 < argc)
            fixed_work = atol(argv[++i]);
        else if (!strcmp(argv[i], "-x") && i + 1 < argc)
            status = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--alloc"))
            alloc_too = 1;
        else if (!strcmp(argv[i], "--fork"))
            do_fork = 1;
        else if (!strcmp(argv[i], "--churn"))
            churn = 1;
        else if (!strcmp(argv[i], "--mask"))
            mask = 1;
        else if (!strcmp(argv[i], "--block-all"))
            block_all = 1;
        else if (!strcmp(argv[i], "--loader"))
            loader = 1;
        else if (!strcmp(argv[i], "--own-sigprof") && i + 1 < argc)
            own_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--api") && i + 1 < argc)
            api = argv[++i];
        else {
            fprintf(stderr, "cpuburn: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || threads > 256)
        threads = 2;
    const char *h = getenv("CPUBURN_HOLD");
    int hold = h && *h && strcmp(h, "0") != 0;
    pid_t child = -1;
    if (do_fork) {
        fflush(NULL);
        child = fork();
        if (child == 0) {
            burn_c((int64_t)(seconds * 1e9));
            printf("cpuburn: child burned burn_c\n");
            exit(0);
        }
    }
#ifdef HEAPPROF_LINKED
    if (api) {
        int r = heapprof_cpu_start(api);
        if (r)
            fprintf(stderr, "cpuburn: heapprof_cpu_start: %s\n", strerror(-r));
        r = heapprof_cpu_start(api);
        if (r != -EBUSY)
            fprintf(stderr, "cpuburn: a second heapprof_cpu_start gave %d, not -EBUSY\n", r);
    }
#else
    if (api) {
        fprintf(stderr, "cpuburn: --api needs cpuburn-linked\n");
        return 2;
    }
#endif
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tids[i], NULL, churn ? churner : worker, (void *)(uintptr_t)i) != 0) {
            fprintf(stderr, "cpuburn: cannot create a thread\n");
            return 1;
        }
    if (own_ms >= 0) {
        /* By CPU time, not by the clock: the profile before this point
         * holds own_ms of the process's CPU however busy the machine is. */
        struct timespec ms = {0, 1000000};
        while (process_cpu_ns() < (int64_t)own_ms * 1000000 &&
               __atomic_load_n(&workers_done, __ATOMIC_ACQUIRE) < threads)
            nanosleep(&ms, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = own_handler;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGPROF, &sa, NULL);
        struct itimerval it = {{0, 10000}, {0, 10000}};
        setitimer(ITIMER_PROF, &it, NULL);
    }
    if (hold) {
        char buf[512];
        ssize_t n;
        while ((n = read(0, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
            ;
        __atomic_store_n(&stdin_done, 1, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    if (own_ms >= 0) {
        struct itimerval off;
        memset(&off, 0, sizeof off);
        setitimer(ITIMER_PROF, &off, NULL);
    }
#ifdef HEAPPROF_LINKED
    if (api) {
        int r = heapprof_cpu_stop();
        if (r)
            fprintf(stderr, "cpuburn: heapprof_cpu_stop: %s\n", strerror(-r));
    }
#endif
    if (child > 0) {
        int st = 0;
        waitpid(child, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            printf("cpuburn: the child ended badly (%#x)\n", st);
    }
    printf("cpuburn: %d %s burned burn_a:burn_b 3:1%s\n", threads,
           churn ? "chains of threads" : "threads",
           own_ms >= 0 ? (own_ran ? "; own SIGPROF handler ran" : "; own handler never ran") : "");
    return status;
}
