/* Lock contention and blocking with known truth, for the mutex and block
 * profiles (test_contention.py).
 *
 * Mutex: a holder thread takes a mutex, lets the waiter know, holds it
 * HOLD_MS, and lets it go; the waiter, told the mutex is held, locks it in
 * waiter_lock(), so each of ROUNDS locks is contended. The waiter times its
 * own waits: "truth mutex waiter_lock N_NS COUNT".
 *
 * Block: sleeper() sleeps SLEEP_MS with usleep, poller() waits in poll with
 * no descriptors for POLL_MS, each ROUNDS times, timed the same way: "truth
 * block sleeper N_NS COUNT" and "truth block poller N_NS COUNT".
 *
 * Then "done", and the program waits for its stdin to close, so the test
 * reads the endpoint while it is alive. With an argument, the workload runs
 * again each time a line arrives on stdin (for ?seconds=N deltas), printing
 * its truth again.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { ROUNDS = 25, HOLD_MS = 20, SLEEP_MS = 10, POLL_MS = 15 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sem_t held, done;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *holder(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&mu);
        sem_post(&held);
        struct timespec ts = {0, HOLD_MS * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_unlock(&mu);
        sem_wait(&done);
    }
    return NULL;
}

__attribute__((noinline)) static int64_t waiter_lock(void)
{
    int64_t t0 = now_ns();
    pthread_mutex_lock(&mu);
    int64_t d = now_ns() - t0;
    pthread_mutex_unlock(&mu);
    return d;
}

static void mutex_phase(void)
{
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    int64_t total = 0;
    for (int i = 0; i < ROUNDS; i++) {
        sem_wait(&held);
        total += waiter_lock();
        sem_post(&done);
    }
    pthread_join(t, NULL);
    printf("truth mutex waiter_lock %lld %d\n", (long long)total, ROUNDS);
}

__attribute__((noinline)) static void sleeper(void)
{
    int64_t total = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int64_t t0 = now_ns();
        usleep(SLEEP_MS * 1000);
        total += now_ns() - t0;
    }
    printf("truth block sleeper %lld %d\n", (long long)total, ROUNDS);
}

__attribute__((noinline)) static void poller(void)
{
    int64_t total = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int64_t t0 = now_ns();
        poll(NULL, 0, POLL_MS);
        total += now_ns() - t0;
    }
    printf("truth block poller %lld %d\n", (long long)total, ROUNDS);
}

static void workload(void)
{
    mutex_phase();
    sleeper();
    poller();
    printf("done\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    sem_init(&held, 0, 0);
    sem_init(&done, 0, 0);
    workload();
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (argc > 1)
            workload();
    return 0;
}
