/* The seam between heapprof's two halves: all the reporting half
 * (src/report/, libheapprof-report.so) knows of the recording half
 * (src/record/, libheapprof.so), and the few entry points the recording
 * half calls back.
 *
 * The recording half offers: a snapshot of its tables (buckets of sampled
 * objects with their unbiased weights, grouped by stack), the frames of a
 * stack, the libraries unloaded since start-up (for naming their frames),
 * and facts about the process (its output paths, its start, whether
 * profiling is on). The reporting half offers struct hp_report, found with
 * dlsym when it is loaded (record/core.c).
 */
#ifndef HP_IFACE_H
#define HP_IFACE_H

#include "hp.h"

HP_SHARED_BEGIN

/* ---- the process (record/core.c) ---- */
extern volatile int hp_state; /* enum hp_state_value */
enum hp_state_value { HP_STATE_UNINIT = 0, HP_STATE_INITING, HP_STATE_OFF, HP_STATE_ON };
/* This process's profile path (HEAPPROF with %p expanded and, in a child,
 * the pid added). */
int hp_process_path(char *out, size_t len);
/* This process's leak summary path: HEAPPROF_LEAKS named by the same rule,
 * except that a path written in place (hp_path_in_place) gets no pid. */
int hp_process_leaks_path(char *out, size_t len);
int64_t hp_start_ns(void);
/* The arguments the program started with (NUL-separated), before any
 * rewrite of its title; NULL if unknown. */
const char *hp_start_cmdline(size_t *len);
/* The path the program was run by when it is not the executable's own (a
 * symlink), else NULL: the main executable's mappings are named so. */
const char *hp_run_as(void);
/* Marks the calling thread as heapprof's own: what it allocates until the
 * matching hp_busy_end is forwarded, not recorded. Returns the old mark. */
bool hp_busy_begin(void);
void hp_busy_end(bool was);
/* Peak tracking: on, and the estimate at its highest and when copied. */
extern bool hp_peak_on;
void hp_peak_levels(int64_t *seen, int64_t *copied);

/* ---- the thread running the exit dump (record/exit.c) ---- */
/* Where it still holds the program's data (record/stack.c says how they
 * are found): each sp[i] and up, on whatever stack it is (with the 128
 * bytes below it when it is code a signal interrupted), and the registers
 * of those frames. */
enum { HP_EXIT_POINTS = 4, HP_EXIT_REGS = 64 };
struct hp_exit_roots {
    int npoints;
    uintptr_t sp[HP_EXIT_POINTS];
    bool interrupted[HP_EXIT_POINTS];
    int nregs;
    uintptr_t regs[HP_EXIT_REGS];
};
/* NULL outside the exit dump, or when exit() was not found on the stack
 * (then the leak check reads the dumping thread's stack from its own frames
 * up, as for any other dump). */
const struct hp_exit_roots *hp_exit_roots(void);
/* Gives back placeholder `which` (0 or 1) of address space reserved for the
 * exit (see record/exit.c): 1 is the leak check's. */
void hp_exit_room_release(int which);

struct sigaction;
/* ---- signals and the loader, as heapprof's own code must call them ---- */
/* sigaction for a signal the program could take too (record/signals.c): the
 * CPU profiler and the exit handler see it, as they see the program's. */
int hp_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
/* log and exp(x) - 1, heapprof's own (record/math.c): neither half links
 * libm. */
double hp_math_log(double x);
double hp_math_expm1(double x);
/* dl_iterate_phdr inside the loader guard, counted (record/dl.c). */
struct dl_phdr_info;
int hp_dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data);
/* dlopen inside the loader guard; libdebuginfod refused while heapprof
 * works (record/dl.c). */
void *hp_dl_open(const char *file, int mode);

/* ---- memory the program took without malloc (record/regions.c) ---- */
/* The ranges it took with sbrk/brk: its own, although inside the mapping
 * the kernel calls [heap] that malloc's main arena lives in. Returns how
 * many there are; fills in at most max (lo, hi pairs). */
