/* tracer_block: blocking calls of known lengths inside an execution trace
 * (tests/live/test_trace.py, check `blocked`).
 *
 * Usage: tracer_block PATH
 * Starts a trace into PATH with heapprof_trace_start, then, on a thread
 * named "trc-wait", sleeps 20 ms (usleep) and polls nothing for 15 ms,
 * three times each, stops the trace and prints the waits' lengths as it
 * measured them, in microseconds, one per line: `usleep 20123`. The trace
 * must hold each as a slice of about that length on the thread's track.
 */
#define _GNU_SOURCE
#include <heapprof.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long waits[6];

static void *waiter(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "trc-wait");
    for (int i = 0; i < 3; i++) {
        long long t = now_us();
        usleep(20000);
        waits[2 * i] = now_us() - t;
        t = now_us();
        poll(NULL, 0, 15);
        waits[2 * i + 1] = now_us() - t;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || heapprof_trace_start(argv[1]) != 0) {
        fputs("tracer_block: cannot start the trace\n", stderr);
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, NULL) != 0)
        return 1;
    pthread_join(t, NULL);
    int r = heapprof_trace_stop();
    for (int i = 0; i < 6; i++)
        printf("%s %lld\n", i % 2 ? "poll" : "usleep", waits[i]);
    return r != 0;
}
