/* A copy of the process that holds still, for the leak check
 * (report/reach.c): see hp_freeze_fork in src/iface.h.
 */
#define _GNU_SOURCE
#include "record.h"
#include "heapprof.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void hp_freeze_hold(void)
{
    hp_live_lock_all();
    hp_mem_lock();
}

void hp_freeze_release(void)
{
    hp_mem_unlock();
    hp_live_unlock_all();
}

size_t hp_live_count_now(void)
{
    hp_live_lock_all();
    size_t n = hp_live_count_frozen();
    hp_live_unlock_all();
    return n;
}

pid_t hp_freeze_clone(void)
{
    /* No exit signal and no flags: a copy of the address space, as fork
     * makes, that the program's SIGCHLD handler and waitpid(-1) never see,
     * and without the atfork handlers. The child runs on a copy of this
     * thread's stack and returns from here. */
    pid_t pid = (pid_t)syscall(SYS_clone, 0UL, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        hp_mem_child();
        hp_live_child();
    }
    return pid;
}

pid_t hp_freeze_fork(void)
{
    hp_freeze_hold();
    pid_t pid = hp_freeze_clone();
    if (pid == 0)
        return 0;
    int saved = errno;
    hp_freeze_release();
    errno = saved;
    return pid;
}
