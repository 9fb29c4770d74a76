/* Every live thread's current stack, for /debug/pprof/goroutine (and its
 * alias /debug/pprof/threads): what Go shows of its goroutines, shown of a C
 * program's threads. Also the stacks that created the live threads, for
 * /debug/pprof/threadcreate (record/spawn.c keeps them).
 *
 * How a thread's stack is read, by what /proc/self/task/TID/syscall says
 * of it:
 *
 * - Running (on a CPU or ready to run): it gets a signal, as the CPU
 *   sampler's threads get SIGPROF. The handler copies the interrupted
 *   registers and the top of the stack above the stack pointer (64 KiB at
 *   most, with process_vm_readv, which fails rather than faults past the
 *   stack's end) and returns at once: nothing is held, nothing is unwound in
 *   the handler.
 * - Blocked, in a system call or outside any: it is not signalled. A
 *   handler would wake it, and poll, epoll_wait, nanosleep, select and
 *   others return EINTR after a handler even with SA_RESTART, which the
 *   program would see. The kernel gives the call's stack pointer and
 *   program counter in that file; the top of the stack is copied from here
 *   (process_vm_readv again), and kept only if the thread is still blocked
 *   at the same place after the copy (else tried again).
 *
 * Either copy is unwound here, on the background thread, with libdw's
 * unwinder (DWARF call frame information, frame pointers where there is
 * none), reading the copy for the stack and the process's own memory (with
 * process_vm_readv: a stray address fails, never faults) for anything
 * else. A blocked thread's unwinding starts from its stack pointer and
 * program counter only: a frame whose caller is found through a register
 * the kernel does not show (the frame pointer, when no frame below saved
 * it) ends the stack early, so where the frame-pointer chain is needed it
 * is recovered from the copy: the lowest saved-frame-pointer slot above the
 * stack pointer that starts a chain of at least two frames, each with a
 * return address into code.
 *
 * The one race left: a thread read as running may block in poll before
 * the signal reaches it, and then see EINTR. The window is between the
 * read of its /proc file and the tgkill right after it, a few
 * microseconds; the leak check's holding of running threads (tasks.c) and
 * the CPU sampler's timers share it.
 *
 * A thread that blocks the signal and is running gets a line saying so,
 * with what /proc tells of it (state, wchan, system call), and no stack.
 */
#define _GNU_SOURCE
#include "goroutine.h"
#include "iface.h"
#include "pprof.h"
#include "symbols.h"
#include "tasks.h"
#include "dw.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

enum {
    MAX_THREADS = HP_MAX_TASKS,
    STACK_COPY = 64 * 1024,            /* the most of a stack read, from its pointer up */
    RUNNING_COPIES = 32 * 1024 * 1024, /* the most for running threads' copies at once */
    DWARF_REGS = 17,                   /* rax..r15 and the return address (x86-64) */
    PAGE = 4096,
};

/* What the handler and the reader agree on, per signalled thread. */
enum { ST_NONE, ST_ASKED, ST_COPYING, ST_DONE, ST_GIVEN_UP };
struct held {
    pid_t tid;
    int state;
    greg_t gregs[NGREG];
    uint8_t *stack; /* cap bytes; len copied, from gregs[REG_RSP] */
    size_t cap, len;
};

struct gthread {
    pid_t tid;
    char name[32];
    char state;     /* from stat: R, S, D, ... */
    char wchan[64]; /* "" when the kernel does not say */
    long sysno;     /* -2 running, -1 blocked outside a call, else the call */
    bool blocks_signal;
    const char *note; /* why there is no stack, or what is odd about it */
    struct held *held;
    uintptr_t sp, pc; /* a blocked thread's, from /proc */
    int depth;
    uintptr_t ips[HP_MAX_FRAMES]; /* leaf first, as return addresses */
};

struct gset {
    struct hp_arena *a;
    int n;
    struct gthread *t;
    int nheld;
    struct held *held;
    int no_stack;
};

/* Reads len bytes at addr of this process into out, page by page: how many
 * bytes could be read before the first page that cannot. */
