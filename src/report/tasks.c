/* The program's threads as the kernel lists them in /proc/self/task, and
 * holding the running ones still for their registers. Used by the leak
 * check (report/reach.c) around the copy of the process it reads: a
 * thread's stack is read from its stack pointer up, and its registers are
 * roots. Nothing here allocates (the directory is read with getdents64),
 * so it works while other threads are held, whatever they hold.
 */
#define _GNU_SOURCE
#include "tasks.h"
#include "iface.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

ssize_t hp_task_read(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = hp_read(fd, buf, len - 1);
    close(fd);
    if (r >= 0)
        buf[r] = 0;
    return r;
}

int hp_task_each(int (*fn)(pid_t tid, void *arg), void *arg)
{
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[4096] __attribute__((aligned(8)));
    ssize_t got;
    int r = 0;
    while (!r && (got = getdents64(fd, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < got && !r;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + off);
            off += e->d_reclen;
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
                r = fn((pid_t)atoi(e->d_name), arg);
        }
    close(fd);
    return r;
}

/* One thread's state, from /proc/self/task/TID: stop when the table is
 * full. */
static void read_state(struct hp_task *t)
{
    pid_t tid = t->tid;
    memset(t, 0, sizeof *t);
    t->tid = tid;
    char path[64], text[512];
    /* "PID (COMM) S ...": the state after the last ')'. */
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)t->tid);
    if (hp_task_read(path, text, sizeof text) > 0) {
        const char *rp = strrchr(text, ')');
        if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
            t->gone = true;
    }
    if (t->gone)
        return;
    /* Before its system call is read: a thread that runs after this moment
     * shows a new time, though it may be back in the same call. */
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", (int)t->tid);
    if (hp_task_read(path, text, sizeof text) > 0)
        t->ran = strtoull(text, NULL, 10);
    struct hp_task_call c;
    hp_task_syscall(t->tid, &c);
    if (c.sysno >= 0) {
        t->sp = c.sp;
        for (int k = 0; k < 6; k++) /* the call's arguments: live registers */
            t->regs[t->nregs++] = c.args[k];
    } else if (c.sysno == -1) {
        t->sp = c.sp;
    } else if (c.sysno == HP_CALL_RUNNING) {
        t->park = HP_PARK_ASKED; /* to be held by a signal, for its registers */
    }
}

void hp_task_syscall(pid_t tid, struct hp_task_call *c)
{
    memset(c, 0, sizeof *c);
    c->sysno = HP_CALL_UNKNOWN;
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    if (hp_task_read(path, text, sizeof text) <= 0)
        return;
    char *f[9];
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(text, " \n", &save); tok && nf < 9;
         tok = strtok_r(NULL, " \n", &save))
        f[nf++] = tok;
    if (nf == 9 && f[7][0] == '0' && f[7][1] == 'x') {
        c->sysno = strtol(f[0], NULL, 10);
        c->sp = (uintptr_t)strtoull(f[7] + 2, NULL, 16);
        c->pc = (uintptr_t)strtoull(f[8], NULL, 16);
        for (int k = 0; k < 6; k++)
            c->args[k] = (uintptr_t)strtoull(f[k + 1], NULL, 16);
    } else if (nf == 3 && !strcmp(f[0], "-1") && f[1][0] == '0') {
        c->sysno = -1;
        c->sp = (uintptr_t)strtoull(f[1] + 2, NULL, 16);
        c->pc = (uintptr_t)strtoull(f[2], NULL, 16);
    } else if (nf == 1 && !strcmp(f[0], "running")) {
        c->sysno = HP_CALL_RUNNING;
    }
}

static int read_task(pid_t tid, void *arg)
{
    struct hp_tasks *ts = arg;
    if (ts->n >= HP_MAX_TASKS)
        return 1;
    struct hp_task *t = &ts->t[ts->n++];
    t->tid = tid;
    read_state(t);
    return ts->n >= HP_MAX_TASKS;
}

void hp_tasks_read(struct hp_tasks *ts)
{
    ts->my_tid = gettid();
    ts->n = 0;
    hp_task_each(read_task, ts);
}

bool hp_task_ran(pid_t pid, pid_t tid, uint64_t ran)
{
    char path[80], text[128];
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
    if (hp_task_read(path, text, sizeof text) <= 0)
        return true;
    return strtoull(text, NULL, 10) != ran;
}

const struct hp_task *hp_tasks_find(const struct hp_tasks *ts, pid_t tid)
{
    for (int i = 0; i < ts->n; i++)
        if (ts->t[i].tid == tid)
            return &ts->t[i];
    return NULL;
}

