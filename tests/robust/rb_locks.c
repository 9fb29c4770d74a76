/* Locks and blocking calls at their edges, for the lock and blocking hooks
 * (test_locks.py runs it with and without heapprof and compares the
 * output, which must be the same byte for byte).
 *
 * Prints one line per case: what each call returned and the errno it left.
 * Recursive, error-checking, robust (EOWNERDEAD, ENOTRECOVERABLE) and
 * priority-inheritance mutexes; timed locks that time out; rwlock
 * self-deadlock; cancellation inside pthread_cond_wait, read, poll,
 * nanosleep, sem_wait and epoll_wait (cleanup handlers run, the mutex of
 * the condition held again); a signal interrupting a sleep (EINTR, no
 * more, no less); errors from the blocking calls; and fork while another
 * thread holds locks. Every wait has a truth that does not depend on
 * timing: threads hand over with semaphores, and a lock is "held by
 * another thread" because that thread took it and said so.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAY(fmt, ...)                                                                              \
    do {                                                                                           \
        printf(fmt "\n", __VA_ARGS__);                                                             \
        fflush(stdout);                                                                            \
    } while (0)

static const char *err(int e)
{
    static char buf[32];
    switch (e) {
    case 0:
        return "0";
    case EBUSY:
        return "EBUSY";
    case EDEADLK:
        return "EDEADLK";
    case EPERM:
        return "EPERM";
    case EOWNERDEAD:
        return "EOWNERDEAD";
    case ENOTRECOVERABLE:
        return "ENOTRECOVERABLE";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    case EINVAL:
        return "EINVAL";
    case EBADF:
        return "EBADF";
    case EINTR:
        return "EINTR";
    case ENOTSOCK:
        return "ENOTSOCK";
    case EAGAIN:
        return "EAGAIN";
    case ENOTSUP:
        return "ENOTSUP";
    default:
        snprintf(buf, sizeof buf, "errno %d", e);
        return buf;
    }
}

static struct timespec past(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec -= 1;
    return ts;
}

static struct timespec soon(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

static void kinds(void)
{
    pthread_mutexattr_t a;
    pthread_mutex_t m;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m, &a);
    int r1 = pthread_mutex_lock(&m), r2 = pthread_mutex_lock(&m), r3 = pthread_mutex_trylock(&m);
    struct timespec ts = past();
    int r4 = pthread_mutex_timedlock(&m, &ts);
    int u1 = pthread_mutex_unlock(&m), u2 = pthread_mutex_unlock(&m), u3 = pthread_mutex_unlock(&m),
        u4 = pthread_mutex_unlock(&m), u5 = pthread_mutex_unlock(&m);
    SAY("recursive: lock %s %s try %s timed %s unlock %s %s %s %s %s", err(r1), err(r2), err(r3),
        err(r4), err(u1), err(u2), err(u3), err(u4), err(u5));
    pthread_mutex_destroy(&m);

    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&m, &a);
    r1 = pthread_mutex_lock(&m);
    r2 = pthread_mutex_lock(&m);
    r3 = pthread_mutex_trylock(&m);
    r4 = pthread_mutex_timedlock(&m, &ts);
    u1 = pthread_mutex_unlock(&m);
    u2 = pthread_mutex_unlock(&m);
    SAY("errorcheck: lock %s again %s try %s timed %s unlock %s again %s", err(r1), err(r2),
        err(r3), err(r4), err(u1), err(u2));
    pthread_mutex_destroy(&m);

    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_NORMAL);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    r1 = pthread_mutex_init(&m, &a);
    if (r1 == 0) {
        r2 = pthread_mutex_lock(&m);
        r3 = pthread_mutex_trylock(&m);
        u1 = pthread_mutex_unlock(&m);
        SAY("pi: init 0 lock %s try %s unlock %s", err(r2), err(r3), err(u1));
        pthread_mutex_destroy(&m);
    } else {
        SAY("pi: init %s", err(r1));
    }
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    r1 = pthread_mutex_init(&m, &a);
    if (r1 == 0) {
        r2 = pthread_mutex_lock(&m);
        r3 = pthread_mutex_lock(&m);
        u1 = pthread_mutex_unlock(&m);
        SAY("pi errorcheck: lock %s again %s unlock %s", err(r2), err(r3), err(u1));
        pthread_mutex_destroy(&m);
    }
    pthread_mutexattr_destroy(&a);
}

/* ---- robust mutexes: an owner that dies holding the lock ---- */
static pthread_mutex_t robust_mu;

static void *die_holding(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&robust_mu);
    return NULL; /* exits holding it */
}