static size_t read_self(void *out, uintptr_t addr, size_t len)
{
    struct iovec local[STACK_COPY / PAGE + 1], remote[STACK_COPY / PAGE + 1];
    size_t n = 0, done = 0;
    while (done < len && n < sizeof local / sizeof *local) {
        size_t chunk = PAGE - ((addr + done) & (PAGE - 1));
        if (chunk > len - done)
            chunk = len - done;
        local[n].iov_base = (uint8_t *)out + done;
        local[n].iov_len = chunk;
        remote[n].iov_base = (void *)(addr + done);
        remote[n].iov_len = chunk;
        done += chunk;
        n++;
    }
    ssize_t r = process_vm_readv(getpid(), local, n, remote, n, 0);
    return r > 0 ? (size_t)r : 0;
}

/* ---- what /proc says ---- */

static const char *state_word(char s)
{
    switch (s) {
    case 'R':
        return "running";
    case 'S':
        return "sleeping";
    case 'D':
        return "disk sleep";
    case 'T':
        return "stopped";
    case 't':
        return "tracing stop";
    case 'Z':
        return "zombie";
    case 'I':
        return "idle";
    default:
        return "unknown";
    }
}

static const char *syscall_name(long nr, char *buf, size_t len)
{
    static const struct {
        int nr;
        const char *name;
    } names[] = {
        {SYS_read, "read"},
        {SYS_write, "write"},
        {SYS_open, "open"},
        {SYS_close, "close"},
        {SYS_poll, "poll"},
        {SYS_ioctl, "ioctl"},
        {SYS_pread64, "pread64"},
        {SYS_pwrite64, "pwrite64"},
        {SYS_readv, "readv"},
        {SYS_writev, "writev"},
        {SYS_select, "select"},
        {SYS_sched_yield, "sched_yield"},
        {SYS_pause, "pause"},
        {SYS_nanosleep, "nanosleep"},
        {SYS_connect, "connect"},
        {SYS_accept, "accept"},
        {SYS_sendto, "sendto"},
        {SYS_recvfrom, "recvfrom"},
        {SYS_sendmsg, "sendmsg"},
        {SYS_recvmsg, "recvmsg"},
        {SYS_wait4, "wait4"},
        {SYS_fcntl, "fcntl"},
        {SYS_flock, "flock"},
        {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
        {SYS_rt_sigsuspend, "rt_sigsuspend"},
        {SYS_futex, "futex"},
        {SYS_epoll_wait, "epoll_wait"},
        {SYS_restart_syscall, "restart_syscall"},
        {SYS_clock_nanosleep, "clock_nanosleep"},
        {SYS_waitid, "waitid"},
        {SYS_openat, "openat"},
        {SYS_pselect6, "pselect6"},
        {SYS_ppoll, "ppoll"},
        {SYS_epoll_pwait, "epoll_pwait"},
        {SYS_accept4, "accept4"},
        {SYS_recvmmsg, "recvmmsg"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (names[i].nr == nr)
            return names[i].name;
    snprintf(buf, len, "syscall %ld", nr);
    return buf;
}

/* The thread's name, state, wchan and system call; false when it is gone. */
static bool read_proc(struct gthread *t)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)t->tid);
    if (hp_task_read(path, text, sizeof text) <= 0)
        return false;
    const char *rp = strrchr(text, ')');
    t->state = rp && rp[1] == ' ' ? rp[2] : '?';
    if (t->state == 'Z' || t->state == 'X')
        return false;
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)t->tid);
    if (hp_task_read(path, t->name, sizeof t->name) > 0)
        t->name[strcspn(t->name, "\n")] = 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/wchan", (int)t->tid);
    if (hp_task_read(path, t->wchan, sizeof t->wchan) <= 0 || !strcmp(t->wchan, "0"))
        t->wchan[0] = 0;
    return true;
}

/* In a system call (its number), blocked outside any (-1), or running or
 * unknown (-2), with the stack pointer and pc /proc gives (report/tasks.c). */
static void read_syscall(struct gthread *t)
{
    struct hp_task_call c;
    hp_task_syscall(t->tid, &c);
    t->sysno = c.sysno >= -1 ? c.sysno : -2;
    t->sp = c.sp;
    t->pc = c.pc;
}