/* ---- holding running threads ----
 *
 * A running thread's registers may hold the only pointer to an object
 * (LeakSanitizer reads them with ptrace). Each thread found running gets a
 * signal whose handler stores the interrupted registers and stack pointer
 * and waits until the copy of the process is made. Only running threads
 * are signalled: a thread blocked in poll, epoll_wait or nanosleep would
 * see EINTR, which SA_RESTART does not prevent. A thread that blocks the
 * signal, or is inside heapprof (whose locks the dump holds), or does not
 * answer in time, is not held: its stack pointer stays unknown, and the
 * check reads its stack whole. The handler stays installed after the first
 * check, so that a signal still pending when the check ends does no harm. */

static struct hp_tasks *volatile park_ts;
static int park_hold, park_acks;
/* Handlers between their look at park_ts and their return: unpark waits
 * for none, so that the caller may free the tasks. A signal sent while a
 * thread blocked it (glibc blocks every signal around fork) arrives after
 * the check, when park_ts is NULL again. */
static int park_inside;
static int park_sig;
static uintptr_t own_text[8][2];
static int nown_text;

static long futex(int *addr, int op, int val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static bool in_own_text(uintptr_t pc)
{
    for (int i = 0; i < nown_text; i++)
        if (pc >= own_text[i][0] && pc < own_text[i][1])
            return true;
    return false;
}

static void on_park(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    int saved = errno;
    __atomic_add_fetch(&park_inside, 1, __ATOMIC_SEQ_CST);
    struct hp_tasks *ts = __atomic_load_n(&park_ts, __ATOMIC_SEQ_CST);
    pid_t me = (pid_t)syscall(SYS_gettid);
    const ucontext_t *uc = ucv;
    for (int i = 0; ts && i < ts->n; i++) {
        struct hp_task *t = &ts->t[i];
        if (t->tid != me)
            continue;
        bool was_busy = hp_busy_begin();
        hp_busy_end(was_busy);
        int want = HP_PARK_ASKED;
        uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
        if (was_busy || in_own_text(pc)) {
            /* In heapprof, maybe waiting for a lock the dump holds. */
            __atomic_compare_exchange_n(&t->park, &want, HP_PARK_GIVEN_UP, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE);
        } else if (__atomic_load_n(&t->park, __ATOMIC_ACQUIRE) == HP_PARK_ASKED) {
            /* gregs: R8..R15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP. */
            for (int r = 0; r < HP_TASK_REGS; r++)
                t->regs[r] = (uintptr_t)uc->uc_mcontext.gregs[r];
            t->nregs = HP_TASK_REGS;
            t->sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
            if (__atomic_compare_exchange_n(&t->park, &want, HP_PARK_HELD, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_add_fetch(&park_acks, 1, __ATOMIC_RELEASE);
                futex(&park_acks, FUTEX_WAKE_PRIVATE, 1, NULL);
                /* Held until the copy is made; never more than a minute. */
                for (int k = 0; k < 600 && __atomic_load_n(&park_hold, __ATOMIC_ACQUIRE); k++) {
                    struct timespec wait = {0, 100 * 1000 * 1000};
                    futex(&park_hold, FUTEX_WAIT_PRIVATE, 1, &wait);
                }
            }
        }
        break;
    }
    __atomic_sub_fetch(&park_inside, 1, __ATOMIC_RELEASE);
    errno = saved;
}

static int note_own_text(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (strncmp(hp_basename(info->dlpi_name ? info->dlpi_name : ""), "libheapprof", 11) != 0)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && nown_text < 8; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            own_text[nown_text][0] = info->dlpi_addr + ph->p_vaddr;
            own_text[nown_text][1] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            nown_text++;
        }
    }
    return 0;
}

