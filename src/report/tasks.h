/* The program's threads as the kernel lists them (report/tasks.c): their
 * ids, their state, where each one's stack pointer is and what its
 * registers hold, read from /proc/self/task without malloc; and holding the
 * running ones with a signal for their registers, as the leak check
 * (report/reach.c) needs around the copy of the process it reads.
 */
#ifndef HP_REPORT_TASKS_H
#define HP_REPORT_TASKS_H

#include "iface.h"

#include <signal.h>

/* Calls fn with the id of each thread of this process until it returns
 * non-zero; returns that, 0 when every thread was seen, or -errno when the
 * list cannot be read. */
int hp_task_each(int (*fn)(pid_t tid, void *arg), void *arg);
/* Reads a small /proc file whole, without malloc (threads may be held while
 * it runs); NUL-terminated; the bytes read or -1. */
ssize_t hp_task_read(const char *path, char *buf, size_t len);
/* Installs handler (SA_SIGINFO, SA_RESTART, every signal masked) on a
 * real-time signal nobody handles, for good: a signal still pending later
 * does no harm. Returns the signal, or -1. */
int hp_task_signal_install(void (*handler)(int, siginfo_t *, void *));
/* Whether thread tid blocks sig, or is gone. */
bool hp_task_blocks(pid_t tid, int sig);

enum { HP_MAX_TASKS = 4096, HP_TASK_REGS = 16 };
/* Holding a thread: asked (a signal sent or to be sent), held (stopped in
 * the handler, its registers taken), given up (not held). */
enum { HP_PARK_NONE = 0, HP_PARK_ASKED, HP_PARK_HELD, HP_PARK_GIVEN_UP };
struct hp_task {
    pid_t tid;
    bool gone;      /* a zombie: the main thread after pthread_exit */
    int park;       /* HP_PARK_*: HP_PARK_HELD when it was stopped with its registers */
    bool signalled; /* hp_tasks_park sent it the holding signal */
    uintptr_t sp;   /* 0: unknown */
    uint64_t ran;   /* its time on a CPU (ns, schedstat) when read: see hp_task_ran */
    int nregs;
    uintptr_t regs[HP_TASK_REGS]; /* its registers, or a system call's arguments */
};
struct hp_tasks {
    pid_t my_tid; /* the thread that read them: never held */
    int n;
    struct hp_task t[HP_MAX_TASKS];
};
/* Reads every thread's state: a thread in a system call gets its stack
 * pointer and the call's arguments (live registers), one blocked outside
 * any its stack pointer, a running one HP_PARK_ASKED (hp_tasks_park). */
void hp_tasks_read(struct hp_tasks *ts);
/* Thread tid of process pid has run since its state was read (its time on
 * a CPU is not ran any more), or cannot tell: true. For a copy of the
 * process: a thread read as blocked that woke before the copy was made
 * may hold the only pointer to an object in a frame below the stack
 * pointer that was read, or in a register. */
bool hp_task_ran(pid_t pid, pid_t tid, uint64_t ran);
/* /proc/self/task/TID/syscall, read: "NR ARG1 ... ARG6 SP PC" in a system
 * call (sysno NR, its arguments), "-1 SP PC" blocked outside any (sysno
 * -1), "running" (HP_CALL_RUNNING), or nothing readable (HP_CALL_UNKNOWN). */
enum { HP_CALL_RUNNING = -2, HP_CALL_UNKNOWN = -3 };
struct hp_task_call {
    long sysno;
    uintptr_t sp, pc;
    uintptr_t args[6];
};
void hp_task_syscall(pid_t tid, struct hp_task_call *c);
const struct hp_task *hp_tasks_find(const struct hp_tasks *ts, pid_t tid);
/* Signals the threads asked for and waits until each is held in its signal
 * handler, with its registers and stack pointer, or cannot be (it blocks
 * the signal, is inside heapprof, or does not answer within 2 s). The
 * caller holds heapprof's locks (hp_freeze_hold), so that no thread held
 * can be holding one. Returns how many are held. */
int hp_tasks_park(struct hp_tasks *ts);
/* Asks that every thread but the caller be held, blocked ones too. */
void hp_tasks_hold_all(struct hp_tasks *ts);
/* Asks that the threads in tids be held, blocked or not. */
void hp_tasks_hold(struct hp_tasks *ts, const pid_t *tids, int n);
/* Lets them go; forgets what the threads not held may still write. */
void hp_tasks_unpark(struct hp_tasks *ts);

#endif
