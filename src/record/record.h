/* The recording half's own interfaces (src/record/): the hooks, the
 * sampler, stack capture, the stack table and the live set. Nothing here is
 * seen by the reporting half.
 */
#ifndef HP_RECORD_H
#define HP_RECORD_H

#include "iface.h"

#include <signal.h>

/* ---- per-thread state and the sampler (record/sampler.c) ---- */
struct hp_thread {
    /* Bytes left before the next sample; the fast path only decrements it. */
    int64_t countdown;
    uint64_t rng[4];
    bool ready;
    /* Set while heapprof itself runs on this thread: allocations made then
     * (by libunwind, libdw, zlib, the dump) are forwarded, not recorded. */
    bool busy;
    /* In the list of running threads whose pending bytes hp_allocated_bytes
     * adds up (thread.c). */
    bool listed;
    /* Bytes allocated (sampler.c): the countdown when the thread last added
     * what it allocated to the total, and when it last became busy. */
    int64_t counted_at;
    int64_t busy_mark;
};
extern HP_TLS struct hp_thread hp_thread;

void hp_init(void);
void hp_config_startup(char **envp); /* record/config.c */
/* The process (record/process.c): noted at start-up; a forked child is not
 * the root of the profiled tree. */
void hp_process_start(void);
void hp_process_child(void);
bool hp_parent_is_profiled(const char *name, const char *value);
/* The peak estimate (record/peak.c). */
void hp_peak_init(void);
void hp_peak_track(uint64_t size, int sign);
/* The exit's own stack and room (record/exit.c), reserved at start-up. */
void hp_exit_reserve(void);
void hp_exit_run(void); /* the exit files, once (from lifecycle.c's destructor) */
/* SIGINT, SIGTERM and SIGHUP at their default: a handler that writes the
 * exit files, then dies of the signal (record/exit.c). */
void hp_exit_signals_install(void);
/* For the interposed sigaction and signal: true when heapprof's handler
 * stands for sig; then *old_shown is what the program would see (the
 * default), and act, unless it asks for the default, replaces it. */
bool hp_exit_signal_set(int sig, const struct sigaction *act, struct sigaction *old_shown);
/* What the program's own sbrk, brk, madvise and munmap calls did
 * (record/regions.c). */
void hp_regions_brk(uintptr_t from, uintptr_t to);
void hp_regions_madvise(uintptr_t lo, size_t len, int advice);
void hp_regions_unmap(uintptr_t lo, size_t len);
void hp_regions_child(void);
/* Called when the countdown went negative: decides whether the allocation of
 * size bytes is sampled, and redraws the countdown. */
bool hp_sampler_take(size_t size);
void hp_rng_seed(uint64_t rng[4], uint64_t seed);
uint64_t hp_rng_next(uint64_t rng[4]);
/* A gap drawn from an exponential distribution of mean `rate` bytes. */
int64_t hp_sampler_gap(uint64_t rng[4], long rate);
void hp_sampler_child(void);
/* hp_busy_end's part: what the thread allocated while busy (since
 * hp_busy_begin noted busy_mark) is heapprof's, not the program's. */
void hp_count_allocated(struct hp_thread *t);
void hp_count_join(struct hp_thread *t);
void hp_thread_child(void);
static inline void hp_sampler_unbusy(void)
{
    hp_thread.counted_at -= hp_thread.busy_mark - hp_thread.countdown;
}
/* hp_busy_begin and hp_busy_end (iface.h) inline, for the sampled path:
 * the exported ones are called through the PLT. */
static inline bool hp_busy_enter(void)
{
    bool was = hp_thread.busy;
    if (!was)
        hp_thread.busy_mark = hp_thread.countdown;
    hp_thread.busy = true;
    return was;
}
static inline void hp_busy_leave(bool was)
{
    if (!was)
        hp_sampler_unbusy();
    hp_thread.busy = was;
}
/* Go's unbiasing: the expected number of allocations of `size` bytes that one
 * sample of that size stands for, at the given rate. */
double hp_unbias_scale(uint64_t size, long rate);

/* ---- stack capture (record/stack.c) ---- */
/* Loads libunwind; false (and one line said) if it cannot. */
bool hp_stack_init(void);
int hp_stack_capture(void **ips, int max);
/* For the CPU profiler (cpu.c): whether the signal-frame unwinder loaded,
 * and the stack of the code a signal interrupted (async-signal-safe; with
 * leaf_only, or where unwinding is not safe, only the leaf: *partial). */
