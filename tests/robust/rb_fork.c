/* rb_fork: fork and exec under heapprof, for the robustness tests
 * (tests/robust/robust.py, checks fork, fork-exec, fork-pct and leaks-*).
 *
 * Usage:
 *   rb_fork fork N   three threads allocate, free and realloc without pause
 *                    while the main thread forks N children one after another;
 *                    each child allocates (child_leak: CHILD_LEAKS x 48 bytes,
 *                    never freed), runs a thread of its own, and exits with
 *                    exit(0); the first child also forks a grandchild that
 *                    does the same. The parent leaks PARENT_LEAKS x 96 bytes
 *                    (parent_leak) and exits 0.
 *   rb_fork exec     forks a child that execv's this program as `leaf`, and a
 *                    child that runs `/bin/sh -c 'THIS leaf; true'`.
 *   rb_fork leaf     allocates (leaf_leak: LEAF_LEAKS x 24 bytes, never freed).
 *   rb_fork dlfork N PLUGIN
 *                    two threads dlopen PLUGIN, call its plugin_churn and
 *                    dlclose it without pause, a third allocates, while the
 *                    main thread forks N children, 2 ms apart, each of which
 *                    allocates at once (child_leak) and exits, one in three
 *                    with exit(0) (so heapprof dumps), the others with
 *                    _exit(0) (quicker: more forks in the time): a child must
 *                    not inherit a lock held by one of the threads (the
 *                    loader's, or one of heapprof's). Prints
 *                    `child PID exit|_exit`.
 *
 * Every process says who it is on stdout, one line each, so the test can tell
 * which profile file each one must have written:
 *   parent PID | child PID | grandchild PID | shell PID | leaf PID
 * A child that fails prints `FAIL ...` and the parent exits 1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* noinline so that each site stays a frame the profile can name. */
#define SITE __attribute__((noinline))

enum { ALLOCATORS = 3, CHILD_LEAKS = 5, PARENT_LEAKS = 4, LEAF_LEAKS = 6 };

static void *parent_leaks[PARENT_LEAKS];
static void *child_leaks[CHILD_LEAKS];
static void *leaf_leaks[LEAF_LEAKS];
static volatile int stop;

static void *must(void *p)
{
    if (!p) {
        fputs("rb_fork: out of memory\n", stderr);
        exit(99);
    }
    return p;
}

/* Keeps the compiler from dropping allocations whose blocks nobody reads. */
static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Allocation traffic that a fork may interrupt at any point: the child must
 * not inherit a lock held by one of these threads. */
static void *allocator(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *held[16] = {0};
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 16) % 16;
        size_t size = 16 + (seed >> 8) % 2048;
        if (held[i] && (seed & 1)) {
            void *q = realloc(held[i], size);
            if (q) {
                held[i] = q;
                memset(q, 1, size);
            }
        } else {
            free(held[i]);
            held[i] = must(malloc(size));
            memset(held[i], 2, size);
        }
    }
    for (int i = 0; i < 16; i++)
        free(held[i]);
    return NULL;
}

SITE static void parent_leak(void)
{
    for (int i = 0; i < PARENT_LEAKS; i++) {
        parent_leaks[i] = must(malloc(96));
        memset(parent_leaks[i], 3, 96);
    }
}

static void *child_thread(void *arg)
{
    for (int i = 0; i < 100; i++) {
        void *p = must(malloc(200));
        escape(p);
        free(p);
    }
    return arg;
}

SITE static void child_leak(void)
{
    for (int i = 0; i < CHILD_LEAKS; i++) {
        child_leaks[i] = must(malloc(48));
        memset(child_leaks[i], 4, 48);
    }
}

/* What each forked child does: allocate, use a thread, exit normally so that
 * heapprof's exit dump runs in the child. */
static void child_work(void)
{
    child_leak();
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, NULL) != 0) {
        printf("FAIL child %ld: thread\n", (long)getpid());
        fflush(stdout);
        exit(1);
    }
}

/* Waits for a child; false (after saying why) unless it exited 0. */
static bool reap(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        printf("FAIL waitpid %ld: %s\n", (long)pid, strerror(errno));
        return false;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("FAIL child %ld: status 0x%x\n", (long)pid, st);
        return false;
    }
    return true;
}

