/* Threads: pthread_create, so that threads created while a CPU profile
 * runs get their own timer (record/cpu.c), and so that each thread knows
 * the stack that created it (record/spawn.c, /debug/pprof/threadcreate);
 * pthread_setname_np and
 * prctl(PR_SET_NAME), so that every thread reads its name again at its
 * next sample (record/labels.c).
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

struct start {
    void *(*fn)(void *);
    void *arg;
    bool cpu; /* a CPU profile runs: the thread makes its timer */
    int depth;
    uintptr_t ips[HP_SPAWN_FRAMES]; /* where it was created */
};

static void thread_end(void *unused)
{
    (void)unused;
    if (HP_TRACING())
        hp_trace_event(HP_TEV_THREAD_EXIT, 0, NULL);
}

static void *thread_start(void *p)
{
    struct start s = *(struct start *)p;
    hp_free(p, sizeof s);
    if (s.depth)
        hp_spawn_begin(s.ips, s.depth);
    if (s.cpu)
        hp_cpu_thread_begin();
    if (HP_TRACING())
        hp_trace_event(HP_TEV_THREAD_START, 0, NULL);
    void *r;
    /* The exit event on return, pthread_exit and cancellation alike. */
    pthread_cleanup_push(thread_end, NULL);
    r = s.fn(s.arg);
    pthread_cleanup_pop(1);
    return r;
}

/* Only while profiling is on, and not for heapprof's own threads (made
 * while busy): other threads are created exactly as they would be. */
HEAPPROF_API int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                                void *arg)
{
    hp_real_resolve();
    int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) = (int (*)(
        pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))hp_real.pthread_create;
    if (!real)
        return EAGAIN;
    bool cpu = hp_cpu_create_begin(), spawn = hp_spawn_wanted();
    int r;
    if (!cpu && !spawn && !hp_trace_wrap_threads()) {
        r = real(thread, attr, fn, arg);
        hp_cpu_create_end();
        return r;
    }
    struct start *s = hp_alloc(sizeof *s);
    if (!s) {
        r = real(thread, attr, fn, arg);
        hp_cpu_create_end();
        return r;
    }
    s->fn = fn;
    s->arg = arg;
    s->cpu = cpu;
    s->depth = spawn ? hp_spawn_capture(s->ips, HP_SPAWN_FRAMES) : 0;
    r = real(thread, attr, thread_start, s);
    hp_cpu_create_end();
    if (r)
        hp_free(s, sizeof *s);
    else if (HP_TRACING())
        hp_trace_event(HP_TEV_THREAD_CREATE, 0, NULL);
    return r;
}

/* Renames, however the program makes them: counted, so that every thread
 * reads its name again at its next sample. */
HEAPPROF_API int pthread_setname_np(pthread_t thread, const char *name)
{
    hp_real_resolve();
    int r = hp_real.pthread_setname_np ? hp_real.pthread_setname_np(thread, name) : ENOSYS;
    hp_labels_renamed();
    if (HP_TRACING() && r == 0)
        hp_trace_event(HP_TEV_RENAME,
                       pthread_equal(thread, pthread_self()) ? (int32_t)syscall(SYS_gettid) : 0,
                       name);
    return r;
}

HEAPPROF_API int prctl(int option, ...)
{
    hp_real_resolve();
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long),
                  a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    if (!hp_real.prctl) {
        errno = ENOSYS;
        return -1;
    }
    int r = hp_real.prctl(option, a2, a3, a4, a5);
    if (option == PR_SET_NAME) {
        hp_labels_renamed();
        if (HP_TRACING() && r == 0)
            hp_trace_event(HP_TEV_RENAME, (int32_t)syscall(SYS_gettid), (const char *)a2);
    }
    return r;
}

/* Counted, so that a thread's first allocation made inside it does not ask
 * for the thread's attributes again (record/threads.c). */
HEAPPROF_API int pthread_getattr_np(pthread_t thread, pthread_attr_t *attr)
{
    static int (*real)(pthread_t, pthread_attr_t *);
    if (!real)
        real = (int (*)(pthread_t, pthread_attr_t *))dlsym(RTLD_NEXT, "pthread_getattr_np");
    if (!real)
        return ENOSYS;
    hp_in_getattr++;
    int r = real(thread, attr);
    hp_in_getattr--;
    return r;
}