bool hp_stack_signal_ready(void);
int hp_stack_signal(void *ucontext, uintptr_t *ips, int max, bool leaf_only, bool *partial);
bool hp_stack_exit_roots(void *ucontext, struct hp_exit_roots *out);
bool hp_stack_is_own(uintptr_t pc); /* in heapprof's or libunwind's code */

/* ---- the fast unwinder (record/unwind.c) ---- */
/* At start-up (lifecycle.c), with HEAPPROF_UNWIND's value and the memory
 * the tables and caches may take. */
void hp_unwind_init(const char *mode, size_t share);
extern int hp_unwind_mode; /* enum hp_unwind_mode (iface.h) */
/* The return addresses of the calling stack, the caller's own first, into
 * ips (at most max); -1 (and the reason counted) where libunwind must do
 * the capture instead. Never faults, never allocates from the program's
 * heap; not async-signal-safe (it may build a module's table). */
int hp_unwind_capture(void **ips, int max);
/* Counts a capture the fast unwinder did not do, with its reason. */
void hp_unwind_count(int reason);
/* Check mode (HEAPPROF_UNWIND=check): one comparison of the two unwinders'
 * stacks (after heapprof's own frames are cut). */
void hp_unwind_compared(void *const *fast, int nfast, void *const *slow, int nslow);
/* After a dlopen (interpose/loader.c): the next capture looks for new
 * modules. Around the real dlclose: captures meanwhile go to libunwind,
 * and the modules that went are dropped after it. */
void hp_unwind_opened(void);
void hp_unwind_closing(void);
void hp_unwind_closed(void);
void hp_unwind_child(void);
/* Check mode: one line on stderr with the counts (from the destructor). */
void hp_unwind_exit_report(void);

/* ---- the stack table (record/table.c) ---- */
void hp_table_init(void);
void hp_table_lock(void);
void hp_table_unlock(void);
void hp_table_child(void);
/* Whether a recorded stack has a frame in [lo, hi). */
bool hp_table_has_pc_in(uintptr_t lo, uintptr_t hi);
/* Finds or adds the bucket for (stack, size class, label set), counts one
 * sampled allocation of size bytes; its number, or 0 when out of memory. */
uint32_t hp_table_record(void **ips, int depth, uint64_t size, uint32_t labels);
struct hp_bucket *hp_bucket_at(uint32_t bucket);

/* A bucket: the sampled allocations of one stack in one size class. Its
 * counts (samples, and their unbiased weights: each sample of s bytes adds
 * 1/p(s) and s/p(s)) are kept beside it, in stripes (table.c). Never
 * freed. */
struct hp_bucket {
    uint32_t stack;     /* the stack's leaf node (hp_stack_frames) */
    uint32_t next : 24; /* the stack's next older bucket, 0: none */
    uint32_t cls : 8;   /* size class: bit length of the size */
    uint32_t labels;    /* label set (record/labels.c) */
};
enum { HP_MAX_BUCKETS = 1 << 24 };
/* Peak tracking: copies the counts of every bucket. */
void hp_peak_capture(void);

/* ---- asymmetric barriers (record/asym.c) ---- */
/* The fast side orders a store before a later load for the compiler only;
 * hp_asym_heavy makes every CPU running a thread of the process pass a full
 * barrier, so that after it either the fast side's store is seen or its
 * load sees what the caller stored before. false if it could not. */
#if defined(__x86_64__)
#define HP_ASYM_CHEAP 1
#define hp_asym_light() __atomic_signal_fence(__ATOMIC_SEQ_CST)
#else
#define HP_ASYM_CHEAP 0
#define hp_asym_light() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
bool hp_asym_heavy(void);

/* ---- the live set (record/live.c) ---- */
/* A sampled object: its bucket (0: none), requested size, and whether it
 * carries a header (interpose/alloc.c), which frees find it by: the
 * filters below then leave it out. */