static int do_fork(int n)
{
    printf("parent %ld\n", (long)getpid());
    parent_leak();
    pthread_t threads[ALLOCATORS];
    for (int i = 0; i < ALLOCATORS; i++)
        if (pthread_create(&threads[i], NULL, allocator, (void *)(uintptr_t)(i + 1)) != 0) {
            fputs("rb_fork: pthread_create failed\n", stderr);
            return 1;
        }
    bool ok = true;
    pid_t kids[64];
    if (n > 64)
        n = 64;
    for (int i = 0; i < n; i++) {
        sleep_ms(3);    /* let the allocators get going between forks */
        fflush(stdout); /* the child must not print the parent's buffer again */
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL fork: %s\n", strerror(errno));
            ok = false;
            n = i;
            break;
        }
        if (pid == 0) {
            child_work();
            if (i == 0) {
                fflush(stdout);
                pid_t g = fork();
                if (g == 0) {
                    child_work();
                    printf("grandchild %ld\n", (long)getpid());
                    exit(0);
                }
                if (g < 0 || !reap(g))
                    exit(1);
            }
            exit(0);
        }
        kids[i] = pid;
        printf("child %ld\n", (long)pid);
    }
    for (int i = 0; i < n; i++)
        ok = reap(kids[i]) && ok;
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < ALLOCATORS; i++)
        pthread_join(threads[i], NULL);
    return ok ? 0 : 1;
}

static const char *plugin_path;

/* Loads and unloads the plugin without pause: the loader's locks are taken
 * and released all the time, and every dlopen/dlclose invalidates unwinders'
 * caches in the other threads. */
static void *loader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        void *h = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            continue;
        unsigned (*churn)(unsigned);
        *(void **)&churn = dlsym(h, "plugin_churn");
        if (churn)
            churn(20);
        dlclose(h);
    }
    return NULL;
}

static int do_dlfork(int n, const char *plugin)
{
    plugin_path = plugin;
    printf("parent %ld\n", (long)getpid());
    pthread_t threads[3];
    void *(*fns[3])(void *) = {loader, loader, allocator};
    for (int i = 0; i < 3; i++)
        if (pthread_create(&threads[i], NULL, fns[i], (void *)(uintptr_t)(i + 1)) != 0) {
            fputs("rb_fork: pthread_create failed\n", stderr);
            return 1;
        }
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        sleep_ms(2);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL fork: %s\n", strerror(errno));
            ok = false;
            break;
        }
        if (pid == 0) {
            child_leak();
            if (i % 3)
                _exit(0);
            exit(0);
        }
        printf("child %ld %s\n", (long)pid, i % 3 ? "_exit" : "exit");
        ok = reap(pid);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    return ok ? 0 : 1;
}

SITE static void leaf_leak(void)
{
    for (int i = 0; i < LEAF_LEAKS; i++) {
        leaf_leaks[i] = must(malloc(24));
        memset(leaf_leaks[i], 5, 24);
    }
}

static int do_exec(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("rb_fork: readlink /proc/self/exe");
        return 1;
    }
    self[n] = 0;
    printf("parent %ld\n", (long)getpid());
    parent_leak();

    /* A child that replaces itself with this program. */
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        execl(self, self, "leaf", (char *)NULL);
        _exit(127);
    }
    printf("child %ld\n", (long)a);

    /* A shell that runs this program; `; true` keeps the shell from exec'ing
     * it in place, so there are two processes, each with its profile. */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' leaf; true", self);
    fflush(stdout);
    pid_t b = fork();
    if (b == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    printf("shell %ld\n", (long)b);
    bool ok = a > 0 && b > 0;
    ok = (a > 0 && reap(a)) && ok;
    ok = (b > 0 && reap(b)) && ok;
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "fork"))
        return do_fork(atoi(argv[2]));
    if (argc == 2 && !strcmp(argv[1], "exec"))
        return do_exec();
    if (argc == 4 && !strcmp(argv[1], "dlfork"))
        return do_dlfork(atoi(argv[2]), argv[3]);
    if (argc == 2 && !strcmp(argv[1], "leaf")) {
        leaf_leak();
        printf("leaf %ld\n", (long)getpid());
        return 0;
    }
    fputs("usage: rb_fork fork N | exec | leaf | dlfork N PLUGIN\n", stderr);
    return 2;
}
