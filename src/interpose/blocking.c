/* Blocking calls, for the block profile (record/contention.c): condition
 * variables, poll, epoll, select, the sleeps, reads and accepts, semaphores
 * and pthread_join.
 *
 * With the profile off (HEAPPROF_BLOCK_RATE 0, the default) and no
 * execution trace running, each hook adds two loads and branches that go
 * the same way every time to the real call. With the profile on, the wait
 * is timed on the monotonic clock and handed to the sampler, which keeps a
 * wait of d ns with probability min(1, d/rate); while a trace runs, every
 * wait is also a slice on the thread's track (record/trace.c).
 *
 * What the program sees is the real call's: its arguments passed as they
 * came, its return value and its errno (restored after heapprof's own
 * work), no retry and no EINTR of heapprof's. The real call is made once,
 * so a cancellation point stays one, at the same place: a thread
 * cancelled inside it unwinds through the hook, which holds nothing.
 *
 * A read, recv or accept on a descriptor in non-blocking mode did not
 * block: the sampler asks (fcntl) only for the waits it keeps; recv with
 * MSG_DONTWAIT, and any call that failed with EAGAIN, is not counted.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <unistd.h>

static inline int64_t block_rate(void)
{
    return __atomic_load_n(&hp_block_rate, __ATOMIC_RELAXED);
}

/* A call on a descriptor that failed with EAGAIN: it did not wait. */
static inline bool did_not_wait(int fd, long long r, int e)
{
    return fd >= 0 && r < 0 && e == EAGAIN;
}

/* A hook: with the profile off, one load and a branch before the real
 * call (a tail call); the timed path is out of line, so the fast one saves
 * no registers. The timed path hands the wait to the sampler with errno
 * kept as the call left it. fd: the descriptor (-1 for none, HP_CONT_NEVER
 * for recv with MSG_DONTWAIT); a call on one that failed with EAGAIN did
 * not wait. */
#define HOOK(ret, name, fd, params, args)                                                          \
    static __attribute__((noinline)) ret name##_timed(int64_t rate_, HP_UNPAREN params)            \
    {                                                                                              \
        int64_t t0_ = hp_mono_ns();                                                                \
        ret r_ = HP_REAL(name) args;                                                               \
        int e_ = errno;                                                                            \
        if (!did_not_wait(fd, (long long)r_, e_)) {                                                \
            int64_t t1_ = hp_mono_ns();                                                            \
            if (rate_ > 0)                                                                         \
                hp_cont_block(rate_, t1_ - t0_, fd);                                               \
            if (HP_TRACING())                                                                      \
                hp_trace_blocked(#name, t0_, t1_);                                                 \
        }                                                                                          \
        errno = e_;                                                                                \
        return r_;                                                                                 \
    }                                                                                              \
    HEAPPROF_API ret name(HP_UNPAREN params)                                                       \
    {                                                                                              \
        int64_t rate_ = block_rate();                                                              \
        if (HP_LIKELY(rate_ <= 0) && !HP_TRACING())                                                \
            return HP_REAL(name) args;                                                             \
        return name##_timed(rate_, HP_UNPAREN args);                                               \
    }
#define HP_UNPAREN(...) __VA_ARGS__

HOOK(int, pthread_cond_wait, -1, (pthread_cond_t * c, pthread_mutex_t *m), (c, m))
HOOK(int, pthread_cond_timedwait, -1,
     (pthread_cond_t * c, pthread_mutex_t *m, const struct timespec *at), (c, m, at))
HOOK(int, pthread_join, -1, (pthread_t t, void **ret), (t, ret))
HOOK(int, poll, -1, (struct pollfd * fds, nfds_t n, int timeout), (fds, n, timeout))
HOOK(int, ppoll, -1,
     (struct pollfd * fds, nfds_t n, const struct timespec *t, const sigset_t *mask),
     (fds, n, t, mask))
HOOK(int, epoll_wait, -1, (int ep, struct epoll_event *ev, int max, int timeout),
     (ep, ev, max, timeout))
HOOK(int, epoll_pwait, -1,
     (int ep, struct epoll_event *ev, int max, int timeout, const sigset_t *mask),
     (ep, ev, max, timeout, mask))
HOOK(int, select, -1, (int n, fd_set *r, fd_set *w, fd_set *x, struct timeval *t), (n, r, w, x, t))
HOOK(int, pselect, -1,
     (int n, fd_set *r, fd_set *w, fd_set *x, const struct timespec *t, const sigset_t *mask),
     (n, r, w, x, t, mask))
HOOK(int, nanosleep, -1, (const struct timespec *t, struct timespec *rem), (t, rem))
HOOK(int, clock_nanosleep, -1,
     (clockid_t clock, int flags, const struct timespec *t, struct timespec *rem),
     (clock, flags, t, rem))
HOOK(unsigned, sleep, -1, (unsigned s), (s))
HOOK(int, usleep, -1, (useconds_t us), (us))
HOOK(ssize_t, read, fd, (int fd, void *buf, size_t len), (fd, buf, len))
HOOK(ssize_t, recv, flags &MSG_DONTWAIT ? HP_CONT_NEVER : fd,
     (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags))
HOOK(ssize_t, recvfrom, flags &MSG_DONTWAIT ? HP_CONT_NEVER : fd,
     (int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen),
     (fd, buf, len, flags, from, fromlen))
HOOK(ssize_t, recvmsg, flags &MSG_DONTWAIT ? HP_CONT_NEVER : fd,
     (int fd, struct msghdr *msg, int flags), (fd, msg, flags))
HOOK(int, accept, fd, (int fd, struct sockaddr *addr, socklen_t *len), (fd, addr, len))
HOOK(int, accept4, fd, (int fd, struct sockaddr *addr, socklen_t *len, int flags),
     (fd, addr, len, flags))
HOOK(int, sem_wait, -1, (sem_t * s), (s))
HOOK(int, sem_timedwait, -1, (sem_t * s, const struct timespec *at), (s, at))
