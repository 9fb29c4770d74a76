/* What both halves of heapprof share: the configuration, the OS primitives
 * (common/os.c), the profiler's own memory (common/mem.c) and small
 * utilities (common/util.c).
 *
 * heapprof is two shared objects. libheapprof.so records: it is what a
 * program links or preloads (src/record/, with src/common/). The reporting
 * half, libheapprof-report.so (src/report/), symbolizes, encodes, writes and
 * serves profiles; the recording half loads it at start-up, only when
 * profiling is on. The seam between them is src/iface.h.
 *
 * Naming: heapprof_* is public (include/heapprof.h, defined in
 * record/api.c); hp_* is internal; everything else is static. Internal
 * names are hidden, but for those declared between HP_SHARED_BEGIN and
 * HP_SHARED_END (here and in iface.h): the reporting half uses them, so
 * libheapprof.so exports them under the private version HEAPPROF_PRIVATE
 * (src/record/exports.map), which no program should link against.
 *
 * Lock order: docs/locks.md lists every lock, what it protects and the
 * order (take a lock only while holding locks above it there). In short:
 *   CPU-support lock -> dump lock (or timeline lock) -> CPU registry lock ->
 *   CPU table lock -> loader guard -> label sets lock -> table lock -> live
 *   shard locks -> unloaded-libraries lock -> own-memory lock -> its ranges
 *   lock; the spin locks of threads.c, regions.c, thread.c and
 *   contention.c are leaves.
 * heapprof's free can take a shard lock: code holding a shard lock, or one
 * below it, never calls into the C library's allocator.
 */
#ifndef HP_H
#define HP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>

#include "heapprof.h" /* HEAPPROF_API: the one export macro */

#define HP_SHARED_BEGIN _Pragma("GCC visibility push(default)")
#define HP_SHARED_END _Pragma("GCC visibility pop")

#define HP_LIKELY(x) __builtin_expect(!!(x), 1)
#define HP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HP_TLS __thread __attribute__((tls_model("initial-exec")))

enum { HP_MAX_FRAMES = 64 };

HP_SHARED_BEGIN

/* ---- configuration (record/config.c) ---- */
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
    bool leaks_exit_any; /* HEAPPROF_LEAKS_EXIT_ANY: the code for memory never freed, lost or not */
    bool leak_scan;      /* HEAPPROF_LEAK_SCAN: the leak check's verdicts (report/reach.c) */
    bool leak_reachable; /* HEAPPROF_LEAK_REACHABLE: list reachable stacks too */
    bool leak_stats;     /* HEAPPROF_LEAK_STATS: say what the leak check read, and how fast */
    char http[256];      /* HEAPPROF_HTTP: HOST:PORT to serve /debug/pprof/ on */
    int snap_signal;     /* HEAPPROF_SIGNAL: 0, or the signal that takes a snapshot */
    long interval;       /* HEAPPROF_INTERVAL: seconds between snapshots, 0: none */
    bool snap_leaks;     /* HEAPPROF_SIGNAL_LEAKS: snapshots with a leak check's verdicts */
    long leak_interval;  /* HEAPPROF_LEAK_INTERVAL: seconds between live leak checks, 0: none */
    bool peak;           /* HEAPPROF_PEAK: write the peak profile at exit */
    bool announce;       /* HEAPPROF_ANNOUNCE: say where the profile went */
    bool debuginfo;      /* HEAPPROF_DEBUGINFO: read separate debug info files */
    bool timeline;       /* HEAPPROF_TIMELINE: write the heap over time at exit */
    long timeline_ms;    /* HEAPPROF_TIMELINE_MS (for tests): ms between its points */
    /* CPU profiles (record/cpu.c): read whether HEAPPROF is set or not. */
    char cpu_path[4096];    /* HEAPPROF_CPU: absolute path, or "" */
    int cpu_hz;             /* HEAPPROF_CPU_HZ: samples per CPU second */
    bool cpu_process_timer; /* HEAPPROF_CPU_TIMER=process: setitimer, not per-thread timers */
    /* Execution traces (record/trace.c): read whether HEAPPROF is set or not. */
    char trace_path[4096]; /* HEAPPROF_TRACE: absolute path, or "" */
    int trace_seconds;     /* HEAPPROF_TRACE_SECONDS: 0, until exit */
};
extern struct hp_config hp_cfg;
void hp_config_load(void);