/* ---- running threads: a signal ---- */

static struct held *volatile held_tab;
static volatile int held_n;
static int inside; /* handlers running: the table is not freed under them */
static int acks;
static int gsig;

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    int saved = errno;
    __atomic_add_fetch(&inside, 1, __ATOMIC_ACQ_REL);
    struct held *tab = __atomic_load_n(&held_tab, __ATOMIC_ACQUIRE);
    pid_t me = (pid_t)syscall(SYS_gettid);
    for (int i = 0; tab && i < held_n; i++) {
        struct held *h = &tab[i];
        int want = ST_ASKED;
        if (h->tid != me || !__atomic_compare_exchange_n(&h->state, &want, ST_COPYING, false,
                                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        const ucontext_t *uc = ucv;
        memcpy(h->gregs, uc->uc_mcontext.gregs, sizeof h->gregs);
        h->len = read_self(h->stack, (uintptr_t)uc->uc_mcontext.gregs[REG_RSP], h->cap);
        __atomic_store_n(&h->state, ST_DONE, __ATOMIC_RELEASE);
        __atomic_add_fetch(&acks, 1, __ATOMIC_RELEASE);
        syscall(SYS_futex, &acks, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        break;
    }
    __atomic_sub_fetch(&inside, 1, __ATOMIC_ACQ_REL);
    errno = saved;
}

/* A real-time signal nobody handles, with the handler installed, once. */
static bool signal_setup(void)
{
    if (!gsig)
        gsig = hp_task_signal_install(on_signal);
    return gsig > 0;
}

/* Signals the running threads, one right after its /proc file said so,
 * and waits (at most a second) for their copies. */
static void signal_running(struct gset *g)
{
    int running = 0;
    for (int i = 0; i < g->n; i++)
        running += g->t[i].sysno == -2;
    if (!running || !signal_setup())
        return;
    size_t cap = RUNNING_COPIES / (size_t)running;
    if (cap > STACK_COPY)
        cap = STACK_COPY;
    g->held = hp_arena_alloc(g->a, (size_t)running * sizeof *g->held);
    if (!g->held)
        return;
    for (int i = 0; i < g->n && g->nheld < running; i++) {
        struct gthread *t = &g->t[i];
        if (t->sysno != -2)
            continue;
        if (hp_task_blocks(t->tid, gsig)) {
            t->blocks_signal = true;
            continue;
        }
        struct held *h = &g->held[g->nheld];
        h->stack = hp_arena_alloc(g->a, cap);
        if (!h->stack)
            break;
        h->cap = cap;
        h->tid = t->tid;
        h->state = ST_ASKED;
        t->held = h;
        g->nheld++;
    }
    __atomic_store_n(&acks, 0, __ATOMIC_RELAXED);
    held_n = g->nheld;
    __atomic_store_n(&held_tab, g->held, __ATOMIC_RELEASE);
    pid_t pid = getpid();
    for (int i = 0; i < g->nheld; i++) {
        struct held *h = &g->held[i];
        struct gthread *t = NULL;
        for (int k = 0; k < g->n && !t; k++)
            if (g->t[k].held == h)
                t = &g->t[k];
        /* Still running? One that blocked since is read from /proc. */
        read_syscall(t);
        if (t->sysno != -2 || syscall(SYS_tgkill, pid, h->tid, gsig) != 0) {
            h->state = ST_GIVEN_UP;
            t->held = NULL;
        }
    }
    int64_t deadline = hp_mono_ms() + 1000;
    for (;;) {
        int waiting = 0;
        for (int i = 0; i < g->nheld; i++)
            waiting += __atomic_load_n(&g->held[i].state, __ATOMIC_ACQUIRE) == ST_ASKED;
        if (!waiting || hp_mono_ms() >= deadline)
            break;
        int seen = __atomic_load_n(&acks, __ATOMIC_ACQUIRE);
        struct timespec wait = {0, 5 * 1000 * 1000};
        syscall(SYS_futex, &acks, FUTEX_WAIT_PRIVATE, seen, &wait, NULL, 0);
    }
    for (int i = 0; i < g->nheld; i++) {
        int want = ST_ASKED;
        __atomic_compare_exchange_n(&g->held[i].state, &want, ST_GIVEN_UP, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    }
    /* No handler may write into the table once it is given back. */
    __atomic_store_n(&held_tab, NULL, __ATOMIC_RELEASE);
    while (__atomic_load_n(&inside, __ATOMIC_ACQUIRE))
        sched_yield();
    for (int i = 0; i < g->n; i++) {
        struct gthread *t = &g->t[i];
        if (t->held && t->held->state != ST_DONE) {
            t->note = "it did not answer heapprof's signal in time";
            t->held = NULL;
        }
    }
}

/* ---- unwinding a copy with libdw ---- */

struct unwind {
    const uint8_t *stack;
    uintptr_t base;
    size_t len;
    Dwarf_Word regs[DWARF_REGS];
    bool full; /* every register known; else the stack pointer and pc only */
    struct gthread *t;
};
static struct unwind *cur;

static bool mem_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *arg)
{
    (void)dwfl;
    (void)arg;
    if (addr >= cur->base && addr + sizeof *result <= cur->base + cur->len) {
        memcpy(result, cur->stack + (addr - cur->base), sizeof *result);
        return true;
    }
    return read_self(result, (uintptr_t)addr, sizeof *result) == sizeof *result;
}

static pid_t next_thread(Dwfl *dwfl, void *arg, void **thread_arg)
{
    (void)dwfl;
    (void)arg;
    (void)thread_arg;
    return 0;
}

static bool get_thread(Dwfl *dwfl, pid_t tid, void *arg, void **thread_arg)
{
    (void)dwfl;
    (void)tid;
    (void)arg;
    *thread_arg = cur;
    return true;
}

static bool set_registers(Dwfl_Thread *thread, void *arg)
{
    struct unwind *u = arg;
    if (u->full) {
        if (!dwfl_thread_state_registers(thread, 0, DWARF_REGS, u->regs))
            return false;
    } else {
        if (!dwfl_thread_state_registers(thread, 7, 1, &u->regs[7]))
            return false;
        if (u->regs[6] && !dwfl_thread_state_registers(thread, 6, 1, &u->regs[6]))
            return false;
    }
    dwfl_thread_state_register_pc(thread, u->regs[16]);
    return true;
}

static const Dwfl_Thread_Callbacks thread_callbacks = {
    .next_thread = next_thread,
    .get_thread = get_thread,
    .memory_read = mem_read,
    .set_initial_registers = set_registers,
};

static int on_frame(Dwfl_Frame *state, void *arg)
{
    struct unwind *u = arg;
    Dwarf_Addr pc;
    bool activation;
    if (!dwfl_frame_pc(state, &pc, &activation) || pc == 0 || u->t->depth >= HP_MAX_FRAMES)
        return DWARF_CB_ABORT;
    /* Stored as return addresses: the interrupted instruction as its
     * address + 1, as record/stack.c stores a signal's leaf. */
    u->t->ips[u->t->depth++] = activation ? (uintptr_t)pc + 1 : (uintptr_t)pc;
    return DWARF_CB_OK;
}

/* The executable mappings, from /proc/self/maps: a return address must
 * fall in one (a module's data does not do). */
enum { MAX_CODE = 512 };
static uintptr_t code[MAX_CODE][2];
static int ncode;

static void read_code_ranges(struct hp_arena *a)
{
    size_t len = 0;
    char *maps = hp_read_file(a, "/proc/self/maps", &len);
    ncode = 0;
    for (char *line = maps; line && *line && ncode < MAX_CODE;) {
        char *nl = strchr(line, '\n');
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x') {
            code[ncode][0] = lo;
            code[ncode][1] = hi;
            ncode++;
        }
        line = nl ? nl + 1 : NULL;
    }
}

static bool is_code(Dwfl *dwfl, uintptr_t addr)
{
    (void)dwfl;
    for (int i = 0; i < ncode; i++)
        if (addr >= code[i][0] && addr < code[i][1])
            return true;
    return false;
}

/* For a blocked thread (no registers but sp and pc): the frame pointer of
 * the innermost frame that keeps one, found in the copy as the lowest slot
 * that starts a chain of two frames, each saved pointer higher up the
 * stack than its slot and followed by a return address into code. 0 when
 * none is found. */
static uintptr_t find_frame_pointer(Dwfl *dwfl, const struct unwind *u)
{
    const uintptr_t *w = (const uintptr_t *)u->stack;
    size_t nw = u->len / sizeof *w;
    uintptr_t lo = u->base, hi = u->base + u->len;
    for (size_t i = 0; i + 1 < nw; i++) {
        uintptr_t slot = lo + i * sizeof *w, fp = slot;
        int links = 0;
        while (links < 2) {
            uintptr_t saved = w[(fp - lo) / sizeof *w];
            uintptr_t ret = fp + 2 * sizeof *w <= hi ? w[(fp - lo) / sizeof *w + 1] : 0;
            if (!is_code(dwfl, ret))
                break;
            links++;
            if (saved <= fp || saved + 2 * sizeof *w > hi || (saved & 7))
                break;
            fp = saved;
        }
        if (links >= 2)
            return slot;
    }
    return 0;
}

static void unwind_thread(Dwfl *dwfl, struct unwind *u)
{
    cur = u;
    u->t->depth = 0;
    dwfl_getthread_frames(dwfl, u->t->tid, on_frame, u);
    cur = NULL;
}

/* A blocked thread: its stack copied from here, kept if the thread did not
 * move meanwhile; then unwound from sp and pc (and the frame pointer found
 * in the copy when that goes further). */
static void unwind_blocked(Dwfl *dwfl, struct gthread *t, uint8_t *buf)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        uintptr_t sp = t->sp, pc = t->pc;
        if (!sp || !pc) {
            t->note = "the kernel does not show where it is blocked";
            return;
        }
        size_t len = read_self(buf, sp, STACK_COPY);
        read_syscall(t);
        if (t->sp != sp || t->pc != pc)
            continue; /* it moved while read: again */
        struct unwind u = {.stack = buf, .base = sp, .len = len, .t = t};
        u.regs[7] = sp;
        u.regs[16] = pc;
        unwind_thread(dwfl, &u);
        int depth = t->depth;
        uintptr_t ips[HP_MAX_FRAMES];
        memcpy(ips, t->ips, sizeof ips);
        u.regs[6] = find_frame_pointer(dwfl, &u);
        if (u.regs[6]) {
            unwind_thread(dwfl, &u);
            if (t->depth < depth) {
                t->depth = depth;
                memcpy(t->ips, ips, sizeof ips);
            }
        }
        if (!t->depth) {
            t->ips[0] = pc + 1;
            t->depth = 1;
        }
        return;
    }
    t->note = "it kept moving while its stack was read";
}

