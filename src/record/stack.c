/* Stack capture on the sampled path.
 *
 * The fast unwinder (record/unwind.c) takes the stack where it can;
 * elsewhere, and with HEAPPROF_UNWIND=libunwind, libunwind's unw_backtrace
 * walks it with its fast trace cache (one cache per thread, so no lock is
 * shared between threads). With HEAPPROF_UNWIND=check both take every
 * stack, libunwind's is kept, and any difference is counted. The frames of
 * heapprof itself and of libunwind are cut from the leaf end by address
 * range, not by a fixed count, so inlining in the hooks cannot shift the
 * result: the leaf is always the function that called the allocator.
 *
 * libunwind is loaded with dlopen when profiling is on (hp_stack_init, at
 * start-up), not linked: a program that preloads heapprof with
 * HEAPPROF unset never maps it (nor the liblzma it brings). RTLD_LOCAL also
 * keeps its weak backtrace() from standing in for the C library's.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include "record.h"

#include <dlfcn.h>
#include <elf.h>
#include <libunwind.h>
#include <stdio.h>
#include <link.h>
#include <string.h>
#include <ucontext.h>

struct range {
    uintptr_t lo, hi;
};
static struct range self_text, unwind_text, loader_text;

struct find_arg {
    uintptr_t base;
    struct range *out;
};

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find_arg *a = data;
    if (info->dlpi_addr != a->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        uintptr_t hi = lo + ph->p_memsz;
        if (!a->out->lo || lo < a->out->lo)
            a->out->lo = lo;
        if (hi > a->out->hi)
            a->out->hi = hi;
    }
    return 1;
}

/* The executable range of the object that holds addr. */
static void text_of(const void *addr, struct range *out)
{
    struct link_map *lm = NULL;
    Dl_info info;
    if (dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
        struct find_arg a = {lm->l_addr, out};
        hp_dl_iterate_phdr(find_text, &a);
    }
}

/* libunwind's names for these, with UNW_LOCAL_ONLY (_ULx86_64_... on
 * x86-64): the macros of libunwind.h spelled as strings. */
#define HP_STR(x) #x
#define HP_XSTR(x) HP_STR(x)

static int (*backtrace_fn)(void **, int);
/* For the CPU profiler's signal handler (hp_stack_signal). */
static int (*init_local2_fn)(unw_cursor_t *, unw_context_t *, int);
static int (*step_fn)(unw_cursor_t *);
static int (*get_reg_fn)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
static int (*is_signal_frame_fn)(unw_cursor_t *);

/* The dynamic loader's code: ld-linux-x86-64.so.2 (whatever its name, the
 * object whose file name starts with "ld-" or "ld.so"). */
static int find_loader(struct dl_phdr_info *info, size_t size, void *data)
{
    const char *base = info->dlpi_name ? hp_basename(info->dlpi_name) : "";
    if (strncmp(base, "ld-", 3) != 0 && strncmp(base, "ld.so", 5) != 0)
        return 0;
    struct find_arg a = {info->dlpi_addr, data};
    return find_text(info, size, &a);
}