int hp_brk_ranges(uintptr_t *out, int max);
/* The ranges it marked MADV_DONTFORK or MADV_WIPEONFORK, which a copy made
 * by fork would not have: (lo, hi, advice) triples, as for hp_brk_ranges. */
int hp_fork_marks(uintptr_t *out, int max);

/* ---- the sampler (record/sampler.c) ---- */
/* The bytes the program allocated since profiling started (sizes as asked
 * for, every allocation, sampled or not; heapprof's own left out). */
uint64_t hp_allocated_bytes(void);

/* ---- stacks (record/table.c) ---- */
/* One frame of a recorded stack: the return address, its node in the tree
 * of frames, and the dlclose calls seen when that node was made (addresses
 * in libraries unloaded since then get the names they had then). */
struct hp_frame {
    uintptr_t ip;
    uint32_t node;
    uint32_t epoch;
};
/* The frames of a stack, leaf first; returns the depth. */
int hp_stack_frames(uint32_t stack, struct hp_frame *out, int max);
/* One frame, node's own; returns its caller's node (0 past the outermost). */
uint32_t hp_stack_frame(uint32_t node, struct hp_frame *out);
uint32_t hp_table_nodes(void); /* nodes so far: node numbers are below */
bool hp_table_folded(void);    /* some stack went to [other] */
/* The single frame of the stack that new stacks fold into once the table
 * reaches HEAPPROF_MAX_MEMORY; named "[other]". */
#define HP_OTHER_IP ((uintptr_t)1)

/* ---- snapshots (record/table.c) ---- */
/* What the leak check (report/reach.c) found of a live object at exit:
 * nothing yet, lost (nothing points to it, or only other lost objects do),
 * or still reachable (in sampled mode: still referenced). */
enum hp_verdict { HP_V_NONE = 0, HP_V_DEFINITE, HP_V_INDIRECT, HP_V_REACHABLE, HP_NVERDICTS };
/* The four values of a heap sample, in the profile's order. */
enum hp_value {
    HP_ALLOC_OBJECTS = 0,
    HP_ALLOC_SPACE,
    HP_INUSE_OBJECTS,
    HP_INUSE_SPACE,
    HP_NVALUES
};
struct hp_snap_bucket {
    uint32_t bucket;  /* its number */
    uint32_t stack;   /* leaf node */
    uint32_t labels;  /* label set (hp_labelset_at) */
    uint32_t verdict; /* enum hp_verdict. In a snapshot taken with verdicts,
                       * HP_V_NONE is the bucket's entry (its counts, and
                       * its objects still reachable); HP_V_DEFINITE and
                       * HP_V_INDIRECT entries hold only its lost objects */
    int64_t allocs;   /* sampled objects allocated (in a delta: in the window) */
    int64_t live;     /* sampled objects in use (in a delta: the change) */
    /* Unbiased estimates, unrounded: alloc_objects, alloc_space,
     * inuse_objects, inuse_space; est[] the same as written to the profile
     * (hp_snapshot_estimate). */
    double w[HP_NVALUES];
    int64_t est[HP_NVALUES];
    /* The estimator's variance for inuse_space, estimated from the live
     * samples: sum of s^2 (1-p)/p^2 (0 in exact mode, and in copies). */
    double var_inuse;
};
struct hp_snapshot {
    struct hp_arena arena;
    long rate;
    size_t nbuckets;
    struct hp_snap_bucket *buckets;
    const char *comment; /* NULL, or a line for the profile's comments */
    int64_t time_ns;     /* when taken (real-time clock); 0 for a copy of the peak */
    int64_t since_ns;    /* a delta's start: its base's time_ns; 0 otherwise */
    bool verdicts;       /* taken with verdicts (hp_snapshot_take_verdicts) */
};
/* The bucket's average object size (estimated), for the "bytes" label. */
uint64_t hp_snap_avg_size(const struct hp_snap_bucket *b);
int hp_snapshot_take(struct hp_snapshot *s);
/* The same, with each bucket's lost live objects (hp_live_set_verdict) in
 * entries of their own, one per verdict; objects without one are reachable
 * and stay on the bucket's entry. s->verdicts is set. */