static int add_task(pid_t tid, void *arg)
{
    struct gset *g = arg;
    if (g->n >= MAX_THREADS)
        return 1;
    struct gthread *t = &g->t[g->n];
    memset(t, 0, sizeof *t);
    t->tid = tid;
    if (tid == gettid() || !read_proc(t))
        return 0; /* the thread serving this, or gone */
    read_syscall(t);
    g->n++;
    return 0;
}

/* Every live thread but the caller, with its stack. */
static int collect(struct hp_arena *a, struct gset *g)
{
    memset(g, 0, sizeof *g);
    g->a = a;
    g->t = hp_arena_alloc(a, MAX_THREADS * sizeof *g->t);
    if (!g->t)
        return -ENOMEM;
    int r = hp_task_each(add_task, g);
    if (r < 0)
        return r;
    signal_running(g);
    uint8_t *buf = hp_arena_alloc(a, STACK_COPY);
    read_code_ranges(a);
    Dwfl *dwfl = hp_dw_load() ? dwfl_begin(hp_dw_proc_callbacks()) : NULL;
    bool ok = dwfl != NULL;
    if (ok) {
        dwfl_report_begin(dwfl);
        ok = dwfl_linux_proc_report(dwfl, getpid()) == 0 &&
             dwfl_report_end(dwfl, NULL, NULL) == 0 &&
             dwfl_attach_state(dwfl, NULL, getpid(), &thread_callbacks, NULL);
    }
    for (int i = 0; i < g->n; i++) {
        struct gthread *t = &g->t[i];
        if (t->held) {
            struct held *h = t->held;
            uintptr_t pc = (uintptr_t)h->gregs[REG_RIP];
            if (ok) {
                static const int map[DWARF_REGS] = {
                    REG_RAX, REG_RDX, REG_RCX, REG_RBX, REG_RSI, REG_RDI, REG_RBP, REG_RSP, REG_R8,
                    REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP};
                struct unwind u = {.stack = h->stack,
                                   .base = (uintptr_t)h->gregs[REG_RSP],
                                   .len = h->len,
                                   .full = true,
                                   .t = t};
                for (int k = 0; k < DWARF_REGS; k++)
                    u.regs[k] = (Dwarf_Word)h->gregs[map[k]];
                unwind_thread(dwfl, &u);
            }
            if (!t->depth) {
                t->ips[0] = pc + 1;
                t->depth = 1;
            }
        } else if (t->sysno != -2) {
            if (ok && buf)
                unwind_blocked(dwfl, t, buf);
            else if (t->pc)
                t->ips[0] = t->pc + 1, t->depth = 1;
        } else if (t->blocks_signal) {
            t->note = "it blocks heapprof's signal and was running, outside any system call";
        } else if (!t->note) {
            t->note = "it could not be signalled";
        }
        if (!t->depth)
            g->no_stack++;
    }
    if (dwfl)
        dwfl_end(dwfl);
    return 0;
}