/* Every variable heapprof reads (record/config.c): one table. */
enum hp_opt_kind { HP_OPT_PATH, HP_OPT_INT, HP_OPT_SIZE, HP_OPT_BOOL, HP_OPT_TEXT };
struct hp_option {
    const char *name;  /* HEAPPROF_... */
    const char *alias; /* an older spelling still read, or NULL */
    enum hp_opt_kind kind;
    long long def, min, max; /* for HP_OPT_INT, HP_OPT_SIZE and HP_OPT_BOOL */
    bool secure;             /* read with secure_getenv: not in a setuid program */
    bool hidden;             /* for tests only, not documented for users */
    const char *doc;         /* one line */
};
const struct hp_option *hp_options(size_t *n);
/* The value of a HEAPPROF_* variable (or of its older spelling), read as
 * the table says: the only way heapprof reads its variables. */
const char *hp_env(const char *name);

/* ---- diagnostics, clocks, descriptors and files (common/os.c) ---- */
/* One line on stderr (write(2) only, never stdio). */
void hp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hp_stderr_keep(void);
void hp_stderr_choose(void);
int hp_stderr_fd(void); /* stderr, or the copy kept if the program closed it */
/* Writes all of buf, retrying after EINTR: 0, or the errno (EIO for a
 * write of 0 bytes). */
int hp_write_all(int fd, const void *buf, size_t len);
int64_t hp_now_ns(void);  /* the real-time clock */
int64_t hp_mono_ns(void); /* the monotonic clock */
int64_t hp_mono_ms(void); /* the same in milliseconds */
/* One of heapprof's own threads: detached, named, every signal blocked
 * (the program's signals are never delivered to it). 0 or the errno. */
int hp_thread_spawn(void *(*fn)(void *), const char *name);
int hp_thread_spawn_with(void *(*fn)(void *), void *arg, const char *name); /* fn(arg) */
/* Anonymous private memory, zeroed; NULL on failure. */
void *hp_os_map(size_t len);
void hp_os_unmap(void *p, size_t len);
/* Keeps one of heapprof's own descriptors out of the program's way: moved to
 * a high number, close-on-exec. Returns the new descriptor or -1. */
int hp_fd_high(int fd);
/* A close-on-exec copy of fd on a high number, or -1. */
int hp_fd_dup_high(int fd);
struct hp_arena;
/* A whole file (of /proc, say) in the arena, NUL-terminated, its length in
 * *len (when len is not NULL); NULL if it cannot be read. */
char *hp_read_file(struct hp_arena *a, const char *path, size_t *len);
/* Whether process PID started with name=value (in /proc/PID/environ), or
 * with name set to a relative path that value, absolute, ends in: heapprof
 * makes its relative paths absolute in the environment it passes on
 * (record/config.c). */
bool hp_proc_environ_inherits(pid_t pid, const char *name, const char *value);
/* path made absolute against the current directory: 0 or -errno. */
int hp_absolute_path(char *out, size_t len, const char *path);
/* True when path is written in place, not replaced by a renamed temporary
 * file: a name for a descriptor (/dev/stderr, /dev/fd/N, /proc/self/fd/N),
 * whatever it refers to, or an existing FIFO, device, socket or directory,
 * or a symlink to a FIFO, device or socket. */
bool hp_path_in_place(const char *path);
/* Writes a file atomically (a temporary file renamed over path), or in
 * place (hp_path_in_place). 0 or -errno; never raises SIGXFSZ. */
int hp_write_file_atomic(const char *path, const void *data, size_t len);

/* ---- names of files (common/util.c) ---- */
const char *hp_basename(const char *path);
/* path with ".TAG" inserted before its ".pb" extension (or appended). */
int hp_path_with_tag(char *out, size_t len, const char *path, const char *tag);
/* Expands %p (pid) and %% in the configured path; adds a pid to the name in
 * processes that are not the root of the profiled tree. */
int hp_output_path(char *out, size_t len, const char *pattern, bool child);
/* The GNU build id in an object's notes (align: the segment's, 4 or 8), as
 * lowercase hex into hex (at least 129 bytes); false if there is none. */
bool hp_note_build_id(const char *notes, size_t len, size_t align, char *hex);

/* ---- the C library's functions that heapprof interposes (common/real.c) ---- */
/* heapprof's own code below src/interpose/ calls these, never the names
 * themselves (which are heapprof's hooks in libheapprof.so). */
