/* Each thread's own state (hp_thread): the sampler's countdown and random
 * state, the busy guard, and the bytes it allocated.
 *
 * The busy guard: while heapprof itself runs on a thread (a dump, the
 * unwinder, the loader), what it allocates is forwarded, not recorded, and
 * not counted as the program's.
 */
#include "record.h"

#include <pthread.h>

/* -1, so that a thread's first allocation, even of zero bytes, takes the
 * slow path and sets the thread up. */
HP_TLS struct hp_thread hp_thread = {.countdown = -1, .counted_at = -1};

/* ---- bytes allocated ----
 *
 * What the program allocated in all, for the leak summary: how much a
 * sampled "no leaks" rests on. The fast path only takes each allocation's
 * size off the thread's countdown, so what a thread allocated is how far
 * its countdown went down. A thread adds that to the shared total at each
 * slow path when it is not listed (once per sample: one atomic add, no
 * more shared writes than sampling makes; a listed thread leaves it
 * pending, sampler.c) and when it exits; hp_allocated_bytes adds what
 * the threads still running have not added yet. What heapprof itself allocates
 * while busy is taken out (hp_busy_end, and below). */
enum { MAX_COUNTED = 1024 };
static uint64_t allocated;                     /* what threads have added */
static struct hp_thread *counted[MAX_COUNTED]; /* threads running, set up */
static int counted_lock;                       /* a spin lock */
static pthread_key_t counted_key;
static bool counted_key_made;
static pthread_once_t counted_once = PTHREAD_ONCE_INIT;

static void counted_take(void)
{
    while (__atomic_exchange_n(&counted_lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&counted_lock, __ATOMIC_RELAXED))
            ;
}

static void counted_drop(void)
{
    __atomic_store_n(&counted_lock, 0, __ATOMIC_RELEASE);
}

/* Adds what the thread allocated since it last did. */
void hp_count_allocated(struct hp_thread *t)
{
    int64_t d = t->counted_at - t->countdown;
    t->counted_at = t->countdown;
    if (d > 0)
        __atomic_add_fetch(&allocated, (uint64_t)d, __ATOMIC_RELAXED);
}

/* At thread exit (a key's destructor, run on the thread). */
static void count_exit(void *slot)
{
    struct hp_thread *t = &hp_thread;
    hp_count_allocated(t);
    t->listed = false;
    size_t i = (size_t)(uintptr_t)slot - 1;
    counted_take();
    if (i < MAX_COUNTED && counted[i] == t)
        counted[i] = NULL;
    counted_drop();
}

static void make_counted_key(void)
{
    counted_key_made = pthread_key_create(&counted_key, count_exit) == 0;
}

/* A thread being set up: listed, so that what it allocates is counted
 * while it runs and at its exit. Past MAX_COUNTED threads at once, a
 * thread's bytes are counted at its samples only. */
void hp_count_join(struct hp_thread *t)
{
    pthread_once(&counted_once, make_counted_key);
    if (!counted_key_made)
        return;
    size_t i = 0;
    counted_take();
    while (i < MAX_COUNTED && counted[i])
        i++;
    if (i < MAX_COUNTED)
        counted[i] = t;
    counted_drop();
    if (i == MAX_COUNTED)
        return;
    t->listed = true;
    int64_t mark = t->countdown;
    t->busy = true; /* pthread_setspecific may allocate */
    pthread_setspecific(counted_key, (void *)(uintptr_t)(i + 1));
    t->busy = false;
    t->counted_at -= mark - t->countdown;
}

uint64_t hp_allocated_bytes(void)
{
    uint64_t total = __atomic_load_n(&allocated, __ATOMIC_RELAXED);
    struct hp_thread *self = &hp_thread;
    counted_take();
    for (size_t i = 0; i < MAX_COUNTED; i++) {
        struct hp_thread *t = counted[i];
        if (!t)
            continue;
        /* The calling thread is busy (a dump): what it allocated since is
         * the dump's. Other threads are read as they run: their figures
         * can be a few allocations behind. */
        int64_t now =
            t == self && t->busy ? t->busy_mark : __atomic_load_n(&t->countdown, __ATOMIC_RELAXED);
        int64_t d = __atomic_load_n(&t->counted_at, __ATOMIC_RELAXED) - now;
        if (d > 0)
            total += (uint64_t)d;
    }
    counted_drop();
    return total;
}

/* In a child after fork only the forking thread lives on: the others'
 * bytes are added (the child's totals include what it inherited, as its
 * profile does) and their entries dropped. */
void hp_thread_child(void)
{
    counted_lock = 0;
    for (size_t i = 0; i < MAX_COUNTED; i++) {
        struct hp_thread *t = counted[i];
        if (!t || t == &hp_thread)
            continue;
        hp_count_allocated(t);
        counted[i] = NULL;
    }
}

bool hp_busy_begin(void)
{
    return hp_busy_enter();
}

void hp_busy_end(bool was)
{
    hp_busy_leave(was);
}