/* ---- grouping and writing ---- */

static int by_stack(const void *x, const void *y)
{
    const struct gthread *a = *(const struct gthread *const *)x,
                         *b = *(const struct gthread *const *)y;
    if (a->depth != b->depth)
        return a->depth < b->depth ? -1 : 1;
    int c = memcmp(a->ips, b->ips, (size_t)a->depth * sizeof *a->ips);
    return c ? c : strcmp(a->name, b->name);
}

static bool same_group(const struct gthread *a, const struct gthread *b)
{
    return a->depth == b->depth && !memcmp(a->ips, b->ips, (size_t)a->depth * sizeof *a->ips) &&
           !strcmp(a->name, b->name);
}

/* The calls of one frame, innermost first, as Go's text forms list them. */
static void put_frame_text(struct hp_text *t, struct hp_symbolizer *sym, uintptr_t pc,
                           uint32_t epoch, bool go_trace)
{
    struct hp_symbolized fr;
    hp_sym_lookup(sym, pc, epoch, &fr);
    uint64_t off = 0;
    bool has_off = hp_sym_offset(sym, pc, epoch, &off);
    const char *module = "?";
    struct hp_mapping *maps;
    int nmaps = hp_sym_mappings(sym, &maps);
    if (fr.mapping >= 0 && fr.mapping < nmaps && maps[fr.mapping].file)
        module = maps[fr.mapping].file;
    if (fr.nlines == 0) {
        if (go_trace)
            hp_text_put(t, "?(...)\n\t%s +%#lx\n", module, (unsigned long)(pc - 1));
        else
            hp_text_put(t, "#\t%#lx\n", (unsigned long)(pc - 1));
        return;
    }
    for (int l = 0; l < fr.nlines; l++) {
        const struct hp_frame_line *ln = &fr.lines[l];
        const char *fn = ln->function ? ln->function : "?";
        if (go_trace) {
            hp_text_put(t, "%s(...)\n", fn);
            if (ln->file)
                hp_text_put(t, "\t%s:%d", ln->file, ln->line);
            else
                hp_text_put(t, "\t%s", module);
            if (l == fr.nlines - 1 && has_off)
                hp_text_put(t, " +%#llx", (unsigned long long)off);
            hp_text_put(t, "\n");
        } else {
            hp_text_put(t, "#\t%#lx\t%s", (unsigned long)(pc - 1), fn);
            if (l == fr.nlines - 1 && has_off)
                hp_text_put(t, "+%#llx", (unsigned long long)off);
            if (ln->file)
                hp_text_put(t, "\t%s:%d", ln->file, ln->line);
            hp_text_put(t, "\n");
        }
    }
}

