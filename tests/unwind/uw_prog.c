/* Stacks of every shape a C program gives the fast unwinder
 * (src/record/unwind.c), for tests/unwind/test_unwind.py, which runs it in
 * exact mode with HEAPPROF_UNWIND=check: every allocation's stack is taken
 * by both unwinders and compared. Built at -O0 and -O2, with and without
 * frame pointers.
 *
 * What it allocates from: deep direct recursion (300 levels: the capture
 * keeps the innermost frames), mutual recursion through function pointers,
 * libc's qsort and bsearch calling back into code that allocates, a plugin
 * loaded with dlopen calling back into the program, unloaded and loaded
 * again (its rows must not outlive it), threads (their own stacks, one
 * made with a small stack), the plugin loaded and unloaded meanwhile by
 * the main thread, a signal handler on the
 * thread's stack (a signal frame: libunwind's) and on an alternate stack
 * (not the thread's stack: libunwind's); and stacks that the unwinder's
 * reuse of its last walk must not be fooled by: two callers of one
 * function with frames alike, so that the frames below them sit at the
 * same addresses with the same return addresses, and longjmp out of a
 * recursion back into another one at the same depth, and threads whose
 * stacks are reused after they exit. It prints what it did; the test
 * checks the counts heapprof prints at exit, not these.
 *
 *   uw_prog PLUGIN.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <setjmp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

__attribute__((noinline)) static void take(size_t n)
{
    /* The pointer in a local: threads share sink, and a free through
     * sink could free another thread's block (a double free). */
    void *p = malloc(n);
    sink = p;
    free(p);
}

__attribute__((noinline)) static int recurse(int depth)
{
    if (depth % 37 == 0)
        take(16 + (size_t)depth);
    if (depth == 0)
        return 0;
    int r = recurse(depth - 1);
    __asm__ volatile("" ::: "memory");
    return r + 1;
}

static int ping(int n);
static int pong(int n);
static int (*volatile to_ping)(int) = ping;
static int (*volatile to_pong)(int) = pong;

__attribute__((noinline)) static int ping(int n)
{
    /* Frames of varied size: the CFA from rbp, even at -O2. */
    size_t len = 64 + (size_t)(n & 7) * 8;
    char *buf = __builtin_alloca(len);
    memset(buf, n, len);
    if (n <= 0) {
        take(32);
        return buf[0];
    }
    return to_pong(n - 1) + buf[n & 7];
}

__attribute__((noinline)) static int pong(int n)
{
    take(48);
    return n <= 0 ? 0 : to_ping(n - 1) + 1;
}

static int compare(const void *a, const void *b)
{
    take(24);
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void through_libc(void)
{
    int v[64];
    for (int i = 0; i < 64; i++)
        v[i] = (i * 7919) % 64;
    qsort(v, 64, sizeof v[0], compare);
    int key = 17;
    bsearch(&key, v, 64, sizeof v[0], compare);
}

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        recurse(40);
        to_ping(12);
    }
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    take(100); /* raised synchronously, outside malloc */
}

static void signals(void)
{
    signal(SIGUSR1, on_signal);
    for (int i = 0; i < 10; i++)
        raise(SIGUSR1);
    static char alt[1 << 16];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_ONSTACK};
    sigaction(SIGUSR2, &sa, NULL);
    for (int i = 0; i < 10; i++)
        raise(SIGUSR2);
}

/* twin_a and twin_b are the same code: shared() and what it calls lie at
 * the same addresses under either, with the same return addresses, up to
 * the twin's own. */
__attribute__((noinline)) static void shared(int n)
{
    take(64 + (size_t)n);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void twin_a(int n)
{
    shared(n);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void twin_b(int n)
{
    shared(n);
    __asm__ volatile("" ::: "memory");
}

static void (*volatile twins[2])(int) = {twin_a, twin_b};

static jmp_buf out;
static volatile int jump_out = 1;

/* Allocates at the bottom of a recursion through one twin or the other,
 * then jumps out of it, past every frame. */
__attribute__((noinline)) static void dive(int depth, int which)
{
    if (depth == 0) {
        twins[which](which);
        if (jump_out)
            longjmp(out, 1);
        return;
    }
    dive(depth - 1, which);
    __asm__ volatile("" ::: "memory");
}

static void alike(void)
{
    for (volatile int i = 0; i < 400; i++) {
        twins[i & 1](i);
        twins[(i >> 1) & 1](i);
        if (!setjmp(out))
            dive(5 + (i % 3), (i >> 2) & 1);
    }
}

static void *short_worker(void *arg)
{
    alike();
    return arg;
}

/* Threads one after another: glibc hands a new thread the stack of one
 * that exited, and heapprof the per-thread state of one that exited. */
static void reused_stacks(void)
{
    for (int i = 0; i < 8; i++) {
        pthread_t t;
        pthread_create(&t, NULL, short_worker, NULL);
        pthread_join(t, NULL);
    }
}

static void callback(int n)
{
    take((size_t)n);
}

static void plugin(const char *path)
{
    for (int round = 0; round < 50; round++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "uw_prog: %s\n", dlerror());
            exit(1);
        }
        void (*run)(void (*)(int), int) = (void (*)(void (*)(int), int))dlsym(h, "uw_plugin_run");
        if (!run) {
            fprintf(stderr, "uw_prog: no uw_plugin_run\n");
            exit(1);
        }
        run(callback, 20);
        dlclose(h);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uw_prog PLUGIN.so\n");
        return 2;
    }
    for (int i = 0; i < 20; i++) {
        recurse(300);
        to_ping(30);
    }
    through_libc();
    alike();
    reused_stacks();
    pthread_t t[3];
    pthread_attr_t small;
    pthread_attr_init(&small);
    pthread_attr_setstacksize(&small, 64 << 10);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], i == 2 ? &small : NULL, worker, NULL);
    /* Loaded and unloaded while the threads take their stacks. */
    plugin(argv[1]);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    signals();
    printf("uw_prog: done\n");
    return 0;
}
