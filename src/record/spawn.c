/* Where the program's live threads were created: the stack that called
 * pthread_create, for /debug/pprof/threadcreate (report/goroutine.c).
 *
 * The creating stack is taken in heapprof's pthread_create (at thread
 * creation only, never on a hot path, and only with HEAPPROF_HTTP) and
 * handed to the new thread with its start routine (interpose/threads.c);
 * the new thread puts it in a slot of a fixed table under its own id, and a
 * thread-specific key's destructor empties the slot when it exits. Keyed by
 * the new thread rather than by its pthread_t in the creator, so that a
 * thread that exits before pthread_create returns leaves nothing behind. A
 * fixed table: nothing is allocated; a thread that finds it full goes
 * unlisted (hp_spawn_list says how many did). A thread killed without
 * running its destructors (a fork child's other threads, exec) may leave a
 * slot whose id no longer lives: the report keeps only ids listed in
 * /proc/self/task.
 */
#define _GNU_SOURCE
#include "record.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

enum { MAX_SPAWNED = 1024 };

static struct hp_spawn table[MAX_SPAWNED];
static int lock; /* a spin lock: held to take, empty or copy slots */
static int missed;
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static bool key_made;

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
    if (i < 0 || i >= MAX_SPAWNED)
        return;
    take_lock();
    table[i].tid = 0;
    drop_lock();
}

static void make_key(void)
{
    key_made = pthread_key_create(&key, on_exit_thread) == 0;
}

/* Only with the endpoint, the one reader of the table: the capture is a
 * stack unwound on the creating thread, which may never sample otherwise
 * (libunwind fills a 256 KiB cache on a thread's first unwind), and the
 * wrapper it needs is more work at every thread's start and exit. */
bool hp_spawn_wanted(void)
{
    return hp_state == HP_STATE_ON && !hp_thread.busy && hp_cfg.http[0];
}

int hp_spawn_capture(uintptr_t *ips, int max)
{
    void *buf[HP_SPAWN_FRAMES];
    if (max > HP_SPAWN_FRAMES)
        max = HP_SPAWN_FRAMES;
    int n = hp_stack_capture(buf, max);
    for (int i = 0; i < n; i++)
        ips[i] = (uintptr_t)buf[i];
    return n;
}

void hp_spawn_begin(const uintptr_t *ips, int depth)
{
    pthread_once(&key_once, make_key);
    if (!key_made)
        return;
    pid_t tid = gettid();
    int pick = -1;
    take_lock();
    for (int i = 0; i < MAX_SPAWNED && pick < 0; i++)
        if (table[i].tid == 0)
            pick = i;
    if (pick >= 0) {
        table[pick].tid = tid;
        table[pick].epoch = hp_dl_epoch;
        table[pick].depth = depth;
        memcpy(table[pick].ips, ips, (size_t)depth * sizeof *ips);
    } else {
        missed++;
    }
    drop_lock();
    if (pick >= 0)
        pthread_setspecific(key, (void *)(uintptr_t)(pick + 1));
}

int hp_spawn_list(struct hp_spawn *out, int max, int *unlisted)
{
    int n = 0;
    take_lock();
    for (int i = 0; i < MAX_SPAWNED && n < max; i++)
        if (table[i].tid)
            out[n++] = table[i];
    if (unlisted)
        *unlisted = missed;
    drop_lock();
    return n;
}