static int finish_text(struct hp_text *t, uint8_t **out, size_t *outlen)
{
    if (t->oom)
        return -ENOMEM;
    *out = (uint8_t *)(t->p ? t->p : "");
    *outlen = t->len;
    return 0;
}

static void put_note(struct hp_text *t, const struct gthread *th)
{
    char buf[32];
    hp_text_put(t, "[%s", state_word(th->state));
    if (th->wchan[0] || th->sysno >= 0) {
        hp_text_put(t, ", %s", th->wchan);
        if (th->sysno >= 0)
            hp_text_put(t, "%s%s", th->wchan[0] ? "/" : "",
                        syscall_name(th->sysno, buf, sizeof buf));
    }
    hp_text_put(t, ", \"%s\"]", th->name);
}

int hp_goroutine_render(struct hp_arena *a, int debug, uint8_t **out, size_t *outlen)
{
    struct gset g;
    int r = collect(a, &g);
    if (r)
        return r;
    struct gthread **order = hp_arena_alloc(a, (size_t)(g.n ? g.n : 1) * sizeof *order);
    if (!order)
        return -ENOMEM;
    for (int i = 0; i < g.n; i++)
        order[i] = &g.t[i];
    struct hp_symbolizer *sym = hp_sym_open(a);
    struct hp_text t = {.a = a};
    if (debug >= 2) {
        /* One block per thread, by thread id (the main thread first). */
        for (int i = 0; i < g.n; i++) {
            const struct gthread *th = &g.t[i];
            hp_text_put(&t, "goroutine %d ", (int)th->tid);
            put_note(&t, th);
            hp_text_put(&t, ":\n");
            if (th->note)
                hp_text_put(&t, "# heapprof: %s stack: %s\n", th->depth ? "partial" : "no",
                            th->note);
            for (int d = 0; d < th->depth; d++)
                put_frame_text(&t, sym, th->ips[d], UINT32_MAX, true);
            hp_text_put(&t, "\n");
        }
        hp_sym_close(sym);
        return finish_text(&t, out, outlen);
    }
    qsort(order, (size_t)g.n, sizeof *order, by_stack);
    if (debug == 1) {
        hp_text_put(&t, "goroutine profile: total %d\n", g.n);
        for (int i = 0; i < g.n;) {
            int j = i + 1;
            while (j < g.n && same_group(order[i], order[j]))
                j++;
            const struct gthread *th = order[i];
            hp_text_put(&t, "%d @", j - i);
            for (int d = 0; d < th->depth; d++)
                hp_text_put(&t, " %#lx", (unsigned long)(th->ips[d] - 1));
            hp_text_put(&t, "\n# labels: {\"thread\":\"%s\"}\n", th->name);
            if (!th->depth)
                hp_text_put(&t, "# heapprof: no stack: %s\n", th->note ? th->note : "unknown");
            for (int d = 0; d < th->depth; d++)
                put_frame_text(&t, sym, th->ips[d], UINT32_MAX, false);
            hp_text_put(&t, "\n");
            i = j;
        }
        hp_sym_close(sym);
        return finish_text(&t, out, outlen);
    }
    struct hp_pprof *pp = hp_pprof_begin(a, sym, false);
    if (!pp) {
        hp_sym_close(sym);
        return -ENOMEM;
    }
    int64_t key = hp_pprof_string(pp, "thread");
    for (int i = 0; i < g.n && hp_pprof_ok(pp);) {
        int j = i + 1;
        while (j < g.n && same_group(order[i], order[j]))
            j++;
        const struct gthread *th = order[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        for (int d = 0; d < th->depth; d++)
            fs[d] = (struct hp_frame){th->ips[d], UINT32_MAX, UINT32_MAX};
        int64_t count = j - i;
        struct hp_pprof_label label = {key, hp_pprof_string(pp, th->name), 0};
        if (th->depth)
            hp_pprof_sample(pp, fs, th->depth, &count, 1, &label, 1);
        i = j;
    }
    char comment[160];
    if (g.no_stack)
        snprintf(comment, sizeof comment,
                 "heapprof: %d threads have no stack here (they block heapprof's signal while "
                 "running, or could not be read): see ?debug=2",
                 g.no_stack);
    struct hp_pprof_head h = {
        .types = {{"goroutine", "count"}},
        .ntypes = 1,
        .period_type = {"goroutine", "count"},
        .period = 1,
        .time_nanos = hp_now_ns(),
        .comment = g.no_stack ? comment : NULL,
    };
    r = hp_pprof_end(pp, &h, out, outlen);
    hp_sym_close(sym);
    return r;
}

/* ---- where the live threads were created ---- */

static int note_tid(pid_t tid, void *arg)
{
    struct gset *g = arg;
    if (g->n >= MAX_THREADS)
        return 1;
    g->t[g->n++].tid = tid;
    return 0;
}

static int spawn_order(const void *x, const void *y)
{
    const struct hp_spawn *a = *(const struct hp_spawn *const *)x,
                          *b = *(const struct hp_spawn *const *)y;
    if (a->depth != b->depth)
        return a->depth < b->depth ? -1 : 1;
    return memcmp(a->ips, b->ips, (size_t)a->depth * sizeof *a->ips);
}

int hp_threadcreate_render(struct hp_arena *a, int debug, uint8_t **out, size_t *outlen)
{
    struct gset g = {.a = a};
    g.t = hp_arena_alloc(a, MAX_THREADS * sizeof *g.t);
    struct hp_spawn *sp = hp_arena_alloc(a, MAX_THREADS * sizeof *sp);
    struct hp_spawn **order = hp_arena_alloc(a, MAX_THREADS * sizeof *order);
    if (!g.t || !sp || !order)
        return -ENOMEM;
    hp_task_each(note_tid, &g);
    int unlisted = 0;
    int ns = hp_spawn_list(sp, MAX_THREADS, &unlisted), n = 0;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < g.n; k++)
            if (g.t[k].tid == sp[i].tid) {
                order[n++] = &sp[i];
                break;
            }
    qsort(order, (size_t)n, sizeof *order, spawn_order);
    struct hp_symbolizer *sym = hp_sym_open(a);
    if (debug) {
        struct hp_text t = {.a = a};
        hp_text_put(&t, "threadcreate profile: total %d\n", n);
        for (int i = 0; i < n;) {
            int j = i + 1;
            while (j < n && !spawn_order(&order[i], &order[j]))
                j++;
            const struct hp_spawn *s = order[i];
            hp_text_put(&t, "%d @", j - i);
            for (int d = 0; d < s->depth; d++)
                hp_text_put(&t, " %#lx", (unsigned long)(s->ips[d] - 1));
            hp_text_put(&t, "\n");
            for (int d = 0; d < s->depth; d++)
                put_frame_text(&t, sym, s->ips[d], s->epoch, false);
            hp_text_put(&t, "\n");
            i = j;
        }
        hp_sym_close(sym);
        return finish_text(&t, out, outlen);
    }
    struct hp_pprof *pp = hp_pprof_begin(a, sym, false);
    if (!pp) {
        hp_sym_close(sym);
        return -ENOMEM;
    }
    for (int i = 0; i < n && hp_pprof_ok(pp);) {
        int j = i + 1;
        while (j < n && !spawn_order(&order[i], &order[j]))
            j++;
        const struct hp_spawn *s = order[i];
        struct hp_frame fs[HP_SPAWN_FRAMES];
        for (int d = 0; d < s->depth; d++)
            fs[d] = (struct hp_frame){s->ips[d], UINT32_MAX, s->epoch};
        int64_t count = j - i;
        hp_pprof_sample(pp, fs, s->depth, &count, 1, NULL, 0);
        i = j;
    }
    char comment[160];
    if (unlisted)
        snprintf(comment, sizeof comment,
                 "heapprof: %d threads were created while its table was full and are not listed",
                 unlisted);
    struct hp_pprof_head h = {
        .types = {{"threadcreate", "count"}},
        .ntypes = 1,
        .period_type = {"threadcreate", "count"},
        .period = 1,
        .time_nanos = hp_now_ns(),
        .comment = unlisted ? comment : NULL,
    };
    int r = hp_pprof_end(pp, &h, out, outlen);
    hp_sym_close(sym);
    return r;
}
