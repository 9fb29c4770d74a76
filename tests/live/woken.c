/* woken: a thread that wakes from a blocking read while a live leak check
 * copies the process must not have the object it holds called lost.
 *
 *   woken CHECKS
 *
 * One 4000-byte object is reachable from a global at all times but while
 * the worker handles it: woken by a byte on a pipe (a second thread writes
 * one every 20 us), the worker takes the pointer off the global, keeps it
 * only in a slot of a frame 4 KiB below the one that blocked in read(), and
 * puts it back after 10 us of work. The main thread runs CHECKS leak checks
 * (heapprof_leak_check, found with dlsym) meanwhile and prints
 * "woken: N of CHECKS checks called it lost" (the truth is 0) and how many
 * checks ran. Exit status 0; 1 without heapprof.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct counts {
    uint64_t definite_objects, definite_bytes, indirect_objects, indirect_bytes;
    uint64_t reachable_objects, reachable_bytes;
    _Bool estimated;
};

static void *volatile held;
static int wake[2];
static volatile int done;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The object's only reference, far below the stack pointer of the read. */
__attribute__((noinline)) static void handle(void *p)
{
    volatile uintptr_t frame[512];
    for (int i = 0; i < 512; i++)
        frame[i] = 0;
    frame[0] = (uintptr_t)p;
    for (int64_t t = now_ns(); now_ns() - t < 10000;)
        ;
    held = (void *)frame[0];
    frame[0] = 0;
}

static void *worker(void *arg)
{
    char c;
    while (!done && read(wake[0], &c, 1) == 1) {
        void *p = held;
        held = NULL;
        handle(p);
    }
    return arg;
}

static void *waker(void *arg)
{
    while (!done) {
        if (write(wake[1], "x", 1) != 1)
            break;
        usleep(20);
    }
    return arg;
}

int main(int argc, char **argv)
{
    int (*check)(const char *, struct counts *) =
        (int (*)(const char *, struct counts *))dlsym(RTLD_DEFAULT, "heapprof_leak_check");
    if (!check) {
        puts("woken: heapprof_leak_check not found");
        return 1;
    }
    int n = argc > 1 ? atoi(argv[1]) : 300;
    held = malloc(4000);
    memset(held, 1, 4000);
    if (pipe(wake) != 0)
        return 1;
    pthread_t w, k;
    pthread_create(&w, NULL, worker, NULL);
    pthread_create(&k, NULL, waker, NULL);
    int lost = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        struct counts c;
        memset(&c, 0, sizeof c);
        if (check(NULL, &c) != 0)
            continue;
        ran++;
        lost += c.definite_objects > 0;
    }
    done = 1;
    close(wake[1]);
    pthread_join(k, NULL);
    printf("woken: %d of %d checks called it lost (%d ran)\n", lost, n, ran);
    return 0;
}
