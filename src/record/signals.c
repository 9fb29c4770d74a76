/* Who handles which signal. The program's sigaction calls (through
 * interpose/signals.c) and heapprof's own for a signal the program could
 * also take (HEAPPROF_SIGNAL, which may be HUP or PROF) pass here, so that
 * the CPU profiler stops its timers when the program takes SIGPROF
 * (record/cpu.c) and the exit handler for SIGINT, SIGTERM and SIGHUP steps
 * aside for a handler of the program's (record/exit.c).
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <signal.h>

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    hp_real_resolve();
    if (!hp_real.sigaction) {
        errno = ENOSYS;
        return -1;
    }
    return hp_real.sigaction(sig, act, old);
}

int hp_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (sig == SIGPROF && act)
        hp_cpu_sigprof_set(act);
    struct sigaction shown;
    if (hp_exit_signal_set(sig, act, &shown)) {
        /* heapprof's exit handler stands (record/exit.c): the program sees
         * the default action there, and asking for it keeps the handler. */
        int r = act && !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL
                    ? 0
                    : real_sigaction(sig, act, NULL);
        if (r == 0 && old)
            *old = shown;
        return r;
    }
    return real_sigaction(sig, act, old);
}