int hp_snapshot_take_verdicts(struct hp_snapshot *s);
/* The tables as they were when the estimated in-use bytes last set a peak
 * (see core.c); -ENOENT when peak tracking is off or nothing was captured. */
int hp_snapshot_peak(struct hp_snapshot *s);
/* Turns s into s minus base (same process, base taken earlier). */
int hp_snapshot_delta(struct hp_snapshot *s, const struct hp_snapshot *base);
void hp_snapshot_release(struct hp_snapshot *s);
/* Groups the buckets by stack (unless they are) and fills in their estimates. The
 * take/peak/delta functions call it; a hand-made snapshot must. */
void hp_snapshot_estimate(struct hp_snapshot *s);

/* ---- the timeline's walk (record/table.c) ---- */
/* Fills bytes[0..n) with each bucket's estimated in-use bytes and returns
 * n, the number of buckets so far; when n > cap, returns n and fills
 * nothing (ask again with room for n). */
uint32_t hp_table_inuse(double *bytes, uint32_t cap);
uint32_t hp_bucket_stack(uint32_t bucket); /* its stack's leaf node */

/* ---- label sets (record/labels.c) ---- */
/* A thread's name and the labels in force, interned: a bucket's key holds
 * its number (0: no labels). Never freed. */
struct hp_labelset {
    uint32_t id;
    int n;              /* key=value pairs */
    const char *thread; /* NULL when unknown */
    const char *kv[];   /* key, value, key, value, ... */
};
const struct hp_labelset *hp_labelset_at(uint32_t id); /* NULL for 0 */

/* ---- the live set, for the leak check (record/live.c) ---- */
struct hp_live_obj {
    uintptr_t start;
    uint64_t size; /* as requested */
};
/* The live sampled objects: their number, and up to max of them copied into
 * out. Without locks: for a child forked by hp_freeze_fork only, where no
 * other thread runs and the parent held every lock at the fork. */
size_t hp_live_count_frozen(void);
/* Their number now, from any thread: the live set's locks are taken. */
size_t hp_live_count_now(void);
size_t hp_live_copy_frozen(struct hp_live_obj *out, size_t max);
/* The usable size of the program's block at p, as malloc_usable_size
 * gives it to the program: a sampled block with a header
 * (interpose/alloc.c) starts 16 or 32 bytes into the allocator's. */
size_t hp_usable_size(void *p);
/* Gives the live object at p a verdict; false if p is not live. */
bool hp_live_set_verdict(const void *p, enum hp_verdict v);

/* A copy of the process that holds still: a child made with clone() and no
 * exit signal (so no SIGCHLD reaches the program, and its waitpid(-1) never
 * sees it; wait for it with __WALL), without the atfork handlers (the
 * program's would run at exit). The parent holds heapprof's locks across
 * it, so the child's copies of the live set and of heapprof's own memory are
 * whole. In the child: no malloc, no stdio, no locks but heapprof's own.
 * Returns as fork does. */
pid_t hp_freeze_fork(void);
/* The same in three steps, for a caller that has work to do while the locks
 * are held (report/reach.c holds the program's running threads): take the
 * locks, make the copy (in the child the locks are reset), give them back
 * (in the parent only). */
void hp_freeze_hold(void);
pid_t hp_freeze_clone(void);
void hp_freeze_release(void);

/* ---- the program's threads (record/threads.c) ---- */
struct hp_thread_stack {
    pid_t tid;
    bool alive;       /* false: the thread exited; its stack holds stale data */
    uintptr_t lo, hi; /* the stack block, its static TLS included */
};
int hp_threads_list(struct hp_thread_stack *out, int max);

