/* The entry points the CPU profiler (cpu.c) interposes: pthread_create, so
 * that threads created while a profile runs get their own timer; sigaction
 * and signal, so that the program taking SIGPROF stops heapprof's timers
 * first; and dl_iterate_phdr, so that the handler knows when it interrupted
 * one (see hp_loader_try_enter: unwinding then could wait for the loader's
 * lock held by its own thread). Built into libheapprof.so only (like hooks.c), not into
 * the archive the unit tests link.
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);

struct start {
    void *(*fn)(void *);
    void *arg;
};

static void *thread_start(void *p)
{
    struct start s = *(struct start *)p;
    hp_free(p, sizeof s);
    hp_cpu_thread_begin();
    return s.fn(s.arg);
}

/* Only while a profile runs, and not for heapprof's own threads (made
 * while busy): other threads are created exactly as they would be. */
HEAPPROF_API int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                                void *arg)
{
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real)
        real = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(
            RTLD_NEXT, "pthread_create");
    if (!real)
        return EAGAIN;
    if (!hp_cpu_wrap_threads())
        return real(thread, attr, fn, arg);
    struct start *s = hp_alloc(sizeof *s);
    if (!s)
        return real(thread, attr, fn, arg);
    s->fn = fn;
    s->arg = arg;
    int r = real(thread, attr, thread_start, s);
    if (r)
        hp_free(s, sizeof *s);
    return r;
}

HEAPPROF_API int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (sig == SIGPROF && act)
        hp_cpu_sigprof_set(act);
    struct sigaction shown;
    if (hp_exit_signal_set(sig, act, &shown)) {
        /* heapprof's exit handler stands (record/exit.c): the program sees
         * the default action there, and asking for it keeps the handler. */
        int r = act && !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL
                    ? 0
                    : __sigaction(sig, act, NULL);
        if (r == 0 && old)
            *old = shown;
        return r;
    }
    return __sigaction(sig, act, old);
}

HEAPPROF_API sighandler_t signal(int sig, sighandler_t handler)
{
    static sighandler_t (*real)(int, sighandler_t);
    if (!real)
        real = (sighandler_t(*)(int, sighandler_t))dlsym(RTLD_NEXT, "signal");
    if (!real) {
        errno = ENOSYS;
        return SIG_ERR;
    }
    if (sig == SIGPROF)
        hp_cpu_sigprof_set(NULL);
    struct sigaction act, shown;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    if (handler != SIG_ERR && hp_exit_signal_set(sig, &act, &shown)) {
        if (handler == SIG_DFL)
            return SIG_DFL;
        sighandler_t r = real(sig, handler);
        return r == SIG_ERR ? SIG_ERR : SIG_DFL;
    }
    return real(sig, handler);
}

/* Resolved at its first call, which is never in the signal handler:
 * hp_stack_init calls it before any profile starts. */
HEAPPROF_API int dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data)
{
    static int (*real)(int (*)(struct dl_phdr_info *, size_t, void *), void *);
    if (!real)
        real = (int (*)(int (*)(struct dl_phdr_info *, size_t, void *), void *))dlsym(
            RTLD_NEXT, "dl_iterate_phdr");
    if (!real)
        return 0;
    hp_in_dl_iterate++;
    int r = real(cb, data);
    hp_in_dl_iterate--;
    return r;
}