struct hp_live_rec {
    uint32_t bucket;
    bool headed;
    uint64_t size;
};
/* false if p could not be tracked (out of memory). */
bool hp_live_insert(void *p, struct hp_live_rec rec);
/* Takes p off the live set if it was sampled; .bucket 0 if it was not. */
struct hp_live_rec hp_live_remove(void *p);
struct hp_snap_bucket;
/* The leak check's lost objects (record/live.c): numbers the distinct
 * (bucket, verdict) pairs of live objects definitely or indirectly lost, in
 * lost[bucket * 2 + verdict - HP_V_DEFINITE] (all UINT32_MAX before), for
 * buckets below n; returns how many. */
uint32_t hp_live_lost_pairs(uint32_t *lost, uint32_t n);
/* Adds every live sampled object of buckets below n to sb[pos[bucket]]:
 * .live and the in-use weights w[2], w[3]. With lost (numbered by
 * hp_live_lost_pairs), a lost object goes to sb[lost_at + its number]. */
void hp_live_sum(struct hp_snap_bucket *sb, const uint32_t *pos, uint32_t n, long rate,
                 const uint32_t *lost, size_t lost_at);
/* Adds the in-use bytes (estimated) of every live sampled object of buckets
 * below n to bytes[bucket]. */
void hp_live_inuse(double *bytes, uint32_t n, long rate);
/* The free path's test (see live.c): false means p was certainly not
 * sampled. Inline, since every free runs it. First a bitmap of the 512-byte
 * blocks of address space that hold a live sample (512K bits, 64 KiB,
 * covering 256 MiB; blocks further apart share bits): blocks map to bits in
 * address order, so the frees of a working set read a few of its lines, and
 * blocks this small hold few other objects beside a sampled one. Only where
 * a bit is set, the finer filter: a counter in a 64-byte line chosen by p's
 * page, picked by p's offset in it. */
enum { HP_BLOCK_SHIFT = 9, HP_BLOCK_BITS = 19, HP_FILTER_LINE_BITS = 13, HP_FILTER_PER_LINE = 32 };
extern uint64_t hp_block_bits[(1u << HP_BLOCK_BITS) / 64];
extern uint16_t hp_filter[(1u << HP_FILTER_LINE_BITS) * HP_FILTER_PER_LINE];
static inline uint64_t hp_page_hash(const void *p)
{
    return (uint64_t)((uintptr_t)p >> 12) * 0x9e3779b97f4a7c15ull;
}
static inline uint32_t hp_block_index(const void *p)
{
    /* A free in a block that shares a bit with a sampled object's block
     * only goes on to the second filter. */
    return (uint32_t)((uintptr_t)p >> HP_BLOCK_SHIFT) & ((1u << HP_BLOCK_BITS) - 1);
}
static inline uint16_t *hp_filter_slot(const void *p)
{
    uint64_t line = hp_page_hash(p) >> (64 - HP_FILTER_LINE_BITS);
    /* The counter from all the address's bits within its page: objects of
     * one size class are spaced evenly (every 512 bytes, say), so a few low
     * bits alone would put all of a page's objects on one counter. */
    uint32_t in_page = (uint32_t)(((uintptr_t)p >> 4) & 0xff) * 0x9e3779b1u;
    return &hp_filter[line * HP_FILTER_PER_LINE + (in_page >> 27)];
}
/* 1 while any bit of hp_block_bits is set (always, in exact mode), else 0:
 * 0 while no sampled object is live. A cache line of its own. free()
 * reads it before the bitmap: over mimalloc, where a 32-byte malloc/free
 * pair takes 3 ns, this load (one RIP-relative mov) cost 1 to 2 points of
 * the pair, where the bitmap's indexed load, or any load through a register
 * (a lea, then a mov), cost 10 (bench/README.md). */
struct hp_block_set {
    unsigned long n;
    void (*free_next)(void *); /* see interpose/alloc.c */
} __attribute__((aligned(64)));
/* Hidden, so that the compiler loads it directly and not through the GOT. */
extern struct hp_block_set hp_block_set __attribute__((visibility("hidden")));
static inline bool hp_block_maybe(const void *p)
{
    if (HP_LIKELY(!__atomic_load_n(&hp_block_set.n, __ATOMIC_RELAXED)))
        return false;
    uint32_t i = hp_block_index(p);
    return __atomic_load_n(&hp_block_bits[i / 64], __ATOMIC_RELAXED) >> (i % 64) & 1;
}
static inline bool hp_filter_maybe(const void *p)
{
    return __atomic_load_n(hp_filter_slot(p), __ATOMIC_RELAXED) != 0;
}
/* Where free() goes when its pointer has no header (interpose/alloc.c):
 * the filters while hp_block_set.n is 1, else straight to the allocator.
 * Called with block_set's lock held, by live.c as the flag changes, and
 * through hp_live_route once the allocator is known. */