/* ---- the fast unwinder (record/unwind.c) ---- */
enum hp_unwind_mode { HP_UNWIND_FAST, HP_UNWIND_LIBUNWIND, HP_UNWIND_CHECK };
/* Why a capture went to libunwind (counted; hp_unwind_reason names them). */
enum {
    HP_UW_STACK,  /* the stack is not the thread's known one (a signal stack, a coroutine) */
    HP_UW_MODULE, /* a return address in no loaded module */
    HP_UW_TABLE,  /* a module without usable .eh_frame_hdr, or over the memory share */
    HP_UW_BUSY,   /* a table being built by another thread, or a dlclose under way */
    HP_UW_ROW,    /* an address no FDE covers */
    HP_UW_RULE,   /* a rule the fast unwinder does not follow (expressions, registers) */
    HP_UW_SIGNAL, /* a signal frame */
    HP_UW_BOUNDS, /* a read that would leave the stack, or a frame that does not climb */
    HP_UW_REASONS
};
struct hp_unwind_stats {
    int mode;                         /* enum hp_unwind_mode */
    uint64_t fast;                    /* captures done by the fast unwinder */
    uint64_t fallback[HP_UW_REASONS]; /* captures done by libunwind, by reason */
    uint64_t compared, mismatches;    /* check mode */
    uint32_t modules, tables;         /* modules known, and with a table built */
    size_t bytes;                     /* tables and per-thread caches */
};
void hp_unwind_stats(struct hp_unwind_stats *out);
const char *hp_unwind_reason(int reason);

/* ---- heapprof's own memory ---- */
size_t hp_table_bytes(void); /* the stack table's (record/table.c) */
size_t hp_live_bytes(void);  /* the live set's slots (record/live.c) */

/* ---- libraries unloaded with dlclose (record/dl.c) ---- */
/* Kept so that the frames recorded in them can be named at a dump: the file
 * is read then, not in dlclose. The list only grows at its head, and its
 * entries never change. */
struct hp_unloaded {
    const struct hp_unloaded *next;
    const char *path;
    uintptr_t bias, lo, hi; /* load bias, and the code's address range */
    uint64_t offset;        /* file offset of the code's mapping */
    char build_id[129];     /* lowercase hex, or "" */
    /* dlclose calls counted when it was unloaded: a frame recorded at an
     * earlier epoch, inside [lo, hi), was in this library. */
    uint32_t epoch;
};
const struct hp_unloaded *hp_unloaded_list(void);

/* ---- CPU profiles (record/cpu.c) ---- */
/* Who started the running profile: one runs at a time. */
enum hp_cpu_owner { HP_CPU_NONE = 0, HP_CPU_RUN, HP_CPU_API, HP_CPU_HTTP, HP_CPU_ANY };
/* A stack and its samples. The leaf is stored as its address + 1, so that
 * every frame reads as a return address (the writer takes 1 off each). */
struct hp_cpu_stack {
    int64_t count;
    uint32_t epoch; /* dlclose calls counted when it was first drained */
    int depth;
    uintptr_t ips[];
};
struct hp_cpu_profile {
    struct hp_arena arena;
    enum hp_cpu_owner owner;
    int hz;
    int64_t start_ns, end_ns; /* real-time clock */
    size_t nstacks;
    struct hp_cpu_stack **stacks;
    int64_t samples;   /* in the stacks */
    int64_t dropped;   /* taken but not counted (cpu.c says when) */
    int64_t leaf_only; /* counted with their leaf frame only (cpu.c) */
    bool folded;       /* the table was full: later stacks under [other] */
    bool yielded;      /* the program took SIGPROF during the profile */
    bool process_timer;
    /* Threads blocking SIGPROF at the end, and their CPU time during the
     * profile: never sampled (cpu.c). */
    int blocked_threads;
    int64_t blocked_cpu_ns;
    char path[4096]; /* the file it goes to, for RUN (pattern) and API */
};
/* Starts a profile at hz samples per CPU second: 0; -EBUSY while one runs;
 * -EPERM when the program handles SIGPROF itself; -ENOTSUP without the
 * signal unwinder; or another -errno. */
