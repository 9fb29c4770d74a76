/* The exit: the CPU profile still running, the exit profile and the leak
 * summary, written once, from whichever thread called exit().
 *
 * That thread's stack is not heapprof's: a signal handler on an 8 KiB
 * alternate stack may call exit(), or a thread made with a 16 KiB stack,
 * and symbolizing, compressing and the leak check need far more. So the
 * work runs on a stack of heapprof's own, reserved at start-up
 * (hp_exit_reserve), switched to with swapcontext: the same thread, its
 * thread-local state and signal mask unchanged. The context saved by the
 * switch is where the leak check learns which of the thread's frames are
 * still the program's (hp_stack_exit_roots).
 *
 * Signals. A server stopped with Ctrl-C or kill, when it has no handler of
 * its own for SIGINT, SIGTERM or SIGHUP, dies of the signal's default
 * action, and no exit code runs. heapprof installs a handler for each of
 * those three that is at its default at start-up (not one the program's
 * parent made ignored, as nohup does); the program that later installs its
 * own, or ignores the signal, replaces it (record/cpu_hooks.c interposes
 * sigaction and signal, and shows the program the default action where
 * heapprof's handler stands). The handler writes the exit files, as exit
 * would, then puts the default action back and raises the signal again:
 * the process ends as it would have, and its parent sees the signal.
 * Writing from a signal handler is safe only where the interrupted code
 * holds no lock the dump needs: heapprof's own (its busy mark), and the
 * allocator's (the dump's libraries call malloc). The handler unwinds the
 * interrupted code and, when a frame lies in heapprof, libunwind or the
 * allocator's functions, tries again a few milliseconds later (a timer),
 * by which time the thread has left them.
 *
 * Room. A program may lower its RLIMIT_AS as it runs, to just above what
 * it uses; the exit then could not map what it needs, and the leak check's
 * copy of the process could not either. Two placeholders of address space
 * are mapped at start-up (never touched: no memory, only address space)
 * and given back at exit: the first as the dump begins, the second by the
 * leak check's child as it starts (and by the parent after the check).
 */
#define _GNU_SOURCE
#include "record.h"
#include "heapprof.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

enum {
    EXIT_STACK = 2 << 20, /* the dump touches about 200 KiB of it at most */
    ROOM = 16 << 20,      /* each placeholder */
};

static char *exit_stack;
static void *room[2];
static int exit_dumped;
static ucontext_t program_ctx, dump_ctx;
static struct hp_exit_roots roots;
static bool roots_found;
static int dying_of; /* the signal being handled, or 0 */

static void *placeholder(size_t len)
{
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void hp_exit_reserve(void)
{
    if (exit_stack)
        return;
    /* One page at the bottom left inaccessible: an overflow faults there
     * instead of writing over heapprof's other memory. */
    char *s = hp_alloc(EXIT_STACK);
    if (s && mprotect(s, 4096, PROT_NONE) == 0)
        exit_stack = s;
    else if (s)
        hp_free(s, EXIT_STACK);
    for (int i = 0; i < 2; i++)
        if (!room[i])
            room[i] = placeholder(ROOM);
}

void hp_exit_room_release(int which)
{
    if (which >= 0 && which < 2 && room[which]) {
        hp_os_unmap(room[which], ROOM);
        room[which] = NULL;
    }
}

const struct hp_exit_roots *hp_exit_roots(void)
{
    return roots_found ? &roots : NULL;
}

/* A CPU profile still running at exit: HEAPPROF_CPU's (into its file, with
 * a pid in a child) or one the API started is written; an HTTP window's is
 * dropped. */
static void cpu_exit(void)
{
    struct hp_cpu_profile p;
    if (hp_cpu_stop(HP_CPU_ANY, &p) != 0)
        return;
    char path[4096];
    int r = -1;
    if (p.owner == HP_CPU_RUN)
        r = hp_output_path(path, sizeof path, p.path, hp_cpu_run_not_root());
    else if (p.owner == HP_CPU_API)
        r = snprintf(path, sizeof path, "%s", p.path) < (int)sizeof path ? 0 : -1;
    if (r == 0 && hp_report) {
        r = hp_report->cpu_write(path, &p);
        if (r == 0 && hp_cfg.announce)
            hp_log("heapprof: wrote the CPU profile %s (see it with: go tool pprof -top %s)", path,
                   path);
    }
    hp_cpu_release(&p);
}

static void heap_exit(void)
{
    char path[4096], peak_path[4200];
    if (hp_process_path(path, sizeof path) != 0) {
        hp_log("heapprof: the profile path is too long; no profile written");
        return;
    }
    bool peak_written = false;
    if (hp_cfg.peak && hp_path_with_tag(peak_path, sizeof peak_path, path, "peak") == 0) {
        int pr = hp_report->dump_to(peak_path, HP_DUMP_PEAK, NULL);
        if (pr == -ENOENT)
            hp_log("heapprof: no peak profile: nothing was sampled");
        peak_written = pr == 0;
    }
    char tl_html[4200] = "", tl_json[4200] = "";
    if (hp_cfg.timeline)
        hp_report->timeline_write(path, tl_html, tl_json, sizeof tl_html);
    int nleaks = 0;
    int r = hp_report->dump_to(path, HP_DUMP_NOW, hp_cfg.leaks_off ? NULL : &nleaks);
    if (r == 0 && hp_cfg.announce) {
        /* Every file written, the profile first: "A", "A and B", "A, B and C". */
        const char *files[] = {path, peak_written ? peak_path : "", tl_html, tl_json};
        char list[17000];
        size_t len = 0;
        int n = 0, total = 0;
        for (size_t i = 0; i < sizeof files / sizeof *files; i++)
            total += files[i][0] != 0;
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            if (!files[i][0])
                continue;
            n++;
            const char *sep = n == 1 ? "" : n == total ? " and " : ", ";
            int w = snprintf(list + len, sizeof list - len, "%s%s", sep, files[i]);
            if (w > 0 && (size_t)w < sizeof list - len)
                len += (size_t)w;
        }
        hp_log("heapprof: wrote %s (see it with: go tool pprof -http=: %s)", list, path);
    }
    if (nleaks > 0 && hp_cfg.leaks_exit_code && !dying_of) {
        /* As LeakSanitizer's exitcode: the CI gate the user asked for.
         * Flush the program's streams first, as exit() would have. */
        fflush(NULL);
        _exit(hp_cfg.leaks_exit_code);
    }
}

