/* Blocking calls, for the block profile (record/contention.c): condition
 * variables, poll, epoll, select, the sleeps, reads and accepts, semaphores
 * and pthread_join.
 *
 * With the profile off (HEAPPROF_BLOCK_RATE 0, the default) each hook adds
 * one load of the rate and a branch that goes the same way every time to
 * the real call. With it on, the wait is timed on the monotonic clock and
 * handed to the sampler, which keeps a wait of d ns with probability
 * min(1, d/rate).
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

/* The hook's body: the real call, timed when the profile is on, and the
 * wait handed to the sampler with errno kept as the call left it. fd: the
 * descriptor (-1 for none, HP_CONT_NEVER for recv with MSG_DONTWAIT); a
 * call on one that failed with EAGAIN did not wait. */
#define TIMED(fd, call)                                                                            \
    do {                                                                                           \
        int64_t rate_ = block_rate();                                                              \
        if (HP_LIKELY(rate_ <= 0))                                                                 \
            return call;                                                                           \
        int64_t t0_ = hp_mono_ns();                                                                \
        __typeof__(call) r_ = call;                                                                \
        int e_ = errno;                                                                            \
        if (!did_not_wait(fd, (long long)r_, e_))                                                  \
            hp_cont_block(rate_, hp_mono_ns() - t0_, fd);                                          \
        errno = e_;                                                                                \
        return r_;                                                                                 \
    } while (0)

HEAPPROF_API int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    TIMED(-1, HP_REAL(pthread_cond_wait)(c, m));
}

HEAPPROF_API int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                        const struct timespec *at)
{
    TIMED(-1, HP_REAL(pthread_cond_timedwait)(c, m, at));
}

HEAPPROF_API int pthread_join(pthread_t t, void **ret)
{
    TIMED(-1, HP_REAL(pthread_join)(t, ret));
}

HEAPPROF_API int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    TIMED(-1, HP_REAL(poll)(fds, n, timeout));
}

HEAPPROF_API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
    TIMED(-1, HP_REAL(ppoll)(fds, n, t, mask));
}

HEAPPROF_API int epoll_wait(int ep, struct epoll_event *ev, int max, int timeout)
{
    TIMED(-1, HP_REAL(epoll_wait)(ep, ev, max, timeout));
}

HEAPPROF_API int epoll_pwait(int ep, struct epoll_event *ev, int max, int timeout,
                             const sigset_t *mask)
{
    TIMED(-1, HP_REAL(epoll_pwait)(ep, ev, max, timeout, mask));
}

HEAPPROF_API int select(int n, fd_set *r, fd_set *w, fd_set *x, struct timeval *t)
{
    TIMED(-1, HP_REAL(select)(n, r, w, x, t));
}

HEAPPROF_API int pselect(int n, fd_set *r, fd_set *w, fd_set *x, const struct timespec *t,
                         const sigset_t *mask)
{
    TIMED(-1, HP_REAL(pselect)(n, r, w, x, t, mask));
}

HEAPPROF_API int nanosleep(const struct timespec *t, struct timespec *rem)
{
    TIMED(-1, HP_REAL(nanosleep)(t, rem));
}

HEAPPROF_API int clock_nanosleep(clockid_t clock, int flags, const struct timespec *t,
                                 struct timespec *rem)
{
    TIMED(-1, HP_REAL(clock_nanosleep)(clock, flags, t, rem));
}

HEAPPROF_API unsigned sleep(unsigned s)
{
    TIMED(-1, HP_REAL(sleep)(s));
}

HEAPPROF_API int usleep(useconds_t us)
{
    TIMED(-1, HP_REAL(usleep)(us));
}

HEAPPROF_API ssize_t read(int fd, void *buf, size_t len)
{
    TIMED(fd, HP_REAL(read)(fd, buf, len));
}

HEAPPROF_API ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    TIMED(flags & MSG_DONTWAIT ? HP_CONT_NEVER : fd, HP_REAL(recv)(fd, buf, len, flags));
}

HEAPPROF_API ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                              socklen_t *fromlen)
{
    TIMED(flags & MSG_DONTWAIT ? HP_CONT_NEVER : fd,
          HP_REAL(recvfrom)(fd, buf, len, flags, from, fromlen));
}

HEAPPROF_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    TIMED(flags & MSG_DONTWAIT ? HP_CONT_NEVER : fd, HP_REAL(recvmsg)(fd, msg, flags));
}

HEAPPROF_API int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    TIMED(fd, HP_REAL(accept)(fd, addr, len));
}

HEAPPROF_API int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    TIMED(fd, HP_REAL(accept4)(fd, addr, len, flags));
}

HEAPPROF_API int sem_wait(sem_t *s)
{
    TIMED(-1, HP_REAL(sem_wait)(s));
}

HEAPPROF_API int sem_timedwait(sem_t *s, const struct timespec *at)
{
    TIMED(-1, HP_REAL(sem_timedwait)(s, at));
}
