/* Internal interfaces shared by heapprof's source files.
 *
 * Naming: heapprof_* is public (include/heapprof.h), hp_* is internal across
 * files, everything else is static. Everything here has hidden visibility.
 *
 * Lock order (take left before right, never the reverse):
 *   loader guard -> hp_table_lock -> live shard locks -> retained symbols
 *   lock -> hp_mem lock
 * No lock is held across stack unwinding or symbolization.
 */
#ifndef HP_H
#define HP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* uthash tables take the profiler's own memory, and report running out of it
 * instead of exiting the program. */
#define uthash_malloc(sz) hp_alloc(sz)
#define uthash_free(ptr, sz) hp_free(ptr, sz)
#define HASH_NONFATAL_OOM 1 /* hp_alloc and hp_free are declared below */

/* Keys here are mostly arrays of return addresses: hash them a word at a
 * time (multiply-xorshift), several times faster than uthash's default
 * byte-wise Jenkins hash on a 64-frame stack. */
static inline unsigned hp_hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t h = 0x243f6a8885a308d3ull ^ ((uint64_t)len * 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        len -= 8;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < len; i++)
        t |= (uint64_t)p[i] << (8 * i);
    h = (h ^ t) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    return (unsigned)(h ^ (h >> 32));
}
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = hp_hash_bytes((keyptr), (keylen)))
#include <uthash.h>
/* uthash doubles a table when one chain reaches 10 entries (times the
 * table's expansion multiplier): with a hash as even as this one, chains are
 * then three or four long on average, and every link is a cache miss on the
 * sampled path. Doubling at 4 keeps them near one. (uthash reads the macro
 * where its add macros are used, so redefining it here is enough.) */
#undef HASH_BKT_CAPACITY_THRESH
#define HASH_BKT_CAPACITY_THRESH 4U

#define HP_LIKELY(x) __builtin_expect(!!(x), 1)
#define HP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HP_TLS __thread __attribute__((tls_model("initial-exec")))

enum { HP_MAX_FRAMES = 64 };

/* ---- configuration (config.c) ---- */
struct hp_config {
    bool enabled;          /* HEAPPROF named a usable path */
    char path[4096];       /* absolute output path, %p not yet expanded */
    long rate;             /* mean bytes between samples; 1 = every allocation */
    size_t max_memory;     /* HEAPPROF_MAX_MEMORY: ceiling of the stack table */
    uint64_t seed;         /* HEAPPROF_SEED, when seed_set */
    bool seed_set;         /* false: seed from the clock and the thread */
    char leaks_path[4096]; /* empty: stderr */
    bool leaks_off;
    int leak_stacks; /* stacks shown in the leak summary */
    int leak_frames; /* frames shown per stack */
    char suppressions[4096];
    int leaks_exit_code; /* 0: exit status untouched */
    char http[256];      /* HEAPPROF_HTTP: HOST:PORT to serve /debug/pprof/ on */
    int snap_signal;     /* HEAPPROF_SIGNAL: 0, or the signal that takes a snapshot */
    long interval;       /* HEAPPROF_INTERVAL: seconds between snapshots, 0: none */
    bool peak;           /* HEAPPROF_PEAK: write the peak profile at exit */
    bool announce;       /* HEAPPROF_ANNOUNCE: say where the profile went */
    bool debuginfo;      /* HEAPPROF_DEBUGINFO: read separate debug info files */
};
extern struct hp_config hp_cfg;
void hp_config_load(void);
/* Expands %p (pid) and %% in the configured path; adds a pid to the name in
 * processes that are not the root of the profiled tree. */
int hp_output_path(char *out, size_t len, const char *pattern, bool child);
/* path with ".TAG" inserted before its ".pb" extension (or appended). */
int hp_path_with_tag(char *out, size_t len, const char *path, const char *tag);
/* True when path is written in place, not replaced by a renamed temporary
 * file: a name for a descriptor (/dev/stderr, /dev/fd/N, /proc/self/fd/N),
 * whatever it refers to, or an existing FIFO, device, socket or directory,
 * or a symlink to a FIFO, device or socket. */
bool hp_path_in_place(const char *path);

