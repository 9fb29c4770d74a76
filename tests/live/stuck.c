/* Threads stuck in known places, for /debug/pprof/goroutine, threadcreate
 * and symbol: two threads deadlocked on two mutexes taken in opposite order
 * ("lock-ab" in take_ab, "lock-ba" in take_ba), one blocked in poll() on a
 * pipe nothing writes to ("poller", in wait_in_poll), one in nanosleep
 * ("sleeper", in wait_in_sleep), one spinning ("spinner", in spin_here).
 * The deadlocked pair is created by start_lockers, the other three by
 * start_others.
 *
 * Prints the addresses of its functions ("addr NAME 0x..."), then "ready",
 * and waits for stdin to close; then prints how many times poll or
 * nanosleep returned EINTR (the truth: 0, with or without heapprof) and
 * exits, the deadlocked threads still stuck.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both;
static int pipefd[2];
static volatile unsigned long spins;
static volatile int eintr;

static __attribute__((noinline)) void take_ab(void)
{
    pthread_mutex_lock(&a);
    pthread_barrier_wait(&both);
    pthread_mutex_lock(&b); /* never returns */
    pthread_mutex_unlock(&b);
    pthread_mutex_unlock(&a);
}

static __attribute__((noinline)) void take_ba(void)
{
    pthread_mutex_lock(&b);
    pthread_barrier_wait(&both);
    pthread_mutex_lock(&a); /* never returns */
    pthread_mutex_unlock(&a);
    pthread_mutex_unlock(&b);
}

static __attribute__((noinline)) void wait_in_poll(void)
{
    struct pollfd p = {pipefd[0], POLLIN, 0};
    for (;;)
        if (poll(&p, 1, -1) < 0 && errno == EINTR)
            eintr++;
}

static __attribute__((noinline)) void wait_in_sleep(void)
{
    for (;;) {
        struct timespec ts = {3600, 0};
        if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
            eintr++;
    }
}

static __attribute__((noinline)) void spin_here(void)
{
    for (;;)
        spins++;
}

static void *locker(void *arg)
{
    pthread_setname_np(pthread_self(), arg);
    if (!strcmp(arg, "lock-ab"))
        take_ab();
    else
        take_ba();
    return NULL;
}

static void *other(void *arg)
{
    pthread_setname_np(pthread_self(), arg);
    if (!strcmp(arg, "poller"))
        wait_in_poll();
    else if (!strcmp(arg, "sleeper"))
        wait_in_sleep();
    else
        spin_here();
    return NULL;
}

static __attribute__((noinline)) void start_lockers(void)
{
    static char n1[] = "lock-ab", n2[] = "lock-ba";
    pthread_t t;
    pthread_create(&t, NULL, locker, n1);
    pthread_create(&t, NULL, locker, n2);
}

static __attribute__((noinline)) void start_others(void)
{
    static char n1[] = "poller", n2[] = "sleeper", n3[] = "spinner";
    pthread_t t;
    pthread_create(&t, NULL, other, n1);
    pthread_create(&t, NULL, other, n2);
    pthread_create(&t, NULL, other, n3);
}

int main(void)
{
    if (pipe(pipefd) != 0)
        return 1;
    pthread_barrier_init(&both, NULL, 2);
    printf("addr take_ab %p\naddr take_ba %p\naddr wait_in_poll %p\naddr spin_here %p\n"
           "addr start_lockers %p\n",
           (void *)take_ab, (void *)take_ba, (void *)wait_in_poll, (void *)spin_here,
           (void *)start_lockers);
    start_lockers();
    start_others();
    printf("ready\n");
    fflush(stdout);
    char buf[256];
    while (fread(buf, 1, sizeof buf, stdin) > 0)
        ;
    printf("eintr %d\n", eintr);
    fflush(stdout);
    _exit(0);
}
