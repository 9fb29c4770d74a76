/* rb_exit: the ways a process can end, under heapprof, for the robustness
 * tests (tests/robust/robust.py, checks exit-*).
 *
 * Usage: rb_exit MODE [CODE]
 * In every mode three threads allocate and free without pause until the
 * process is gone, so each ending races with allocations on other threads.
 * The program links rb_late, whose destructor allocates and frees after
 * heapprof's exit dump when libheapprof.so is preloaded.
 *   normal        main returns 0
 *   thread-exit C a fourth thread calls exit(C) while main waits in join
 *   atexit        an atexit handler frees the blocks of atexit_site (3 x 1000
 *                 bytes) and allocates and frees more; main returns 0. The
 *                 dump runs after atexit handlers, so atexit_site must show
 *                 3 objects allocated and none in use.
 *   _exit C       _exit(C): no dump
 *   quick_exit C  quick_exit(C) (an at_quick_exit handler runs): no dump
 *   abort         abort(): SIGABRT
 *   segv          a write through a null pointer: SIGSEGV
 *   kill          raise(SIGKILL)
 *   wait          prints what it sees of SIGINT, SIGTERM and SIGHUP
 *                 (`SIGTERM default`: heapprof's handler must not show),
 *                 then `waiting`, and waits for a signal to end it
 *   wait-own      the same, with a SIGTERM handler of its own that prints
 *                 `handled` and calls exit(CODE)
 *   wait-ignore   the same, with SIGTERM ignored: SIGINT ends it
 * Every mode first prints `start` and, where it exits normally, `done` (stdout
 * is flushed before any abnormal end, so the test sees both runs alike).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rb_late.h"

#define SITE __attribute__((noinline))

enum { ALLOCATORS = 3, ATEXIT_BLOCKS = 3 };

static void *atexit_blocks[ATEXIT_BLOCKS];
/* Read at run time, so the compiler cannot see the null write coming. */
static int *volatile nowhere;

static void *must(void *p)
{
    if (!p) {
        fputs("rb_exit: out of memory\n", stderr);
        _exit(99);
    }
    return p;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs until the process ends: exit() does not stop other threads. */
static void *allocator(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *held[8] = {0};
    for (;;) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 16) % 8;
        size_t size = 8 + (seed >> 4) % 1500;
        free(held[i]);
        held[i] = malloc(size);
        if (held[i])
            memset(held[i], 1, size);
        if ((seed & 7) == 0 && held[i]) {
            void *q = realloc(held[i], size * 2);
            if (q)
                held[i] = q;
        }
    }
    return NULL;
}

static void *exiter(void *arg)
{
    sleep_ms(50);
    puts("done");
    exit((int)(intptr_t)arg);
}

SITE static void atexit_site(void)
{
    for (int i = 0; i < ATEXIT_BLOCKS; i++) {
        atexit_blocks[i] = must(malloc(1000));
        memset(atexit_blocks[i], 2, 1000);
    }
}

static void release_at_exit(void)
{
    for (int i = 0; i < ATEXIT_BLOCKS; i++) {
        free(atexit_blocks[i]);
        atexit_blocks[i] = NULL;
    }
    for (int i = 0; i < 100; i++) {
        char *p = must(malloc(300));
        memset(p, 3, 300);
        free(p);
    }
}

static int own_code;

static void own_handler(int sig)
{
    (void)sig;
    static const char msg[] = "handled\n";
    if (write(1, msg, sizeof msg - 1) < 0)
        _exit(98);
    exit(own_code);
}

static void show_dispositions(void)
{
    static const struct {
        int sig;
        const char *name;
    } sigs[] = {{SIGINT, "SIGINT"}, {SIGTERM, "SIGTERM"}, {SIGHUP, "SIGHUP"}};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        sigaction(sigs[i].sig, NULL, &old);
        const char *what = (old.sa_flags & SA_SIGINFO) ? "handler"
                           : old.sa_handler == SIG_DFL ? "default"
                           : old.sa_handler == SIG_IGN ? "ignored"
                                                       : "handler";
        printf("%s %s\n", sigs[i].name, what);
    }
}

static void quick_handler(void)
{
    char *p = must(malloc(100));
    memset(p, 4, 100);
    free(p);
    puts("quick handler");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: rb_exit MODE [CODE]\n", stderr);
        return 2;
    }
    const char *mode = argv[1];
    int code = argc > 2 ? atoi(argv[2]) : 0;
    puts("start");
    late_keep();
    pthread_t t;
    for (int i = 0; i < ALLOCATORS; i++)
        if (pthread_create(&t, NULL, allocator, (void *)(uintptr_t)(i + 1)) != 0) {
            fputs("rb_exit: pthread_create failed\n", stderr);
            return 1;
        }
    sleep_ms(20);

    if (!strcmp(mode, "normal")) {
        puts("done");
        return 0;
    }
    if (!strcmp(mode, "thread-exit")) {
        fflush(stdout);
        pthread_t e;
        if (pthread_create(&e, NULL, exiter, (void *)(intptr_t)code) != 0)
            return 1;
        pthread_join(e, NULL); /* never returns: the thread exits the process */
        return 1;
    }
    if (!strcmp(mode, "atexit")) {
        atexit_site();
        atexit(release_at_exit);
        puts("done");
        return 0;
    }
    fflush(stdout);
    if (!strcmp(mode, "_exit"))
        _exit(code);
    if (!strcmp(mode, "quick_exit")) {
        at_quick_exit(quick_handler);
        quick_exit(code);
    }
    if (!strcmp(mode, "abort"))
        abort();
    if (!strcmp(mode, "segv")) {
        *nowhere = 1;
        return 1;
    }
    if (!strcmp(mode, "kill")) {
        raise(SIGKILL);
        return 1;
    }
    if (!strcmp(mode, "wait") || !strcmp(mode, "wait-own") || !strcmp(mode, "wait-ignore")) {
        own_code = code;
        if (!strcmp(mode, "wait-own"))
            signal(SIGTERM, own_handler);
        if (!strcmp(mode, "wait-ignore"))
            signal(SIGTERM, SIG_IGN);
        /* The signals are held while stdout is written and flushed (the
         * own handler's exit() flushes stdout again: in the middle of a
         * flush it would write the same lines twice), and let in only by
         * sigsuspend, once the lines are out. */
        sigset_t hold, none;
        sigemptyset(&hold);
        sigaddset(&hold, SIGINT);
        sigaddset(&hold, SIGTERM);
        sigaddset(&hold, SIGHUP);
        sigprocmask(SIG_BLOCK, &hold, NULL);
        show_dispositions();
        puts("waiting");
        fflush(stdout);
        sigemptyset(&none);
        for (;;)
            sigsuspend(&none);
    }
    fprintf(stderr, "rb_exit: unknown mode %s\n", mode);
    return 2;
}