/* ---- diagnostics: write(2) only, never stdio ---- */
void hp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hp_stderr_keep(void);
void hp_stderr_choose(void);
int hp_stderr_fd(void); /* stderr, or the copy kept if the program closed it */
/* Writes all of buf, retrying after EINTR: 0, or the errno (EIO for a
 * write of 0 bytes). */
int hp_write_all(int fd, const void *buf, size_t len);

/* ---- the profiler's own memory (mem.c): never goes through the hooks ---- */
void *hp_alloc(size_t size);        /* zeroed; NULL on failure */
void hp_free(void *p, size_t size); /* size as given to hp_alloc */
void hp_mem_lock(void);
void hp_mem_unlock(void);
void hp_mem_child(void);
size_t hp_mem_mapped(void); /* bytes mapped for the profiler's own use */

/* A bump arena for one dump: freed all at once. */
struct hp_arena {
    struct hp_arena_chunk *head;
};
void *hp_arena_alloc(struct hp_arena *a, size_t size); /* zeroed */
char *hp_arena_strdup(struct hp_arena *a, const char *s);
void hp_arena_release(struct hp_arena *a);

/* ---- real allocator (hooks.c) ---- */
struct hp_real {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    size_t (*malloc_usable_size)(void *);
};
extern struct hp_real hp_real;

/* ---- per-thread state and the sampler (sampler.c) ---- */
struct hp_thread {
    /* Bytes left before the next sample; the fast path only decrements it. */
    int64_t countdown;
    uint64_t rng[4];
    bool ready;
    /* Set while heapprof itself runs on this thread: allocations made then
     * (by libunwind, libdw, zlib, the dump) are forwarded, not recorded. */
    bool busy;
};
extern HP_TLS struct hp_thread hp_thread;
extern volatile int hp_state; /* enum hp_state_value */
enum hp_state_value { HP_STATE_UNINIT = 0, HP_STATE_INITING, HP_STATE_OFF, HP_STATE_ON };

void hp_init(void);
/* Called when the countdown went negative: decides whether the allocation of
 * size bytes is sampled, and redraws the countdown. */
bool hp_sampler_take(size_t size);
void hp_rng_seed(uint64_t rng[4], uint64_t seed);
uint64_t hp_rng_next(uint64_t rng[4]);
/* A gap drawn from an exponential distribution of mean `rate` bytes. */
int64_t hp_sampler_gap(uint64_t rng[4], long rate);
void hp_sampler_child(void);
/* Go's unbiasing: the expected number of allocations of `size` bytes that one
 * sample of that size stands for, at the given rate. */
double hp_unbias_scale(uint64_t size, long rate);

/* ---- stacks (stack.c) ---- */
void hp_stack_init(void);
int hp_stack_capture(void **ips, int max);

/* ---- the stack table (table.c) ---- */
/* A bucket: the sampled allocations of one stack in one size class. Its
 * counts (samples, and their unbiased weights: each sample of s bytes adds
 * 1/p(s) and s/p(s)) are kept beside it, in stripes (table.c). Never
 * freed. */
struct hp_bucket {
    uint32_t stack;     /* the stack's leaf node (hp_stack_frames) */
    uint32_t next : 24; /* the stack's next older bucket, 0: none */
    uint32_t cls : 8;   /* size class: bit length of the size */
};
enum { HP_MAX_BUCKETS = 1 << 24 };
/* The single frame of the stack that new stacks fold into once the table
 * reaches HEAPPROF_MAX_MEMORY; printed as "[other]". */
#define HP_OTHER_IP ((uintptr_t)1)
void hp_table_init(void);
void hp_table_lock(void);
void hp_table_unlock(void);
void hp_table_child(void);
/* Every distinct address in [lo, hi) of the stacks recorded so far, for
 * hp_sym_retain. Returns the count; *out is in the profiler's own memory
 * (free with hp_free(*out, count * sizeof(uintptr_t))). */
size_t hp_table_pcs_in(uintptr_t lo, uintptr_t hi, uintptr_t **out);
/* Finds or adds the bucket for (stack, size class), counts one sampled
 * allocation of size bytes; its number, or 0 when out of memory. */