bool hp_stack_init(void)
{
    void *h = hp_dl_open("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    int (*set_policy)(unw_addr_space_t, unw_caching_policy_t) =
        h ? (int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(h,
                                                                   HP_XSTR(unw_set_caching_policy))
          : NULL;
    int (*set_size)(unw_addr_space_t, size_t, int) =
        h ? (int (*)(unw_addr_space_t, size_t, int))dlsym(h, HP_XSTR(unw_set_cache_size)) : NULL;
    unw_addr_space_t *space = h ? dlsym(h, HP_XSTR(unw_local_addr_space)) : NULL;
    int (*bt)(void **, int) = h ? (int (*)(void **, int))dlsym(h, "unw_backtrace") : NULL;
    if (!set_policy || !set_size || !space || !bt) {
        hp_log("heapprof: cannot load libunwind.so.8 (%s); profiling is off",
               h ? "a function is missing" : dlerror());
        return false;
    }
    set_policy(*space, UNW_CACHE_PER_THREAD);
    set_size(*space, 4096, 0);
    text_of((const void *)hp_stack_init, &self_text);
    text_of((const void *)bt, &unwind_text);
    hp_dl_iterate_phdr(find_loader, &loader_text);
    init_local2_fn =
        (int (*)(unw_cursor_t *, unw_context_t *, int))dlsym(h, HP_XSTR(unw_init_local2));
    step_fn = (int (*)(unw_cursor_t *))dlsym(h, HP_XSTR(unw_step));
    get_reg_fn =
        (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))dlsym(h, HP_XSTR(unw_get_reg));
    is_signal_frame_fn = (int (*)(unw_cursor_t *))dlsym(h, HP_XSTR(unw_is_signal_frame));
    __atomic_store_n(&backtrace_fn, bt, __ATOMIC_RELEASE);
    return true;
}

static inline bool inside(const struct range *r, uintptr_t pc)
{
    return pc >= r->lo && pc < r->hi;
}

/* Cuts heapprof's and libunwind's frames from the leaf end of buf[0..n)
 * and copies at most max of the rest to ips. */
static int keep_program_frames(void **ips, int max, void *const *buf, int n)
{
    int skip = 0;
    while (skip < n &&
           (inside(&self_text, (uintptr_t)buf[skip]) || inside(&unwind_text, (uintptr_t)buf[skip])))
        skip++;
    int depth = n - skip;
    if (depth > max)
        depth = max;
    if (depth < 0)
        depth = 0;
    memcpy(ips, buf + skip, (size_t)depth * sizeof(void *));
    return depth;
}

/* libunwind's thread-local cache is allocated (glibc allocates a dlopen'ed
 * library's TLS with malloc, from the program's heap) at a thread's first
 * unw_backtrace. So each thread's first capture is libunwind's too, as
 * before the fast unwinder: the program's heap is laid out the same, and a
 * later fallback does not allocate in the middle of the program's work. */
static HP_TLS bool touched;

int hp_stack_capture(void **ips, int max)
{
    /* Room for heapprof's own frames, cut afterwards. */
    void *buf[HP_MAX_FRAMES + 16];
    enum { ROOM = (int)(sizeof buf / sizeof buf[0]) };
    int (*bt)(void **, int) = __atomic_load_n(&backtrace_fn, __ATOMIC_ACQUIRE);
    if (!bt)
        return 0; /* before the constructor loaded libunwind */
    int mode = hp_unwind_mode;
    int fast = -1;
    if (HP_LIKELY(mode == HP_UNWIND_FAST) && HP_LIKELY(touched)) {
        fast = hp_unwind_capture(buf, ROOM);
        if (HP_LIKELY(fast >= 0))
            return keep_program_frames(ips, max, buf, fast);
    }
    void *fast_ips[HP_MAX_FRAMES];
    int nfast = 0;
    if (mode == HP_UNWIND_CHECK) {
        fast = hp_unwind_capture(buf, ROOM);
        if (fast >= 0)
            nfast = keep_program_frames(fast_ips, max, buf, fast);
    }
    hp_loader_enter();
    int n = bt(buf, ROOM);
    hp_loader_leave();
    touched = true;
    int depth = keep_program_frames(ips, max, buf, n);
    if (mode == HP_UNWIND_CHECK && fast >= 0)
        hp_unwind_compared(fast_ips, nfast, ips, depth);
    return depth;
}

bool hp_stack_is_own(uintptr_t pc)
{
    return inside(&self_text, pc) || inside(&unwind_text, pc);
}

bool hp_stack_signal_ready(void)
{
    return __atomic_load_n(&backtrace_fn, __ATOMIC_ACQUIRE) && init_local2_fn && step_fn &&
           get_reg_fn;
}

/* The stack of the code a signal interrupted, from the signal's context:
 * libunwind starts at the interrupted instruction (UNW_INIT_SIGNAL_FRAME:
 * an exact address, not a return address) and walks out from there, so
 * neither the handler's frames nor the kernel's return trampoline appear.
 * The leaf is stored as its address + 1, so that it reads as the return
 * addresses after it do (the profile writes address - 1 for every frame).
 *
 * Only libunwind's local, signal-safe calls are used: unw_init_local2,
 * unw_step and unw_get_reg (not unw_backtrace, whose per-thread trace cache
 * is thread-local storage of a dlopen'ed library, which glibc may allocate
 * with malloc on a thread's first touch). With leaf_only, or when the
 * interrupted code is the loader's or libunwind's (the loader's lists may
 * be half-updated, and libunwind's caches are not reentrant), only the
 * leaf is taken: reading it from the context is always safe. *partial
 * says so. (The caller decides leaf_only: see cpu.c.) */
int hp_stack_signal(void *ucontext, uintptr_t *ips, int max, bool leaf_only, bool *partial)
{
    ucontext_t *uc = ucontext;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    if (max <= 0)
        return 0;
    int n = 0;
    ips[n++] = pc + 1;
    *partial = leaf_only || inside(&loader_text, pc) || inside(&unwind_text, pc);
    unw_cursor_t cursor;
    if (*partial || init_local2_fn(&cursor, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) < 0)
        return n;
    while (n < max && step_fn(&cursor) > 0) {
        unw_word_t ip;
        if (get_reg_fn(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        ips[n++] = (uintptr_t)ip;
    }
    return n;
}

/* Where the exiting thread still holds the program's data, from the
 * context saved as the exit dump began (record/exit.c): the frames from the
 * code that called exit() up, and, when exit() ran in a signal handler, the
 * frames of the code the signal interrupted (on the same stack or another),
 * each with the registers it had. What lies below those frames (exit's
 * own, the exit handlers', heapprof's) was written by the exit path over
 * what the program left there, and holds only stale copies; memcheck and
 * LeakSanitizer do not see them as live either. Registers: at the caller of
 * exit() the callee-saved ones (the others are dead across a call, by the
 * ABI); at an interrupted frame every general register. Returns false when
 * exit() is not on the stack (then nothing is filled in). */
bool hp_stack_exit_roots(void *ucontext, struct hp_exit_roots *out)
{
    if (!hp_stack_signal_ready())
        return false;
    uintptr_t exit_lo = (uintptr_t)exit, exit_hi = 0;
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (dladdr1((void *)exit, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && sym->st_size)
        exit_hi = exit_lo + sym->st_size;
    if (!exit_hi)
        return false;
    unw_cursor_t cursor;
    if (init_local2_fn(&cursor, (unw_context_t *)ucontext, 0) < 0)
        return false;
    memset(out, 0, sizeof *out);
    bool past_exit = false, after_signal = false;
    for (int depth = 0; depth < 512; depth++) {
        unw_word_t ip = 0, sp = 0;
        if (get_reg_fn(&cursor, UNW_REG_IP, &ip) < 0 || get_reg_fn(&cursor, UNW_REG_SP, &sp) < 0)
            break;
        bool signal_frame = is_signal_frame_fn && is_signal_frame_fn(&cursor) > 0;
        if (!past_exit && ip - 1 >= exit_lo && ip - 1 < exit_hi) {
            past_exit = true; /* the next frame is exit()'s caller */
        } else if (past_exit && out->npoints < HP_EXIT_POINTS && !signal_frame) {
            /* The first frame after exit(), and the first after each
             * signal frame: every frame above one of these on the same
             * stack is live. */
            bool interrupted = out->npoints > 0 && after_signal;
            bool first = out->npoints == 0;
            if (first || after_signal) {
                out->sp[out->npoints] = (uintptr_t)sp;
                out->interrupted[out->npoints] = interrupted;
                out->npoints++;
                static const int callee_saved[] = {UNW_X86_64_RBX, UNW_X86_64_RBP, UNW_X86_64_R12,
                                                   UNW_X86_64_R13, UNW_X86_64_R14, UNW_X86_64_R15};
                if (first) {
                    for (size_t r = 0; r < sizeof callee_saved / sizeof *callee_saved; r++) {
                        unw_word_t v;
                        if (out->nregs < HP_EXIT_REGS &&
                            get_reg_fn(&cursor, callee_saved[r], &v) == 0)
                            out->regs[out->nregs++] = (uintptr_t)v;
                    }
                } else {
                    for (int r = UNW_X86_64_RAX; r <= UNW_X86_64_R15; r++) {
                        unw_word_t v;
                        if (out->nregs < HP_EXIT_REGS && get_reg_fn(&cursor, r, &v) == 0)
                            out->regs[out->nregs++] = (uintptr_t)v;
                    }
                }
            }
            after_signal = false;
        }
        if (past_exit && signal_frame)
            after_signal = true;
        if (step_fn(&cursor) <= 0)
            break;
    }
    return past_exit && out->npoints > 0;
}