/* Everything the exit does, on heapprof's stack when it has one. */
static void exit_work(void)
{
    hp_exit_room_release(0);
    hp_trace_exit(); /* before cpu_exit: a trace may hold the CPU timers */
    cpu_exit();
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) != HP_STATE_ON)
        return;
    if (!hp_cfg.path[0])
        return; /* HEAPPROF_HTTP alone: live profiles only */
    if (!hp_report_need(!dying_of))
        return;
    /* The exit's roots are for the leak check, which has nothing to do
     * when no sampled object is live (report/reach.c). */
    if (exit_stack && !dying_of && !hp_cfg.leaks_off && hp_cfg.leak_scan &&
        hp_live_count_now() > 0) {
        bool was = hp_busy_begin();
        roots_found = hp_stack_exit_roots(&program_ctx, &roots);
        hp_busy_end(was);
    }
    heap_exit();
    roots_found = false;
}

/* Runs exit_work on heapprof's own stack when it has one. */
static void run_exit_work(void)
{
    if (!exit_stack || getcontext(&dump_ctx) != 0) {
        exit_work();
        return;
    }
    dump_ctx.uc_stack.ss_sp = exit_stack + 4096;
    dump_ctx.uc_stack.ss_size = EXIT_STACK - 4096;
    dump_ctx.uc_link = &program_ctx; /* where exit_work returns to: back here */
    makecontext(&dump_ctx, exit_work, 0);
    swapcontext(&program_ctx, &dump_ctx);
}

/* At exit (record/lifecycle.c's destructor), once. */
void hp_exit_run(void)
{
    if (__atomic_exchange_n(&exit_dumped, 1, __ATOMIC_ACQ_REL))
        return;
    run_exit_work();
}

/* ---- SIGINT, SIGTERM, SIGHUP ---- */

static const int exit_signals[] = {SIGINT, SIGTERM, SIGHUP};
enum { NSIG_EXIT = 3, RETRIES = 400, RETRY_NS = 5 * 1000 * 1000 };
static volatile bool handler_stands[NSIG_EXIT];
static timer_t retry_timer[NSIG_EXIT];
static bool retry_timer_made[NSIG_EXIT];
static int retries;
static uintptr_t alloc_lo, alloc_hi; /* the allocator's exported functions, as one range */

static int exit_signal_index(int sig)
{
    for (int i = 0; i < NSIG_EXIT; i++)
        if (exit_signals[i] == sig)
            return i;
    return -1;
}