uint32_t hp_table_record(void **ips, int depth, uint64_t size);
struct hp_bucket *hp_bucket_at(uint32_t bucket);
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
uint32_t hp_table_nodes(void); /* nodes so far: node numbers are below */
bool hp_table_folded(void);    /* some stack went to [other] */
size_t hp_table_bytes(void);   /* memory held by the table */

/* ---- the live set (live.c) ---- */
/* A sampled object: its bucket (0: none) and requested size. */
struct hp_live_rec {
    uint32_t bucket;
    uint64_t size;
};
/* false if p could not be tracked (out of memory). */
bool hp_live_insert(void *p, struct hp_live_rec rec);
/* Takes p off the live set if it was sampled; .bucket 0 if it was not. */
struct hp_live_rec hp_live_remove(void *p);
struct hp_snap_bucket;
/* Adds every live sampled object of buckets below n to sb[pos[bucket]]:
 * .live and the in-use weights w[2], w[3]. */
void hp_live_sum(struct hp_snap_bucket *sb, const uint32_t *pos, uint32_t n, long rate);
size_t hp_live_bytes(void); /* memory held by the live set's slots */
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
static inline bool hp_block_maybe(const void *p)
{
    uint32_t i = hp_block_index(p);
    return __atomic_load_n(&hp_block_bits[i / 64], __ATOMIC_RELAXED) >> (i % 64) & 1;
}
static inline bool hp_filter_maybe(const void *p)
{
    return __atomic_load_n(hp_filter_slot(p), __ATOMIC_RELAXED) != 0;
}
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

/* The whole sampled-allocation path and the free path (core.c). */
void hp_on_alloc(void *p, size_t size);
/* Takes p off the live set if it was sampled; .bucket 0 if it was not. */
struct hp_live_rec hp_on_free(void *p);
/* Undoes hp_on_free after a failed realloc. */
void hp_on_unfree(void *p, struct hp_live_rec rec);

enum hp_dump_kind { HP_DUMP_NOW, HP_DUMP_PEAK };
/* Writes a profile; with nleaks, also the leak summary. 0 or -errno. */
int hp_dump_to(const char *path, enum hp_dump_kind kind, int *nleaks);
/* This process's profile path (HEAPPROF with %p expanded and, in a child,
 * the pid added). */
int hp_process_path(char *out, size_t len);
/* This process's leak summary path: HEAPPROF_LEAKS named by the same rule,
 * except that a path written in place (hp_path_in_place) gets no pid. */
int hp_process_leaks_path(char *out, size_t len);
int64_t hp_start_ns(void);

/* ---- the background thread (agent.c) and the HTTP endpoint (http.c) ---- */
void hp_agent_start(void);
void hp_agent_child(void);
struct hp_http;
struct pollfd;
struct hp_http *hp_http_open(const char *spec);
int hp_http_pollfds(struct hp_http *h, struct pollfd *fds, int max, int64_t *deadline);
void hp_http_service(struct hp_http *h, const struct pollfd *fds, int n);
void hp_http_child(struct hp_http *h);
/* Milliseconds on the monotonic clock. */
int64_t hp_mono_ms(void);
/* Keeps one of heapprof's own descriptors out of the program's way: moved to
 * a high number, close-on-exec. Returns the new descriptor or -1. */
int hp_fd_high(int fd);

/* ---- symbols (symbols.c) ---- */
struct hp_frame_line {
    const char *function;    /* demangled; NULL when unknown */
    const char *system_name; /* as in the symbol table */
    const char *file;        /* NULL when unknown */
    int line;
};
struct hp_symbolized {
    int nlines; /* innermost first; 0 when nothing is known */
    struct hp_frame_line *lines;
    int mapping; /* index into the mapping list, -1 when none */
    /* 0, or which unloaded library's saved symbols answered: the same
     * address can mean different code before and after a dlclose. */
    uint32_t variant;
};
struct hp_mapping {
    uint64_t start, limit, offset;
    const char *file;
    const char *build_id; /* lowercase hex, or "" */
    bool has_functions, has_filenames, has_lines;
};
struct hp_symbolizer;
struct hp_symbolizer *hp_sym_open(struct hp_arena *a);
/* Symbolizes the return address pc of a stack recorded at epoch (its
 * hp_stack's epoch); pass the epoch so that addresses in libraries unloaded
 * since then get the names they had. */