void hp_free_route(bool filtered);
void hp_live_route(void);
/* Exact mode: every page marked, the filters not kept (hp_live_init). */
extern bool hp_live_all;
void hp_live_init(bool all);
static inline bool hp_live_maybe(const void *p)
{
    return hp_block_maybe(p) && (hp_live_all || hp_filter_maybe(p));
}
/* Sets the page bits of [p, p + len) for good: free() then looks closer at
 * every block there. */
void hp_live_pin(const void *p, size_t len);
void hp_live_lock_all(void);
void hp_live_unlock_all(void);
void hp_live_child(void);

/* The program's threads (record/threads.c). */
void hp_threads_init(void);
/* ---- where threads were created (spawn.c) ---- */
/* Whether pthread_create should take its caller's stack: profiling is on
 * and the thread is not heapprof's own. */
bool hp_spawn_wanted(void);
/* The calling stack (pthread_create's caller at the leaf) into ips. */
int hp_spawn_capture(uintptr_t *ips, int max);
/* In the new thread, first thing: notes it as created at ips; its entry is
 * dropped when it exits. */
void hp_spawn_begin(const uintptr_t *ips, int depth);
void hp_threads_seen(void);
/* The mapping that holds the calling thread's stack (looked for once per
 * thread, then kept); false when it cannot be found. */
bool hp_threads_bounds(uintptr_t *lo, uintptr_t *hi);
/* Inside the program's pthread_getattr_np (interpose/threads.c); a thread
 * whose stack is still to be noted. */
extern HP_TLS int hp_in_getattr;
extern HP_TLS bool hp_threads_pending; /* at a thread's first allocation, profiling on */
void hp_threads_child(void);

/* The whole sampled-allocation path and the free path (record/core.c). */
void hp_on_alloc(void *p, size_t size, bool headed);
/* Takes p off the live set if it was sampled; .bucket 0 if it was not. */
struct hp_live_rec hp_on_free(void *p);
/* After a dlopen with RTLD_DEEPBIND: sampled objects get no header from
 * then on (interpose/alloc.c), as that library's frees bypass heapprof. */
void hp_heads_stop(void);
/* Undoes hp_on_free after a failed realloc. */
void hp_on_unfree(void *p, struct hp_live_rec rec);

/* The reporting half, once loaded (NULL before, or if it could not be). */
extern const struct hp_report *hp_report;
/* At start-up: whether it is there to load (false: one line said why).
 * Then hp_report_need loads it the first time (record/reporting.c): NULL
 * if it cannot be loaded (one line says so), or, without may_wait, while
 * another call is loading it. hp_report_child: in a forked child. */
bool hp_report_find(void);
const struct hp_report *hp_report_need(bool may_wait);
void hp_report_child(void);

/* ---- CPU profiles (record/cpu.c) ---- */
/* A whole-run profile's file gets a pid (a forked child, or a program exec'd
 * by a profiled one). */
bool hp_cpu_run_not_root(void);
void hp_cpu_set_not_root(bool v);
/* Loads what CPU profiles need when the heap profiler did not (libunwind,
 * the reporting half): 0 or -ENOTSUP (record/core.c). */
int hp_cpu_support(void);
/* For interpose/threads.c and signals.c: whether a new thread must be wrapped, the wrapped
 * thread's first step, and the program setting SIGPROF's disposition (act
 * NULL: through signal()). */
bool hp_cpu_create_begin(void); /* true: wrap the new thread */
void hp_cpu_create_end(void);
/* Called with each CPU sample's stack while an execution trace runs. */
extern void (*hp_cpu_tap)(const uintptr_t *ips, int depth);
/* An execution trace's samples (record/trace.c): hz > 0 runs the timers at
 * least that fast, beside a CPU profile or not, and returns their rate;
 * 0 lets them go back to the profile's rate, or stop. Or -errno. */
