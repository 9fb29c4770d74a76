/* tracer_block: blocking calls and lock waits of known lengths inside an
 * execution trace, and a fork and an exec during one (tests/live/
 * test_trace.py, checks `blocked` and `lifecycle`).
 *
 * Usage: tracer_block PATH
 * Starts a trace into PATH with heapprof_trace_start, then, on a thread
 * named "trc-wait", three times: sleeps 20 ms (usleep), polls nothing for
 * 15 ms, and waits for a mutex that thread "trc-hold" holds until the
 * waiter is asleep on it, then 20 ms more. Stops the trace and prints the
 * waits' lengths as it measured them, in microseconds, one per line:
 * `usleep 20123`, `poll 15077`, `pthread_mutex_lock 20410`. The trace must
 * hold each as a slice of about that length on the waiter's track.
 *
 * Usage: tracer_block --exec PATH
 * Starts a trace into PATH, tries three execs that cannot start anything,
 * forks a child that exits at once, waits for it, prints `pid N` and execs
 * /bin/true: the trace, written before that exec with the pid in its name,
 * must hold the fork and that exec, and nothing of the failed ones.
 */
#define _GNU_SOURCE
#include <heapprof.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ROUNDS = 3, KINDS = 3 };

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long waits[ROUNDS * KINDS];
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static int held;       /* round number the holder holds m for, 0: none */
static int trying;     /* round number the waiter is about to lock m in */
static int waiter_tid; /* the waiter's thread id */

/* Whether thread tid is asleep (state S in /proc), as a waiter on a
 * mutex is once it is in the kernel. */
static int asleep(int tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

static void *holder(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "trc-hold");
    for (int r = 1; r <= ROUNDS; r++) {
        pthread_mutex_lock(&m);
        __atomic_store_n(&held, r, __ATOMIC_RELEASE);
        /* Until the waiter, past its last other wait, sleeps on the mutex
         * (a condition, not a time), then 20 ms more. */
        while (__atomic_load_n(&trying, __ATOMIC_ACQUIRE) != r ||
               !asleep(__atomic_load_n(&waiter_tid, __ATOMIC_ACQUIRE)))
            sched_yield();
        usleep(20000);
        pthread_mutex_unlock(&m);
        while (__atomic_load_n(&held, __ATOMIC_ACQUIRE) == r)
            sched_yield();
    }
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "trc-wait");
    __atomic_store_n(&waiter_tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
    for (int i = 0; i < ROUNDS; i++) {
        long long t = now_us();
        usleep(20000);
        waits[KINDS * i] = now_us() - t;
        t = now_us();
        poll(NULL, 0, 15);
        waits[KINDS * i + 1] = now_us() - t;
        while (__atomic_load_n(&held, __ATOMIC_ACQUIRE) != i + 1)
            sched_yield();
        __atomic_store_n(&trying, i + 1, __ATOMIC_RELEASE);
        t = now_us();
        pthread_mutex_lock(&m);
        waits[KINDS * i + 2] = now_us() - t;
        __atomic_store_n(&held, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&m);
    }
    return NULL;
}

static int run_exec(const char *path)
{
    if (heapprof_trace_start(path) != 0) {
        fputs("tracer_block: cannot start the trace\n", stderr);
        return 1;
    }
    /* Execs that cannot start anything: a path with no file, and a name
     * on no directory of PATH. The trace goes on through them (the fork
     * below must be in it) and does not show them. */
    execl("/nonexistent/heapprof-no-such-program", "x", (char *)NULL);
    execlp("heapprof-no-such-program", "x", (char *)NULL);
    char *const none[] = {"x", NULL};
    execvp("/nonexistent/heapprof-no-such-program", none);
    pid_t c = fork();
    if (c == 0)
        _exit(0);
    if (c < 0 || waitpid(c, NULL, 0) != c)
        return 1;
    printf("pid %d\n", (int)getpid());
    fflush(stdout);
    execl("/bin/true", "true", (char *)NULL);
    perror("tracer_block: execl /bin/true");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--exec"))
        return run_exec(argv[2]);
    if (argc < 2 || heapprof_trace_start(argv[1]) != 0) {
        fputs("tracer_block: cannot start the trace\n", stderr);
        return 1;
    }
    pthread_t t, u;
    if (pthread_create(&t, NULL, waiter, NULL) != 0 || pthread_create(&u, NULL, holder, NULL) != 0)
        return 1;
    pthread_join(t, NULL);
    pthread_join(u, NULL);
    int r = heapprof_trace_stop();
    static const char *names[KINDS] = {"usleep", "poll", "pthread_mutex_lock"};
    for (int i = 0; i < ROUNDS * KINDS; i++)
        printf("%s %lld\n", names[i % KINDS], waits[i]);
    return r != 0;
}