static void robust(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust_mu, &a);
    pthread_t t;
    pthread_create(&t, NULL, die_holding, NULL);
    pthread_join(t, NULL);
    int r1 = pthread_mutex_lock(&robust_mu);
    int c1 = pthread_mutex_consistent(&robust_mu);
    int u1 = pthread_mutex_unlock(&robust_mu);
    pthread_create(&t, NULL, die_holding, NULL);
    pthread_join(t, NULL);
    struct timespec ts = soon(1000);
    int r2 = pthread_mutex_timedlock(&robust_mu, &ts);
    int u2 = pthread_mutex_unlock(&robust_mu); /* not made consistent */
    int r3 = pthread_mutex_lock(&robust_mu);
    SAY("robust: lock %s consistent %s unlock %s; timed %s unlock %s; lock %s", err(r1), err(c1),
        err(u1), err(r2), err(u2), err(r3));
    pthread_mutexattr_destroy(&a);
}

/* ---- a lock held by another thread ---- */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t held_rw = PTHREAD_RWLOCK_INITIALIZER;
static sem_t took, release;

static void *hold_both(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held_mu);
    pthread_rwlock_wrlock(&held_rw);
    sem_post(&took);
    sem_wait(&release);
    pthread_rwlock_unlock(&held_rw);
    pthread_mutex_unlock(&held_mu);
    return NULL;
}