struct sigaction;
struct dl_phdr_info;
struct hp_real {
    /* Filled in by interpose/alloc.c when it finds the allocator. */
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    size_t (*malloc_usable_size)(void *);
    /* Filled in by hp_real_resolve. */
    int (*pthread_create)(unsigned long *, const void *, void *(*)(void *), void *);
    int (*pthread_setname_np)(unsigned long, const char *);
    int (*pthread_getattr_np)(unsigned long, void *);
    int (*prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long);
    int (*sigaction)(int, const struct sigaction *, struct sigaction *);
    void (*(*signal)(int, void (*)(int)))(int);
    int (*dl_iterate_phdr)(int (*)(struct dl_phdr_info *, size_t, void *), void *);
    void *(*dlopen)(const char *, int);
    int (*dlclose)(void *);
    void *(*sbrk)(intptr_t);
    int (*brk)(void *);
    int (*madvise)(void *, size_t, int);
    int (*munmap)(void *, size_t);
    /* Locks and blocking calls (interpose/locks.c, interpose/blocking.c). */
    int (*pthread_mutex_lock)(pthread_mutex_t *);
    int (*pthread_mutex_trylock)(pthread_mutex_t *);
    int (*pthread_mutex_timedlock)(pthread_mutex_t *, const struct timespec *);
    int (*pthread_rwlock_rdlock)(pthread_rwlock_t *);
    int (*pthread_rwlock_wrlock)(pthread_rwlock_t *);
    int (*pthread_rwlock_tryrdlock)(pthread_rwlock_t *);
    int (*pthread_rwlock_trywrlock)(pthread_rwlock_t *);
    int (*pthread_rwlock_timedrdlock)(pthread_rwlock_t *, const struct timespec *);
    int (*pthread_rwlock_timedwrlock)(pthread_rwlock_t *, const struct timespec *);
    int (*pthread_spin_lock)(pthread_spinlock_t *);
    int (*pthread_spin_trylock)(pthread_spinlock_t *);
    int (*pthread_cond_wait)(pthread_cond_t *, pthread_mutex_t *);
    int (*pthread_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    int (*pthread_join)(pthread_t, void **);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
    int (*nanosleep)(const struct timespec *, struct timespec *);
    int (*clock_nanosleep)(clockid_t, int, const struct timespec *, struct timespec *);
    unsigned (*sleep)(unsigned);
    int (*usleep)(unsigned int); /* useconds_t */
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*sem_wait)(sem_t *);
    int (*sem_timedwait)(sem_t *, const struct timespec *);
    /* exec (interpose/exec.c). */
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execv)(const char *, char *const[]);
    int (*execvp)(const char *, char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    bool resolved;
};
extern struct hp_real hp_real;
/* Finds the functions above but the malloc family; idempotent. */
void hp_real_resolve(void);
/* The real function, found first if need be: for the hooks and for
 * heapprof's own blocking calls. */
#define HP_REAL(name)                                                                              \
    __extension__({                                                                                \
        __typeof__(hp_real.name) f_ = __atomic_load_n(&hp_real.name, __ATOMIC_RELAXED);            \
        HP_LIKELY(f_ != NULL) ? f_ : (hp_real_resolve(), hp_real.name);                            \
    })
/* heapprof's own locks and waits, past its hooks: its own blocking never
 * shows in the mutex or block profile (and never calls back into them). */
int hp_mutex_lock(pthread_mutex_t *m);
int hp_cond_wait(pthread_cond_t *c, pthread_mutex_t *m);
int hp_nanosleep(const struct timespec *t, struct timespec *rem);
int hp_poll(struct pollfd *fds, nfds_t n, int timeout);
ssize_t hp_read(int fd, void *buf, size_t len);
ssize_t hp_recv(int fd, void *buf, size_t len, int flags);
int hp_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

/* ---- the profiler's own memory (common/mem.c): never goes through the hooks ---- */
void *hp_alloc(size_t size);        /* zeroed; NULL on failure */
void hp_free(void *p, size_t size); /* size as given to hp_alloc */
void hp_mem_lock(void);
void hp_mem_unlock(void);
void hp_mem_child(void);
size_t hp_mem_mapped(void); /* bytes mapped for the profiler's own use */
/* The address ranges heapprof's own memory is mapped at: their number, up
 * to max copied as lo, hi pairs into out. Under hp_mem_lock, or in a child
 * of hp_freeze_fork (iface.h). */
size_t hp_mem_ranges(uintptr_t *out, size_t max);

/* A bump arena for one dump: freed all at once. */
struct hp_arena {
    struct hp_arena_chunk *head;
};
void *hp_arena_alloc(struct hp_arena *a, size_t size); /* zeroed */
char *hp_arena_strdup(struct hp_arena *a, const char *s);
void hp_arena_release(struct hp_arena *a);

HP_SHARED_END

/* uthash tables take the profiler's own memory, and report running out of it
 * instead of exiting the program. */
#define uthash_malloc(sz) hp_alloc(sz)
#define uthash_free(ptr, sz) hp_free(ptr, sz)
#define HASH_NONFATAL_OOM 1 /* hp_alloc and hp_free are declared above */

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

#endif