static void note_function(void *fn, const char *name)
{
    size_t size = hp_dl_function_size(fn, name);
    if (!size)
        return;
    uintptr_t lo = (uintptr_t)fn, hi = lo + size;
    if (!alloc_lo || lo < alloc_lo)
        alloc_lo = lo;
    if (hi > alloc_hi)
        alloc_hi = hi;
}

/* Whether the interrupted code may hold a lock the dump needs. */
static bool unsafe_to_dump(void *uc)
{
    bool was = hp_busy_begin();
    hp_busy_end(was);
    if (was)
        return true; /* inside heapprof */
    if (!__atomic_load_n(&hp_report, __ATOMIC_ACQUIRE) && hp_loader_inside())
        return true; /* inside dlopen: the exit would load the reporting half */
    uintptr_t ips[64];
    bool partial = false;
    int n = hp_stack_signal(uc, ips, 64, false, &partial);
    if (partial)
        return true; /* in libunwind or the loader */
    for (int i = 0; i < n; i++) {
        uintptr_t pc = ips[i] - 1;
        if (pc >= alloc_lo && pc < alloc_hi)
            return true;
        if (hp_stack_is_own(pc))
            return true;
    }
    return false;
}

static void die_of(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    /* The system call: sigaction itself is heapprof's (it would keep this
     * handler where the default is asked for). 8: the kernel's sigset. */
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } k = {SIG_DFL, 0, NULL, 0};
    (void)dfl;
    syscall(SYS_rt_sigaction, sig, &k, NULL, 8);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
    /* Pending until here if it was blocked; then delivered: never returns. */
    _exit(128 + sig);
}

static void on_exit_signal(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    int i = exit_signal_index(sig);
    if (i < 0 || !handler_stands[i] || __atomic_load_n(&exit_dumped, __ATOMIC_ACQUIRE)) {
        /* Replaced meanwhile, or the exit already under way: as if ours
         * had never been there. */
        die_of(sig);
    }
    if (unsafe_to_dump(uc) && retries < RETRIES && retry_timer_made[i]) {
        retries++;
        struct itimerspec its = {{0, 0}, {0, RETRY_NS}};
        if (timer_settime(retry_timer[i], 0, &its, NULL) == 0)
            return;
    }
    if (__atomic_exchange_n(&exit_dumped, 1, __ATOMIC_ACQ_REL))
        die_of(sig);
    dying_of = sig;
    /* The interrupted code is where the thread's data starts: its stack
     * pointer (and red zone) and its registers. */
    const ucontext_t *u = uc;
    memset(&roots, 0, sizeof roots);
    roots.npoints = 1;
    roots.sp[0] = (uintptr_t)u->uc_mcontext.gregs[REG_RSP];
    roots.interrupted[0] = true;
    for (int r = 0; r < 16 && roots.nregs < HP_EXIT_REGS; r++)
        roots.regs[roots.nregs++] = (uintptr_t)u->uc_mcontext.gregs[r];
    roots_found = true;
    run_exit_work();
    die_of(sig);
}

void hp_exit_signals_install(void)
{
    if (!hp_cfg.path[0] && !hp_cfg.cpu_path[0])
        return; /* nothing to write at exit */
    if (!alloc_lo) {
        /* The allocator behind heapprof's hooks. */
        static const char *const names[] = {"malloc",  "free",     "calloc",
                                            "realloc", "memalign", "posix_memalign",
                                            "valloc",  "pvalloc",  "malloc_usable_size"};
        for (size_t k = 0; k < sizeof names / sizeof *names; k++)
            note_function(dlsym(RTLD_NEXT, names[k]), names[k]);
    }
    hp_real_resolve();
    for (int i = 0; i < NSIG_EXIT; i++) {
        struct sigaction old;
        if (!hp_real.sigaction || hp_real.sigaction(exit_signals[i], NULL, &old) != 0 ||
            (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_SIGNAL;
        ev.sigev_signo = exit_signals[i];
        retry_timer_made[i] = timer_create(CLOCK_MONOTONIC, &ev, &retry_timer[i]) == 0;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_exit_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (hp_real.sigaction(exit_signals[i], &sa, NULL) == 0)
            handler_stands[i] = true;
    }
}

bool hp_exit_signal_set(int sig, const struct sigaction *act, struct sigaction *old_shown)
{
    int i = exit_signal_index(sig);
    if (i < 0 || !handler_stands[i])
        return false;
    if (old_shown) {
        memset(old_shown, 0, sizeof *old_shown);
        old_shown->sa_handler = SIG_DFL;
    }
    if (act && !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL)
        return true; /* the default: heapprof's handler ends as it would */
    if (act)
        handler_stands[i] = false; /* the program's own, or ignored */
    return true;
}
