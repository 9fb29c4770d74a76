/* Locks: pthread_mutex_lock and timedlock, the rwlock's read and write
 * locks (and their timed forms) and pthread_spin_lock, for the mutex
 * profile (record/contention.c) and, while an execution trace runs, as
 * slices on the waiting thread's track (record/trace.c).
 *
 * The uncontended path is what a lock costs anyway: one try-lock, and
 * return. Only a failed try (another thread holds it) goes on, and only
 * then is the profile's fraction read and the trace's flag tested (one
 * load and a branch each); a contention the draw keeps, or any while a
 * trace runs, is timed around the real lock.
 *
 * Where a try-lock does not answer as the lock would, the real lock is
 * called directly, untouched: a recursive mutex (its owner's try succeeds,
 * but then so would its lock), an error-checking one (its owner's try says
 * EBUSY, its lock EDEADLK), a robust one (EOWNERDEAD, ENOTRECOVERABLE), and
 * priority-inheritance or priority-protected ones (their try and lock take
 * different kernel paths). glibc keeps the kind in the mutex itself
 * (__data.__kind), so telling them apart is one load from the line the
 * try-lock touches anyway.
 *
 * Cancellation: none of these is a cancellation point, and the real call
 * is made exactly once, with the program's arguments.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <pthread.h>

/* glibc's kind bits (nptl's pthreadP.h): the type in the low two bits
 * (normal/timed 0, recursive 1, error-checking 2, adaptive 3), then robust
 * 16, priority inheritance 32, priority protection 64. */
enum { KIND_TYPE = 3, KIND_RECURSIVE = 1, KIND_ERRORCHECK = 2, KIND_ODD = 16 | 32 | 64 };

static inline bool plain_mutex(const pthread_mutex_t *m)
{
    int kind = __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED);
    int type = kind & KIND_TYPE;
    return !(kind & KIND_ODD) && type != KIND_RECURSIVE && type != KIND_ERRORCHECK;
}

/* Whether this contention is the one in `fraction` that the profile keeps. */
static inline int mutex_fraction(void)
{
    int f = __atomic_load_n(&hp_mutex_fraction, __ATOMIC_RELAXED);
    if (HP_LIKELY(f <= 0))
        return 0;
    if (f > 1 && hp_cont_random() % (uint64_t)f)
        return 0;
    return f;
}

/* A timed wait is over: the profile's share (f, when the draw kept it and
 * the lock was taken or timed out: ok) and, while a trace runs, a slice on
 * the thread's track named by the call. */
static inline void waited(const char *call, int f, bool ok, int64_t t0)
{
    int64_t t1 = hp_mono_ns();
    if (f && ok)
        hp_cont_record(HP_CONT_MUTEX, f, (double)(t1 - t0) * f);
    if (HP_TRACING())
        hp_trace_blocked(call, t0, t1);
}

/* Whether a contention is timed: kept by the profile's draw (f), or a
 * trace runs (then only a failed try that meant "held" is a wait). */
#define TIMED(f, r) ((f) || ((r) == EBUSY && HP_TRACING()))

/* The contended path, out of line: the uncontended one then needs no
 * registers saved beyond the mutex's address. */
static __attribute__((noinline)) int mutex_contended(pthread_mutex_t *m, int r)
{
    int (*lock)(pthread_mutex_t *) = HP_REAL(pthread_mutex_lock);
    int f = r == EBUSY ? mutex_fraction() : 0;
    if (HP_LIKELY(!TIMED(f, r)))
        return lock(m);
    int64_t t0 = hp_mono_ns();
    r = lock(m);
    waited("pthread_mutex_lock", f, r == 0, t0);
    return r;
}

HEAPPROF_API int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (HP_UNLIKELY(!plain_mutex(m)))
        return HP_REAL(pthread_mutex_lock)(m);
    int r = HP_REAL(pthread_mutex_trylock)(m);
    if (HP_LIKELY(r == 0))
        return 0;
    return mutex_contended(m, r);
}

HEAPPROF_API int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *at)
{
    int (*lock)(pthread_mutex_t *, const struct timespec *) = HP_REAL(pthread_mutex_timedlock);
    if (HP_UNLIKELY(!plain_mutex(m)))
        return lock(m, at);
    int r = HP_REAL(pthread_mutex_trylock)(m);
    if (HP_LIKELY(r == 0))
        return 0;
    int f = r == EBUSY ? mutex_fraction() : 0;
    if (HP_LIKELY(!TIMED(f, r)))
        return lock(m, at);
    int64_t t0 = hp_mono_ns();
    r = lock(m, at);
    waited("pthread_mutex_timedlock", f, r == 0 || r == ETIMEDOUT, t0);
    return r;
}

/* The rwlocks: a try that fails with EBUSY is contention; any other
 * answer (EDEADLK for a writer that holds it, EAGAIN for too many
 * readers) is left to the real lock to give again. */
#define RWLOCK_HOOK(name, tryname)                                                                 \
    HEAPPROF_API int name(pthread_rwlock_t *l)                                                     \
    {                                                                                              \
        int (*lock)(pthread_rwlock_t *) = HP_REAL(name);                                           \
        int r = HP_REAL(tryname)(l);                                                               \
        if (HP_LIKELY(r == 0))                                                                     \
            return 0;                                                                              \
        int f = r == EBUSY ? mutex_fraction() : 0;                                                 \
        if (HP_LIKELY(!TIMED(f, r)))                                                               \
            return lock(l);                                                                        \
        int64_t t0 = hp_mono_ns();                                                                 \
        r = lock(l);                                                                               \
        waited(#name, f, r == 0, t0);                                                              \
        return r;                                                                                  \
    }
RWLOCK_HOOK(pthread_rwlock_rdlock, pthread_rwlock_tryrdlock)
RWLOCK_HOOK(pthread_rwlock_wrlock, pthread_rwlock_trywrlock)

#define RWLOCK_TIMED_HOOK(name, tryname)                                                           \
    HEAPPROF_API int name(pthread_rwlock_t *l, const struct timespec *at)                          \
    {                                                                                              \
        int (*lock)(pthread_rwlock_t *, const struct timespec *) = HP_REAL(name);                  \
        int r = HP_REAL(tryname)(l);                                                               \
        if (HP_LIKELY(r == 0))                                                                     \
            return 0;                                                                              \
        int f = r == EBUSY ? mutex_fraction() : 0;                                                 \
        if (HP_LIKELY(!TIMED(f, r)))                                                               \
            return lock(l, at);                                                                    \
        int64_t t0 = hp_mono_ns();                                                                 \
        r = lock(l, at);                                                                           \
        waited(#name, f, r == 0 || r == ETIMEDOUT, t0);                                            \
        return r;                                                                                  \
    }
RWLOCK_TIMED_HOOK(pthread_rwlock_timedrdlock, pthread_rwlock_tryrdlock)
RWLOCK_TIMED_HOOK(pthread_rwlock_timedwrlock, pthread_rwlock_trywrlock)

HEAPPROF_API int pthread_spin_lock(pthread_spinlock_t *l)
{
    int (*lock)(pthread_spinlock_t *) = HP_REAL(pthread_spin_lock);
    int r = HP_REAL(pthread_spin_trylock)(l);
    if (HP_LIKELY(r == 0))
        return 0;
    int f = r == EBUSY ? mutex_fraction() : 0;
    if (HP_LIKELY(!TIMED(f, r)))
        return lock(l);
    int64_t t0 = hp_mono_ns();
    r = lock(l);
    waited("pthread_spin_lock", f, r == 0, t0);
    return r;
}
