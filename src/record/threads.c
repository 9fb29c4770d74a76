/* The stacks of the program's threads, for the leak check's roots.
 *
 * A thread is noted the first time heapprof sees it (its first allocation
 * with profiling on), with the bounds of its stack as glibc gives them
 * (pthread_getattr_np: the whole block, the static TLS and thread descriptor
 * at its top included). When it exits its entry is kept, marked dead: glibc
 * keeps the stacks of exited threads for reuse, and what they still hold is
 * stale, so the leak check must not take it for roots (report/reach.c). A
 * new thread on the same stack takes the entry over.
 *
 * A fixed table: no memory is allocated, none grows. A thread that finds it
 * full goes unnoted; its stack is then scanned whole as any other writable
 * memory, which can only call more memory reachable, never less. The main
 * thread is not noted: its stack is the mapping the kernel calls [stack].
 *
 * The fast unwinder (record/unwind.c) reads the calling thread's stack and
 * must stay inside it: hp_threads_bounds finds the mapping that holds the
 * stack pointer once per thread, whether or not the leak check is on, and
 * keeps it in thread-local storage. From /proc/self/maps, read into
 * heapprof's own memory: glibc's pthread_getattr_np allocates from the
 * program's heap (its CPU set, and for the main thread a stdio buffer),
 * which moved what the program allocated next (a 2-thread churn ran 10%
 * slower over glibc with it).
 */
#define _GNU_SOURCE
#include "record.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_THREADS = 1024 };

static struct hp_thread_stack table[MAX_THREADS];
static int lock; /* a spin lock: held for a scan of the table */
static uint64_t clock_;
static uint64_t born[MAX_THREADS]; /* when each entry was taken: the oldest dead one goes first */
static pthread_key_t key;
static bool key_made;
static HP_TLS int my_slot; /* 1 + the calling thread's entry, or 0 */
HP_TLS int hp_in_getattr;  /* inside the program's pthread_getattr_np */
HP_TLS bool hp_threads_pending;
static HP_TLS uintptr_t my_lo, my_hi; /* the mapping that holds this thread's stack */
static HP_TLS bool my_failed;         /* not found: never looked for again */

static void take_lock(void)
{
    while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&lock, __ATOMIC_RELAXED))
            ;
}

static void drop_lock(void)
{
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
}

static void on_exit_thread(void *v)
{
    int i = (int)(uintptr_t)v - 1;
    if (i < 0 || i >= MAX_THREADS)
        return;
    take_lock();
    table[i].alive = false;
    drop_lock();
    my_slot = 0;
}

void hp_threads_init(void)
{
    if (pthread_key_create(&key, on_exit_thread) == 0)
        key_made = true;
}

void hp_threads_seen(void)
{
    pid_t tid = gettid();
    if (my_slot || !key_made || tid == getpid())
        return;
    /* glibc's pthread_getattr_np holds the thread's lock while it
     * allocates: a first allocation made there must not ask it again (the
     * thread would wait for itself). Noted at the next sample instead. */
    hp_threads_pending = hp_in_getattr > 0;
    if (hp_threads_pending)
        return;
    pthread_attr_t attr;
    void *addr;
    size_t size;
    bool was = hp_busy_begin(); /* glibc allocates here */
    hp_real_resolve();
    bool ok = hp_real.pthread_getattr_np && hp_real.pthread_getattr_np(pthread_self(), &attr) == 0;
    if (ok) {
        ok = pthread_attr_getstack(&attr, &addr, &size) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!ok) {
        hp_busy_end(was);
        return;
    }
    uintptr_t lo = (uintptr_t)addr, hi = lo + size;
    take_lock();
    int pick = -1;
    uint64_t oldest = UINT64_MAX;
    for (int i = 0; i < MAX_THREADS; i++) {
        if (table[i].hi == 0 || (!table[i].alive && table[i].lo == lo && table[i].hi == hi)) {
            pick = i;
            break;
        }
        if (!table[i].alive && born[i] < oldest) {
            oldest = born[i];
            pick = i;
        }
    }
    if (pick >= 0) {
        table[pick].tid = tid;
        table[pick].lo = lo;
        table[pick].hi = hi;
        table[pick].alive = true;
        born[pick] = ++clock_;
        my_slot = pick + 1;
    }
    drop_lock();
    if (pick >= 0)
        pthread_setspecific(key, (void *)(uintptr_t)(pick + 1));
    hp_busy_end(was);
}

bool hp_threads_bounds(uintptr_t *lo, uintptr_t *hi)
{
    if (HP_LIKELY(my_hi != 0)) {
        *lo = my_lo;
        *hi = my_hi;
        return true;
    }
    if (my_failed)
        return false;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    struct hp_arena a = {0};
    size_t len = 0;
    char *text = hp_read_file(&a, "/proc/self/maps", &len);
    for (char *line = text; line && *line;) {
        char *end;
        uintptr_t from = (uintptr_t)strtoull(line, &end, 16);
        uintptr_t to = *end == '-' ? (uintptr_t)strtoull(end + 1, &end, 16) : 0;
        if (from <= sp && sp < to) {
            my_lo = from;
            my_hi = to;
            break;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    hp_arena_release(&a);
    if (!my_hi) {
        my_failed = true;
        return false;
    }
    *lo = my_lo;
    *hi = my_hi;
    return true;
}

int hp_threads_list(struct hp_thread_stack *out, int max)
{
    int n = 0;
    take_lock();
    for (int i = 0; i < MAX_THREADS && n < max; i++)
        if (table[i].hi)
            out[n++] = table[i];
    drop_lock();
    return n;
}

void hp_threads_child(void)
{
    /* Only the forking thread lives on in a child: every other entry is a
     * stack it no longer runs on. */
    lock = 0;
    for (int i = 0; i < MAX_THREADS; i++)
        if (i != my_slot - 1)
            table[i].alive = false;
    if (my_slot)
        table[my_slot - 1].tid = gettid();
}