static void held_elsewhere(void)
{
    pthread_t t;
    pthread_create(&t, NULL, hold_both, NULL);
    sem_wait(&took);
    struct timespec ts = soon(30);
    int r1 = pthread_mutex_timedlock(&held_mu, &ts);
    ts = soon(30);
    int r2 = pthread_rwlock_timedrdlock(&held_rw, &ts);
    ts = soon(30);
    int r3 = pthread_rwlock_timedwrlock(&held_rw, &ts);
    ts = past();
    int r4 = pthread_mutex_timedlock(&held_mu, &ts);
    int r5 = pthread_mutex_trylock(&held_mu);

    /* Fork while another thread holds both: the child sees them held
     * (and must not hang in heapprof's own locks). */
    pid_t pid = fork();
    if (pid == 0) {
        int c1 = pthread_mutex_trylock(&held_mu);
        int c2 = pthread_rwlock_tryrdlock(&held_rw);
        pthread_mutex_t mine = PTHREAD_MUTEX_INITIALIZER;
        int c3 = pthread_mutex_lock(&mine);
        struct timespec z = {0, 1000};
        int c4 = nanosleep(&z, NULL);
        printf("fork child: try %s tryrd %s own lock %s sleep %d\n", err(c1), err(c2), err(c3), c4);
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    sem_post(&release);
    pthread_join(t, NULL);
    int r6 = pthread_mutex_lock(&held_mu);
    pthread_mutex_unlock(&held_mu);
    int r7 = pthread_rwlock_wrlock(&held_rw);
    int r8 = pthread_rwlock_wrlock(&held_rw);
    int r9 = pthread_rwlock_rdlock(&held_rw);
    pthread_rwlock_unlock(&held_rw);
    SAY("held: timed %s timedrd %s timedwr %s past %s try %s; child %d; after lock %s wr %s again "
        "%s rd %s",
        err(r1), err(r2), err(r3), err(r4), err(r5), WIFEXITED(st) ? WEXITSTATUS(st) : -1, err(r6),
        err(r7), err(r8), err(r9));
    pthread_spinlock_t sl;
    pthread_spin_init(&sl, 0);
    int s1 = pthread_spin_lock(&sl), s2 = pthread_spin_trylock(&sl), s3 = pthread_spin_unlock(&sl);
    SAY("spin: lock %s try %s unlock %s", err(s1), err(s2), err(s3));
}

/* ---- cancellation inside waits ---- */
static pthread_mutex_t cv_mu;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int pipefd[2];
static sem_t never, started;
static int cleaned;

static void cleanup(void *arg)
{
    cleaned = (int)(long)arg;
}

static void cleanup_unlock(void *arg)
{
    /* The condition's mutex is held again when the handler runs:
     * unlocking an error-checking mutex says whether we own it. */
    cleaned = pthread_mutex_unlock(&cv_mu) == 0 ? (int)(long)arg : -1;
}

static void *wait_in(void *arg)
{
    int which = (int)(long)arg;
    if (which == 0) {
        pthread_mutex_lock(&cv_mu);
        pthread_cleanup_push(cleanup_unlock, (void *)1L);
        sem_post(&started);
        for (;;)
            pthread_cond_wait(&cv, &cv_mu);
        pthread_cleanup_pop(0);
    }
    pthread_cleanup_push(cleanup, (void *)(long)(which + 1));
    sem_post(&started);
    char c;
    struct pollfd pf = {pipefd[0], POLLIN, 0};
    struct timespec forever = {100000, 0};
    struct epoll_event ev;
    int ep = epoll_create1(0);
    switch (which) {
    case 1:
        read(pipefd[0], &c, 1);
        break;
    case 2:
        poll(&pf, 1, -1);
        break;
    case 3:
        nanosleep(&forever, NULL);
        break;
    case 4:
        sem_wait(&never);
        break;
    case 5:
        epoll_wait(ep, &ev, 1, -1);
        break;
    case 6: {
        struct timespec at = soon(100000000);
        pthread_mutex_lock(&cv_mu);
        pthread_cond_timedwait(&cv, &cv_mu, &at);
        break;
    }
    }
    pthread_cleanup_pop(0);
    return NULL;
}

static void cancellation(void)
{
    static const char *names[] = {"cond_wait", "read",     "poll",
                                  "nanosleep", "sem_wait", "epoll_wait"};
    for (int which = 0; which < 6; which++) {
        cleaned = 0;
        pthread_t t;
        pthread_create(&t, NULL, wait_in, (void *)(long)which);
        sem_wait(&started);
        /* Started: it is in the wait, or about to be; cancellation is
         * deferred, so it lands at the wait either way. */
        pthread_cancel(t);
        void *ret = NULL;
        pthread_join(t, &ret);
        SAY("cancel in %s: canceled %d cleanup %d", names[which], ret == PTHREAD_CANCELED, cleaned);
    }
}

/* ---- errors and EINTR ---- */
static void on_alarm(int sig)
{
    (void)sig;
}

static void *signal_me(void *arg)
{
    pthread_t target = *(pthread_t *)arg;
    sem_wait(&took);
    /* The target may not be asleep yet: signal until it says it woke. */
    while (sem_trywait(&release) != 0) {
        pthread_kill(target, SIGUSR1);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void errors(void)
{
    char c;
    errno = 0;
    ssize_t n = read(-1, &c, 1);
    SAY("read bad fd: %zd %s", n, err(errno));
    n = recv(pipefd[0], &c, 1, 0);
    SAY("recv on a pipe: %zd %s", n, err(errno));
    n = recvfrom(-1, &c, 1, 0, NULL, NULL);
    SAY("recvfrom bad fd: %zd %s", n, err(errno));
    int r = accept(-1, NULL, NULL);
    SAY("accept bad fd: %d %s", r, err(errno));
    struct timespec bad = {0, 2000000000L};
    r = nanosleep(&bad, NULL);
    SAY("nanosleep bad: %d %s", r, err(errno));
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL);
    SAY("clock_nanosleep bad: %d", r);
    r = poll(NULL, 0, 0);
    SAY("poll nothing: %d", r);
    struct timeval tv = {0, 0};
    r = select(0, NULL, NULL, NULL, &tv);
    SAY("select nothing: %d", r);
    struct epoll_event ev;
    r = epoll_wait(-1, &ev, 1, 0);
    SAY("epoll_wait bad: %d %s", r, err(errno));
    sem_t s;
    sem_init(&s, 0, 0);
    struct timespec ts = past();
    r = sem_timedwait(&s, &ts);
    SAY("sem_timedwait past: %d %s", r, err(errno));
    r = pthread_join(pthread_self(), NULL);
    SAY("join self: %s", err(r));
    SAY("sleep 0: %u usleep 0: %d", sleep(0), usleep(0));
    int fl[2];
    pipe(fl);
    fcntl(fl[0], F_SETFL, O_NONBLOCK);
    errno = 0;
    n = read(fl[0], &c, 1);
    SAY("read empty non-blocking: %zd %s", n, err(errno));

    /* A signal with a handler and no SA_RESTART: the sleep says EINTR. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t self = pthread_self(), t;
    pthread_create(&t, NULL, signal_me, &self);
    sem_post(&took);
    struct timespec forever = {100000, 0};
    errno = 0;
    r = nanosleep(&forever, NULL);
    int e = errno;
    sem_post(&release);
    pthread_join(t, NULL);
    SAY("nanosleep interrupted: %d %s", r, err(e));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    sem_init(&took, 0, 0);
    sem_init(&release, 0, 0);
    sem_init(&never, 0, 0);
    sem_init(&started, 0, 0);
    pipe(pipefd);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&cv_mu, &a);
    kinds();
    robust();
    held_elsewhere();
    cancellation();
    errors();
    SAY("%s", "done");
    return 0;
}