int hp_cpu_start(int hz, enum hp_cpu_owner owner, const char *path);
/* Ends the running profile if owner started it (or with HP_CPU_ANY): its
 * samples into out, which hp_cpu_release frees. 0, -ENOENT when none
 * runs, -EBUSY when another owner's does. */
int hp_cpu_stop(enum hp_cpu_owner owner, struct hp_cpu_profile *out);
void hp_cpu_release(struct hp_cpu_profile *p);
/* Marks the calling thread as heapprof's own: never profiled. */
void hp_cpu_own_thread(void);

/* ---- where the live threads were created (record/spawn.c) ---- */
/* The stack that called pthread_create for a thread still running, taken
 * at its creation (leaf first, return addresses, at most HP_SPAWN_FRAMES);
 * the main thread and threads made while the table was full have none. */
enum { HP_SPAWN_FRAMES = 32 };
struct hp_spawn {
    pid_t tid; /* 0: a free slot */
    uint32_t epoch;
    int depth;
    uintptr_t ips[HP_SPAWN_FRAMES];
};
/* Copies up to max entries into out; returns how many. *unlisted (may be
 * NULL): threads created while the table was full, since start-up. */
int hp_spawn_list(struct hp_spawn *out, int max, int *unlisted);

/* ---- lock contention and blocking (record/contention.c) ---- */
enum hp_cont_kind { HP_CONT_MUTEX = 0, HP_CONT_BLOCK = 1 };
/* Mutex profile: 1/fraction of contention events, 0: off (Go's
 * SetMutexProfileFraction). Block profile: events of d ns kept with
 * probability min(1, d/rate), 0: off (Go's SetBlockProfileRate). */
extern int hp_mutex_fraction;
extern int64_t hp_block_rate;
/* One stack's events, unbiased: the estimated number of events and their
 * total delay in nanoseconds. slot is its place in the table, the same in
 * every snapshot (for deltas). ips are return addresses, leaf first. */
struct hp_cont_stack {
    double count, delay;
    uint32_t slot, epoch;
    int depth;
    uintptr_t ips[HP_MAX_FRAMES];
};
struct hp_cont_profile {
    struct hp_arena arena;
    enum hp_cont_kind kind;
    size_t nstacks;
    struct hp_cont_stack *stacks;
    int64_t rate;    /* the fraction or the rate in force at the snapshot */
    int64_t time_ns; /* real-time clock */
    bool folded;     /* the table was full: later stacks under [other] */
};
/* A copy of the table's stacks of one kind. 0 or -ENOMEM; release it
 * with hp_arena_release(&p->arena) either way. */
int hp_cont_snapshot(enum hp_cont_kind kind, struct hp_cont_profile *p);
/* p minus base, stack by stack (for ?seconds=N). */
void hp_cont_delta(struct hp_cont_profile *p, const struct hp_cont_profile *base);

/* ---- execution traces (record/trace.c) ---- */
/* Who started the running trace: one runs at a time. */
enum hp_trace_owner { HP_TRACE_NONE = 0, HP_TRACE_RUN, HP_TRACE_API, HP_TRACE_HTTP, HP_TRACE_ANY };
/* One event in a thread's buffer: this header, then its payload (n return
 * addresses for a stack, leaf first, then a NUL-terminated string for the
 * kinds that carry one), the whole padded to 8 bytes (size). ts is on the
 * monotonic clock. */
