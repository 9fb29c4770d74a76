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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    if (nleaks > 0 && hp_cfg.leaks_exit_code) {
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
    cpu_exit();
    if (__atomic_load_n(&hp_state, __ATOMIC_ACQUIRE) != HP_STATE_ON || !hp_report)
        return;
    if (!hp_cfg.path[0])
        return; /* HEAPPROF_HTTP alone: live profiles only */
    if (exit_stack && !hp_cfg.leaks_off && hp_cfg.leak_scan) {
        bool was = hp_busy_begin();
        roots_found = hp_stack_exit_roots(&program_ctx, &roots);
        hp_busy_end(was);
    }
    heap_exit();
    roots_found = false;
}

/* At exit, after the program's atexit handlers and C++ static destructors
 * (those run before the shared objects' destructors), so what they free is
 * not reported as leaked. */
__attribute__((destructor)) static void hp_exit_dump(void)
{
    if (__atomic_exchange_n(&exit_dumped, 1, __ATOMIC_ACQ_REL))
        return;
    if (!exit_stack) {
        exit_work();
        return;
    }
    if (getcontext(&dump_ctx) != 0) {
        exit_work();
        return;
    }
    dump_ctx.uc_stack.ss_sp = exit_stack + 4096;
    dump_ctx.uc_stack.ss_size = EXIT_STACK - 4096;
    dump_ctx.uc_link = &program_ctx; /* where exit_work returns to: back here */
    makecontext(&dump_ctx, exit_work, 0);
    swapcontext(&program_ctx, &dump_ctx);
}