int hp_cpu_trace(int hz);
/* CPU profiles started so far; the running one's rate (0: none) and the
 * last one's. */
uint32_t hp_cpu_profiles(int *running_hz, int *last_hz);
/* Calls of dl_iterate_phdr under way on this thread (interpose/loader.c). */
extern HP_TLS int hp_in_dl_iterate;
void hp_cpu_thread_begin(void);
struct sigaction;
void hp_cpu_sigprof_set(const struct sigaction *act);

/* ---- lock contention and blocking (record/contention.c) ---- */
/* A kept event, charged to the calling thread's stack: count events and
 * delay ns, already unbiased. */
void hp_cont_record(enum hp_cont_kind kind, double count, double delay);
/* A wait of d ns, kept or not by the block profile's rate; fd: the
 * descriptor waited on (non-blocking ones did not block), -1 for none,
 * HP_CONT_NEVER for a call that never blocks. */
enum { HP_CONT_NEVER = 1 << 30 };
void hp_cont_block(int64_t rate, int64_t d, int fd);
uint64_t hp_cont_random(void); /* per thread */
void hp_cont_child(void);

/* ---- labels (record/labels.c) ---- */
/* The calling thread's label set now: its name and pushed labels. */
uint32_t hp_labels_current(void);
int hp_labels_push(const char *key, const char *value);
void hp_labels_pop(void);
void hp_labels_renamed(void);
void hp_labels_lock(void); /* around fork */
void hp_labels_unlock(void);
void hp_labels_child(void);

/* ---- the loader (record/dl.c) ---- */
extern uint32_t hp_dl_epoch;
/* Around anything that takes glibc's loader lock (unwinding, dlopen,
 * dlclose): fork waits until no thread is inside. */
void hp_loader_enter(void);
/* hp_dl_closing: before a dlclose (interpose/loader.c). heapprof's own
 * dlopen and dl_iterate_phdr (and the interposed ones' work) are in
 * iface.h. */
void hp_dl_closing(void *handle, bool (*recorded_in)(uintptr_t lo, uintptr_t hi));
void hp_loader_leave(void);
bool hp_loader_try_enter(void); /* never waits: for signal handlers */
bool hp_loader_inside(void);    /* this thread is inside a loader section */
void hp_loader_fork_prepare(void);
void hp_loader_fork_parent(void);
void hp_loader_fork_child(void);
/* Without dladdr, which reads every symbol of an object: the path of the
 * object that holds addr (the loader's string; NULL for the program or when
 * none does), and the size of the function fn, defined under name in the
 * object that holds it (0 when its symbol table cannot say). */
const char *hp_dl_path_of(const void *addr);
/* After a dlopen with RTLD_DEEPBIND: points the GOT slots of the library
 * and of what that dlopen loaded, for each name, at fn (x86-64 only). */
struct hp_rebind {
    const char *name;
    void *fn;
};
void hp_dl_rebind(void *handle, const struct hp_rebind *to, int n);
size_t hp_dl_function_size(const void *fn, const char *name);

/* ---- execution traces (record/trace.c) ---- */
/* Set while a trace runs: the only test the hooks make outside one. */
extern int hp_trace_on;
#define HP_TRACING() HP_UNLIKELY(__atomic_load_n(&hp_trace_on, __ATOMIC_RELAXED))
/* Async-signal-safe: the CPU handler's sample (leaf + 1 first, as cpu.c keeps it). */
void hp_trace_cpu_sample(const uintptr_t *ips, int depth);
void hp_trace_push(const char *key, const char *value);
void hp_trace_pop(void);
void hp_trace_event(enum hp_tev_kind kind, int32_t a, const char *text);
void hp_trace_alloc(void *const *ips, int depth, uint64_t size);
void hp_trace_free(uint64_t size);
bool hp_trace_wrap_threads(void);
/* Before an exec (interpose/exec.c): the event, and a trace going to a
 * file written, since the new image has none of its buffers. */
void hp_trace_exec(const char *what);
/* HEAPPROF_TRACE: starts the whole-run trace (record/lifecycle.c). */
void hp_trace_run_start(void);
/* At exit: a trace still running is written (RUN, API) or dropped. */
void hp_trace_exit(void);
void hp_trace_child(void);

#endif
