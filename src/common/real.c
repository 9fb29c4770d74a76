/* The C library's own functions, for heapprof's own code.
 *
 * libheapprof.so defines malloc, free, pthread_create, sigaction, dlopen and
 * more (src/interpose/): a call to one of those from heapprof's own code
 * would land in heapprof's hooks, not in the C library. Code below the
 * interposition layer calls them through this table instead. The malloc
 * family is filled in by the allocator hooks when they find the real
 * allocator (interpose/alloc.c: the first allocations come before any
 * constructor); the rest here, with dlsym(RTLD_NEXT) from this object: at
 * load (a constructor), or on first use by a hook that runs earlier.
 */
#define _GNU_SOURCE
#include "hp.h"

#include <dlfcn.h>

struct hp_real hp_real;

void hp_real_resolve(void)
{
    if (__atomic_load_n(&hp_real.resolved, __ATOMIC_ACQUIRE))
        return;
    struct hp_real r = hp_real;
#define FIND(field, name) r.field = (__typeof__(r.field))dlsym(RTLD_NEXT, name)
    FIND(pthread_create, "pthread_create");
    FIND(pthread_setname_np, "pthread_setname_np");
    FIND(pthread_getattr_np, "pthread_getattr_np");
    FIND(prctl, "prctl");
    FIND(sigaction, "sigaction");
    FIND(signal, "signal");
    FIND(dl_iterate_phdr, "dl_iterate_phdr");
    FIND(dlopen, "dlopen");
    FIND(dlclose, "dlclose");
    FIND(sbrk, "sbrk");
    FIND(brk, "brk");
    FIND(madvise, "madvise");
    FIND(munmap, "munmap");
    FIND(pthread_mutex_lock, "pthread_mutex_lock");
    FIND(pthread_mutex_trylock, "pthread_mutex_trylock");
    FIND(pthread_mutex_timedlock, "pthread_mutex_timedlock");
    FIND(pthread_rwlock_rdlock, "pthread_rwlock_rdlock");
    FIND(pthread_rwlock_wrlock, "pthread_rwlock_wrlock");
    FIND(pthread_rwlock_tryrdlock, "pthread_rwlock_tryrdlock");
    FIND(pthread_rwlock_trywrlock, "pthread_rwlock_trywrlock");
    FIND(pthread_rwlock_timedrdlock, "pthread_rwlock_timedrdlock");
    FIND(pthread_rwlock_timedwrlock, "pthread_rwlock_timedwrlock");
    FIND(pthread_spin_lock, "pthread_spin_lock");
    FIND(pthread_spin_trylock, "pthread_spin_trylock");
    FIND(pthread_cond_wait, "pthread_cond_wait");
    FIND(pthread_cond_timedwait, "pthread_cond_timedwait");
    FIND(pthread_join, "pthread_join");
    FIND(poll, "poll");
    FIND(ppoll, "ppoll");
    FIND(epoll_wait, "epoll_wait");
    FIND(epoll_pwait, "epoll_pwait");
    FIND(select, "select");
    FIND(pselect, "pselect");
    FIND(nanosleep, "nanosleep");
    FIND(clock_nanosleep, "clock_nanosleep");
    FIND(sleep, "sleep");
    FIND(usleep, "usleep");
    FIND(read, "read");
    FIND(recv, "recv");
    FIND(recvfrom, "recvfrom");
    FIND(recvmsg, "recvmsg");
    FIND(accept, "accept");
    FIND(accept4, "accept4");
    FIND(sem_wait, "sem_wait");
    FIND(sem_timedwait, "sem_timedwait");
    FIND(execve, "execve");
    FIND(execv, "execv");
    FIND(execvp, "execvp");
    FIND(execvpe, "execvpe");
    FIND(fexecve, "fexecve");
#undef FIND
    hp_real.pthread_create = r.pthread_create;
    hp_real.pthread_setname_np = r.pthread_setname_np;
    hp_real.pthread_getattr_np = r.pthread_getattr_np;
    hp_real.prctl = r.prctl;
    hp_real.sigaction = r.sigaction;
    hp_real.signal = r.signal;
    hp_real.dl_iterate_phdr = r.dl_iterate_phdr;
    hp_real.dlopen = r.dlopen;
    hp_real.dlclose = r.dlclose;
    hp_real.sbrk = r.sbrk;
    hp_real.brk = r.brk;
    hp_real.madvise = r.madvise;
    hp_real.munmap = r.munmap;
    __atomic_store_n(&hp_real.pthread_mutex_lock, r.pthread_mutex_lock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_mutex_trylock, r.pthread_mutex_trylock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_mutex_timedlock, r.pthread_mutex_timedlock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_rwlock_rdlock, r.pthread_rwlock_rdlock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_rwlock_wrlock, r.pthread_rwlock_wrlock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_rwlock_tryrdlock, r.pthread_rwlock_tryrdlock,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_rwlock_trywrlock, r.pthread_rwlock_trywrlock,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_rwlock_timedrdlock, r.pthread_rwlock_timedrdlock,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_rwlock_timedwrlock, r.pthread_rwlock_timedwrlock,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_spin_lock, r.pthread_spin_lock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_spin_trylock, r.pthread_spin_trylock, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_cond_wait, r.pthread_cond_wait, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_cond_timedwait, r.pthread_cond_timedwait, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pthread_join, r.pthread_join, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.poll, r.poll, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.ppoll, r.ppoll, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.epoll_wait, r.epoll_wait, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.epoll_pwait, r.epoll_pwait, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.select, r.select, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.pselect, r.pselect, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.nanosleep, r.nanosleep, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.clock_nanosleep, r.clock_nanosleep, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.sleep, r.sleep, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.usleep, r.usleep, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.read, r.read, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.recv, r.recv, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.recvfrom, r.recvfrom, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.recvmsg, r.recvmsg, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.accept, r.accept, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.accept4, r.accept4, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.sem_wait, r.sem_wait, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.sem_timedwait, r.sem_timedwait, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.execve, r.execve, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.execv, r.execv, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.execvp, r.execvp, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.execvpe, r.execvpe, __ATOMIC_RELEASE);
    __atomic_store_n(&hp_real.fexecve, r.fexecve, __ATOMIC_RELEASE);
    /* The allocator's free and malloc_usable_size, where the hooks did not
     * fill them in (a program that links the internal archive, not the
     * library: the unit tests). */
    if (!hp_real.free)
        hp_real.free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    if (!hp_real.malloc_usable_size)
        hp_real.malloc_usable_size = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    __atomic_store_n(&hp_real.resolved, true, __ATOMIC_RELEASE);
}

int hp_mutex_lock(pthread_mutex_t *m)
{
    return HP_REAL(pthread_mutex_lock)(m);
}

int hp_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    return HP_REAL(pthread_cond_wait)(c, m);
}

int hp_nanosleep(const struct timespec *t, struct timespec *rem)
{
    return HP_REAL(nanosleep)(t, rem);
}

int hp_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    return HP_REAL(poll)(fds, n, timeout);
}

ssize_t hp_read(int fd, void *buf, size_t len)
{
    return HP_REAL(read)(fd, buf, len);
}

ssize_t hp_recv(int fd, void *buf, size_t len, int flags)
{
    return HP_REAL(recv)(fd, buf, len, flags);
}

int hp_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return HP_REAL(accept4)(fd, addr, len, flags);
}

__attribute__((constructor(101))) static void real_startup(void)
{
    hp_real_resolve();
}
