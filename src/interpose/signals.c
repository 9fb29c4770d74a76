/* Signals: sigaction and signal. The program taking SIGPROF stops
 * heapprof's CPU timers first (record/cpu.c); where heapprof's exit handler
 * stands for SIGINT, SIGTERM or SIGHUP (record/exit.c), the program sees the
 * default action, and its own handler replaces heapprof's.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

HEAPPROF_API int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    return hp_sigaction(sig, act, old);
}

HEAPPROF_API sighandler_t signal(int sig, sighandler_t handler)
{
    hp_real_resolve();
    sighandler_t (*real)(int, sighandler_t) = hp_real.signal;
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