void hp_sym_lookup(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch,
                   struct hp_symbolized *out);
int hp_sym_mappings(struct hp_symbolizer *s, struct hp_mapping **out);
void hp_sym_close(struct hp_symbolizer *s);
const char *hp_basename(const char *path);

/* ---- the loader (dl.c) ---- */
extern uint32_t hp_dl_epoch;
/* Around anything that takes glibc's loader lock (unwinding, dlopen,
 * dlclose): fork waits until no thread is inside. */
void hp_loader_enter(void);
void hp_loader_leave(void);
void hp_loader_fork_prepare(void);
void hp_loader_fork_parent(void);
void hp_loader_fork_child(void);
/* The symbols kept for unloaded libraries have a lock of their own. */
void hp_sym_lock(void);
void hp_sym_unlock(void);
void hp_sym_child(void);
/* Saves the symbols of every recorded address in [lo, hi) of the object at
 * path (load bias bias), before it is unloaded. */
void hp_sym_retain(const char *path, uintptr_t bias, uintptr_t lo, uintptr_t hi, uint64_t offset);

/* ---- a snapshot of the tables (table.c), written by profile.c ---- */
struct hp_snap_bucket {
    uint32_t bucket; /* its number */
    uint32_t stack;  /* leaf node */
    int64_t allocs;  /* sampled objects allocated (in a delta: in the window) */
    int64_t live;    /* sampled objects in use (in a delta: the change) */
    /* Unbiased estimates, unrounded: alloc_objects, alloc_space,
     * inuse_objects, inuse_space; est[] the same as written to the profile
     * (hp_snapshot_estimate). */
    double w[4];
    int64_t est[4];
};
struct hp_snapshot {
    struct hp_arena arena;
    long rate;
    size_t nbuckets;
    struct hp_snap_bucket *buckets;
    const char *comment; /* NULL, or a line for the profile's comments */
};
/* The bucket's average object size (estimated), for the "bytes" label. */
uint64_t hp_snap_avg_size(const struct hp_snap_bucket *b);
int hp_snapshot_take(struct hp_snapshot *s);
/* The tables as they were when the estimated in-use bytes last set a peak
 * (see core.c); -ENOENT when peak tracking is off or nothing was captured. */
int hp_snapshot_peak(struct hp_snapshot *s);
/* Turns s into s minus base (same process, base taken earlier). */
int hp_snapshot_delta(struct hp_snapshot *s, const struct hp_snapshot *base);
void hp_snapshot_release(struct hp_snapshot *s);
/* Groups the buckets by stack (unless they are) and fills in their estimates. The
 * take/peak/delta functions call it; a hand-made snapshot must. */
void hp_snapshot_estimate(struct hp_snapshot *s);

/* Peak tracking (table.c): copies the counts of every bucket. */
void hp_peak_capture(void);
extern bool hp_peak_on;
/* Writes a gzipped pprof profile of the snapshot to path atomically.
 * Returns 0 or a negative errno. Symbolizes each address once; sym may be
 * shared with the leak report. */
int hp_profile_write(struct hp_snapshot *s, struct hp_symbolizer *sym, const char *path,
                     int64_t start_ns);
/* Encodes the profile into a gzip buffer held by the snapshot's arena.
 * default_type: NULL for the heap profile, "alloc_space" for allocs. */
int hp_profile_encode(struct hp_snapshot *s, struct hp_symbolizer *sym, int64_t start_ns,
                      const char *default_type, uint8_t **out, size_t *outlen);
int hp_write_file_atomic(const char *path, const void *data, size_t len);

/* ---- leak summary (leaks.c) ---- */
/* Returns the number of leaking stacks reported (after suppressions). */
int hp_leaks_report(struct hp_snapshot *s, struct hp_symbolizer *sym);

int64_t hp_now_ns(void);

#endif