enum hp_tev_kind {
    HP_TEV_SAMPLE = 1, /* a CPU sample: n frames */
    HP_TEV_PUSH,       /* a label scope begins: "key=value" */
    HP_TEV_POP,        /* the innermost scope ends */
    HP_TEV_THREAD_START,
    HP_TEV_THREAD_EXIT,
    HP_TEV_THREAD_CREATE, /* this thread created thread a */
    HP_TEV_RENAME,        /* the thread (a: its tid, 0: another one) renamed: the name */
    HP_TEV_FORK,          /* this thread forks */
    HP_TEV_ALLOC,         /* a sampled allocation: v = size, w = estimated bytes; n frames */
    HP_TEV_FREE,          /* sampled objects freed since the last: w = their estimated bytes */
    HP_TEV_BLOCKED, /* a blocking call: ts its start, v its duration (ns), the call; n frames */
    HP_TEV_EXEC,    /* this thread execs: the program */
};
struct hp_tev {
    int64_t ts;
    int64_t v, w;
    uint16_t size; /* the whole event's, header included */
    uint8_t kind;
    uint8_t n; /* frames */
    int32_t a;
};
struct hp_trace_thread {
    int tid;
    char name[16];
    const uint8_t *data; /* events, back to back */
    size_t len;
};
struct hp_trace {
    enum hp_trace_owner owner;
    int64_t start_ns, end_ns; /* monotonic clock */
    int64_t start_real_ns;    /* real-time clock at start */
    int cpu_hz;               /* samples per CPU second; 0: no CPU samples */
    /* A CPU profile shared the sampler during the trace: its rate; 0: none
     * did. */
    int cpu_profile_hz;
    bool heap;        /* heap profiling on: allocations and in-use bytes */
    double heap_base; /* estimated in-use bytes at the start */
    long rate;
    int64_t dropped;     /* events lost: buffers full, or too many threads */
    int64_t short_waits; /* blocking calls that returned too soon to be slices */
    size_t budget;       /* bytes the buffers may take */
    size_t nthreads;
    struct hp_trace_thread *threads;
    char path[4096]; /* the file it goes to (RUN, API) */
};
/* Starts a trace: 0, -EBUSY while one runs, or another -errno. */
int hp_trace_start(enum hp_trace_owner owner, const char *path);
/* Ends the running trace if owner started it (or with HP_TRACE_ANY): its
 * events into out, held until hp_trace_release. 0, -ENOENT, -EBUSY. */
int hp_trace_stop(enum hp_trace_owner owner, struct hp_trace *out);
void hp_trace_release(struct hp_trace *t);
/* A blocking call the calling thread made, from start_ns to end_ns on the
 * monotonic clock (hp_mono_ns): a "Waiting" slice in a running trace,
 * nothing otherwise. call is a short static name ("pthread_mutex_lock"). */
void hp_trace_blocked(const char *call, int64_t start_ns, int64_t end_ns);
/* Calls that returned sooner are counted, not slices (record/trace.c). */
#define HP_TRACE_MIN_WAIT_NS 10000

HP_SHARED_END

/* ---- the reporting half's entry points (report/report.c) ---- */
enum hp_dump_kind { HP_DUMP_NOW, HP_DUMP_PEAK };
struct heapprof_leak_counts;
struct hp_report {
    /* Writes a profile; with nleaks, also the leak summary. 0 or -errno. */
    int (*dump_to)(const char *path, enum hp_dump_kind kind, int *nleaks);
    /* The background thread (HTTP, signal and interval snapshots). */
    void (*agent_start)(void);
    void (*agent_child)(void); /* in a forked child */
    /* At exit, with HEAPPROF_TIMELINE: the heap over time beside the
     * profile (report/timeline.c). */
    int (*timeline_write)(const char *profile, char *html, char *json, size_t len);
    /* Writes a CPU profile to path. 0 or -errno. */
    int (*cpu_write)(const char *path, struct hp_cpu_profile *p);
    /* Writes a numbered snapshot beside the exit profile, as
     * HEAPPROF_SIGNAL and HEAPPROF_INTERVAL do (heapprof_snapshot): its
     * number (1, 2, ...) or -errno. */
    int (*snapshot)(void);
    /* Writes an execution trace (report/trace_json.c) to path: gzipped
     * when it ends in .gz. 0 or -errno. */
    int (*trace_write)(const char *path, struct hp_trace *t);
    /* heapprof_leak_check(): a leak check now, path absolute or NULL. */
    int (*leak_check)(const char *path, struct heapprof_leak_counts *counts);
};
/* The name libheapprof-report.so exports its table under. */
#define HP_REPORT_SYMBOL "hp_report_entry"

#endif