int hp_task_signal_install(void (*handler)(int, siginfo_t *, void *))
{
    for (int sig = SIGRTMAX; sig >= SIGRTMIN + 4; sig--) {
        struct sigaction old;
        if (hp_real.sigaction(sig, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
            old.sa_handler != SIG_DFL)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = handler;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigfillset(&sa.sa_mask);
        if (hp_real.sigaction(sig, &sa, NULL) == 0)
            return sig;
    }
    return -1;
}

/* The holding signal, chosen and installed once. */
static bool park_setup(void)
{
    if (park_sig)
        return park_sig > 0;
    hp_dl_iterate_phdr(note_own_text, NULL);
    park_sig = hp_task_signal_install(on_park);
    return park_sig > 0;
}

bool hp_task_blocks(pid_t tid, int sig)
{
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    if (hp_task_read(path, text, sizeof text) <= 0)
        return true;
    const char *b = strstr(text, "\nSigBlk:");
    if (!b)
        return false;
    b += 8;
    while (*b == ' ' || *b == '\t')
        b++;
    uint64_t mask = strtoull(b, NULL, 16);
    return (mask >> (sig - 1)) & 1;
}

/* Signals the running threads and waits until each is held or cannot be.
 * Returns how many are held. */
void hp_tasks_hold_all(struct hp_tasks *ts)
{
    for (int i = 0; i < ts->n; i++)
        if (!ts->t[i].gone && ts->t[i].tid != ts->my_tid)
            ts->t[i].park = HP_PARK_ASKED;
}

void hp_tasks_hold(struct hp_tasks *ts, const pid_t *tids, int n)
{
    for (int i = 0; i < ts->n; i++)
        for (int k = 0; k < n; k++)
            if (ts->t[i].tid == tids[k] && !ts->t[i].gone && ts->t[i].tid != ts->my_tid)
                ts->t[i].park = HP_PARK_ASKED;
}

static int wait_held(struct hp_tasks *ts, int64_t deadline);

int hp_tasks_park(struct hp_tasks *ts)
{
    if (!park_setup())
        return 0;
    __atomic_store_n(&park_acks, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&park_hold, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&park_ts, ts, __ATOMIC_RELEASE);
    pid_t pid = getpid();
    int64_t deadline = hp_mono_ms() + 2000;
    for (int round = 0;; round++) {
        /* Signal those found running. */
        for (int i = 0; i < ts->n; i++) {
            struct hp_task *t = &ts->t[i];
            if (t->park != HP_PARK_ASKED || t->signalled)
                continue;
            t->signalled = true;
            if (t->tid == ts->my_tid || syscall(SYS_tgkill, pid, t->tid, park_sig) != 0)
                t->park = HP_PARK_GIVEN_UP;
        }
        int held = wait_held(ts, deadline);
        /* A thread read as blocked that has run since (its time on a CPU
         * moved) is read again: running now, it is held too; blocked, its
         * new stack pointer and call replace the old. A few rounds: a
         * thread that keeps waking is left to the copy's own look
         * (forget_woken in report/reach.c), which reads its whole stack. */
        bool again = false;
        for (int i = 0; round < 3 && i < ts->n; i++) {
            struct hp_task *t = &ts->t[i];
            if (t->gone || t->park != HP_PARK_NONE || t->tid == ts->my_tid ||
                !hp_task_ran(pid, t->tid, t->ran))
                continue;
            read_state(t);
            again |= t->park == HP_PARK_ASKED;
        }
        if (!again)
            return held;
    }
}

/* Waits until no thread asked is still on its way to being held (or the
 * deadline): how many are held. */
static int wait_held(struct hp_tasks *ts, int64_t deadline)
{
    for (;;) {
        int held = 0, waiting = 0;
        for (int i = 0; i < ts->n; i++) {
            int st = __atomic_load_n(&ts->t[i].park, __ATOMIC_ACQUIRE);
            held += st == HP_PARK_HELD;
            waiting += st == HP_PARK_ASKED;
        }
        if (!waiting)
            return held;
        bool late = hp_mono_ms() >= deadline;
        for (int i = 0; i < ts->n; i++) {
            struct hp_task *t = &ts->t[i];
            int want = HP_PARK_ASKED;
            if (__atomic_load_n(&t->park, __ATOMIC_ACQUIRE) == HP_PARK_ASKED &&
                (late || hp_task_blocks(t->tid, park_sig)))
                __atomic_compare_exchange_n(&t->park, &want, HP_PARK_GIVEN_UP, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        }
        int acks = __atomic_load_n(&park_acks, __ATOMIC_ACQUIRE);
        struct timespec wait = {0, 5 * 1000 * 1000};
        futex(&park_acks, FUTEX_WAIT_PRIVATE, acks, &wait);
    }
}

void hp_tasks_unpark(struct hp_tasks *ts)
{
    __atomic_store_n(&park_ts, NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&park_hold, 0, __ATOMIC_RELEASE);
    futex(&park_hold, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    /* A handler that saw ts leaves it before ts may go: it is past its
     * wait (park_hold is 0) and only returns. */
    while (__atomic_load_n(&park_inside, __ATOMIC_SEQ_CST)) {
        struct timespec pause = {0, 20000};
        hp_nanosleep(&pause, NULL);
    }
    /* Those not held: what their handler may still write is not used. */
    for (int i = 0; i < ts->n; i++)
        if (ts->t[i].park == HP_PARK_GIVEN_UP)
            ts->t[i].sp = 0, ts->t[i].nregs = 0;
}
