/* edges: the leak check at its edges (issue 19). One case per run:
 *
 *   edges CASE [ARG]
 *
 * Every object whose verdict is tested comes from a site of its own, a
 * noinline function named for the verdict the program means (kept_*: still
 * reachable, lost_*: lost), so it names the stack in the leak summary.
 * tests/leaks/test_edges.py holds heapprof to the verdicts below. Class 6
 * (stale copies on the exiting thread's stack) is in stale.c, the C++
 * cases in edges_cxx.cc.
 *
 * The truth: this program as meson builds it (gcc 12.2, -g -O2
 * -fno-optimize-sibling-calls, glibc 2.36, x86-64), run under
 *   valgrind --leak-check=full --show-leak-kinds=all   (memcheck 3.19)
 * and under LeakSanitizer (gcc 12's), both preloaded (liblsan.so.0) and
 * built with -fsanitize=leak; LSan lists only what it finds lost, so a run
 * with its roots turned off shows each marker was live at its check.
 * tests/leaks/edges/truth.py does these runs; TRUTH.md has their output.
 * Per case: memcheck / LSan / what the test accepts.
 *
 * Class 1: exit() from a thread other than main, or from a signal handler.
 *   exit-thread-join      kept_main_local (1101 B) only in a volatile local
 *                         of main, blocked in pthread_join; another thread
 *                         calls exit(): still reachable / not reported
 *                         (reachable) / reachable.
 *   exit-thread-spin      the same, main spinning in a loop: the same.
 *   exit-altstack-main    the same local; main calls exit() from a SIGUSR1
 *                         handler on a 256 KiB sigaltstack: the same.
 *   exit-altstack-thread  a thread does that on its own 256 KiB altstack
 *                         while main is blocked in pthread_join: the same.
 * Class 2: a running thread on a stack glibc reused from an exited thread.
 *   reused-stack-blocked  thread A (256 KiB stack) allocates, exits and is
 *                         joined; thread B (256 KiB) never allocates, is
 *                         given kept_reused_stack (1202 B) through a global
 *                         that it clears, holds it in a local and blocks in
 *                         pause(): reachable / reachable / reachable.
 *   reused-stack-spin     the same, B spinning: the same.
 *   reused-stack-smaller  B spinning on a 128 KiB stack, A's 256 KiB (glibc
 *                         gives B A's block): the same.
 *                         Each prints whether B's stack is A's.
 * Class 3: kept_shared (1303 B) held only in MAP_SHARED memory, or in a
 *   private anonymous mapping marked MADV_DONTFORK or MADV_WIPEONFORK:
 *   shared-anon, shm-open, memfd, shared-file, sysv-shm, dontfork,
 *   wipeonfork: still reachable / direct leak (LSan scans no mappings) /
 *   reachable: memcheck's roots, which heapprof's README adopts ("memory it
 *   mapped itself"), and the issue asks for.
 * Class 4: sbrk: kept_sbrk (1404 B) only in memory from sbrk(4096): still
 *   reachable / direct leak / reachable (as class 3).
 * Class 5: register: kept_in_register (1505 B) only in r12 and r15 of a
 *   thread spinning in an asm loop: still reachable / not reported (with
 *   use_registers=0: a direct leak) / reachable.
 * Class 7: allocator bookkeeping.
 *   largebin      lost_largebin (1096 B, its whole usable size): the chunk
 *                 after it (3600 B) and another (3760 B) are freed into the
 *                 same large bin; the other is then reused, unwritten, by
 *                 kept_reused_chunk, whose first 4 words keep glibc's fd, bk,
 *                 fd_nextsize and bk_nextsize: 3 of them point at the first
 *                 chunk's header, the last 8 bytes of lost_largebin. The
 *                 program checks that under glibc and says so on stderr
 *                 ("laid out as planned, 3 stale words ..."). Definitely
 *                 lost / direct leak / definitely lost (those tools' own
 *                 allocators leave no such words); kept_reused_chunk and
 *                 kept_guard (2 x 24 B) reachable in both.
 *   thread-arena  lost_arena_target (1707 B): a thread, in an arena of its
 *                 own (an anonymous mapping; the program checks it is not
 *                 the brk heap), fills 400 objects of 64 bytes with the
 *                 pointer, frees them and is joined: definitely lost /
 *                 direct leak / definitely lost.
 * Class 8: built-in suppressions must not hide the program's own leaks.
 *   dtor          lost_in_destructor (1808 B), allocated and dropped in the
 *                 program's __attribute__((destructor)) function (run from
 *                 _dl_fini): definitely lost / direct leak with
 *                 -fsanitize=leak (preloaded, LSan checks before the
 *                 destructor runs and does not see it) / definitely lost.
 *   dlopen-ctor   lost_in_lib_ctor (1909 B, edges_ctorlib.c), in the
 *                 constructor of a library main dlopens (its path the
 *                 argument): definitely lost / direct leak / definitely lost.
 *   newlocale     lost_newlocale: newlocale(LC_ALL_MASK, "C.UTF-8") dropped
 *                 without freelocale: definitely lost (328 B) / not reported:
 *                 a stale copy in a register of the checking thread (with
 *                 use_registers=0, a direct leak) / either, but listed.
 * Class 9: exit(7) on a small stack, from a SIGUSR1 handler on a
 *   mmap'd alternate stack with an inaccessible page below it:
 *   altstack-sigstksz (8192 B, the SIGSTKSZ of <signal.h> without
 *   _GNU_SOURCE; sysconf(_SC_SIGSTKSZ) is 47808 here, see altstack-48k),
 *   altstack-16k, altstack-32k, altstack-48k; thread-16k: from a thread with
 *   a 16 KiB stack (PTHREAD_STACK_MIN). Each holds kept_small_stack (2010 B,
 *   a global) and lost_small_stack (2111 B, dropped): status 7, reachable
 *   and definitely lost, in memcheck. LSan: the same (status 23) for 32k,
 *   48k and thread-16k; it overflows its own stack on 8192 B and hangs on
 *   16 KiB with -fsanitize=leak.
 * Class 10: rlimit-as-lost sets RLIMIT_AS (soft and hard) to its VmSize +
 *   1 MiB, loses lost_rlimit (2212 B) and returns 0; rlimit-as-none frees it:
 *   definitely lost, nothing lost / LSan cannot run (it fails to map its own
 *   memory) / see test_edges.py.
 * Beyond the list:
 *   tls-live-thread    kept_tls_thread (2313 B) only in a __thread variable
 *                      of a thread blocked in pause(): reachable / reachable
 *                      / reachable.
 *   tls-exited-thread  lost_tls_exited (2414 B) only in a __thread variable
 *                      of a thread (that never allocated) which exited and
 *                      was joined; glibc keeps its stack, TLS and all:
 *                      definitely lost / direct leak / definitely lost.
 *   xor                lost_xor (2515 B): the only copy XOR-ed with a
 *                      constant in a global: definitely lost / direct / the
 *                      same.
 *   pipe               lost_in_pipe (2616 B): the only copy written into a
 *                      pipe, unread: definitely lost / direct / the same.
 *   poll-thread        kept_poll_thread (2717 B): a local of a thread
 *                      blocked in poll(): reachable / reachable / reachable.
 *   mprotect-ro        lost_in_readonly_map (2818 B): only in an anonymous
 *                      mapping then made PROT_READ: definitely lost (memcheck
 *                      reads only mappings both readable and writable) /
 *                      direct / definitely lost.
 *   dlopen-global      kept_lib_global (2919 B): only in a global of a
 *                      library main dlopens (edges_globlib.c): reachable /
 *                      reachable / reachable.
 *   getattr-first      kept_after_getattr (3222 B), kept in a global by a
 *                      thread whose first allocation is pthread_getattr_np's
 *                      (made with the thread's lock held): reachable /
 *                      reachable / reachable; and the program must end.
 *
 * Pointers go through volatile globals, and the stack below main's frame
 * is zeroed (scrub) before main returns, so that no stale copy there makes
 * a lost object look reachable, or a test pass by accident.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#define SITE __attribute__((noinline))
#define LEGACY_SIGSTKSZ 8192

static inline void escape(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void die(const char *what)
{
    fprintf(stderr, "edges: %s: %s\n", what, strerror(errno));
    exit(98);
}

void *volatile hold;    /* transient: cleared once the case is set up */
void *volatile handoff; /* a pointer given to a thread, cleared by it */
void *kept_global[4];   /* reachable controls */
volatile int flag_a, flag_b, stop;
volatile pid_t tid_b;
static pid_t main_tid;

/* ---- sites ---- */

SITE void *kept_main_local(void)
{
    return malloc(1101);
}

SITE void *kept_reused_stack(void)
{
    return malloc(1202);
}

SITE void *kept_shared(void)
{
    return malloc(1303);
}

SITE void *kept_sbrk(void)
{
    return malloc(1404);
}

SITE void *kept_in_register(void)
{
    return malloc(1505);
}

SITE void *lost_largebin(void)
{
    return malloc(1096);
}

SITE void *freed_later(size_t n)
{
    return malloc(n);
}

SITE void *kept_reused_chunk(size_t n)
{
    return malloc(n);
}

SITE void *kept_guard(void)
{
    return malloc(24);
}

SITE void *lost_arena_target(void)
{
    return malloc(1707);
}

SITE void *lost_in_destructor(void)
{
    return malloc(1808);
}

SITE locale_t lost_newlocale(void)
{
    return newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
}

SITE void *kept_small_stack(void)
{
    return malloc(2010);
}

SITE void *lost_small_stack(void)
{
    return malloc(2111);
}

SITE void *lost_rlimit(void)
{
    return malloc(2212);
}

SITE void *kept_tls_thread(void)
{
    return malloc(2313);
}

SITE void *lost_tls_exited(void)
{
    return malloc(2414);
}

SITE void *lost_xor(void)
{
    return malloc(2515);
}

SITE void *lost_in_pipe(void)
{
    return malloc(2616);
}

SITE void *kept_poll_thread(void)
{
    return malloc(2717);
}

SITE void *lost_in_readonly_map(void)
{
    return malloc(2818);
}

SITE void *kept_lib_global(void)
{
    return malloc(2919);
}

SITE void *kept_after_getattr(void)
{
    return malloc(3222);
}

/* ---- helpers ---- */

/* Zeroes 128 KiB of stack below the caller's frame, where the calls made
 * so far (malloc's among them) left copies of the pointers they handled. */
SITE void scrub(void)
{
    char buf[128 << 10];
    memset(buf, 0, sizeof buf);
    escape(buf);
}

/* Waits, without sleeping for a set time, until thread tid is blocked in a
 * system call (its /proc syscall file gives a number, not "running"). Reads
 * with open/read only: no allocation. */
static void wait_in_syscall(pid_t tid)
{
    char path[64], text[32];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    for (;;) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die(path);
        ssize_t r = read(fd, text, sizeof text - 1);
        close(fd);
        if (r > 0 && text[0] >= '0' && text[0] <= '9')
            return;
        sched_yield();
    }
}

static void wait_flag(volatile int *f)
{
    while (!*f)
        sched_yield();
}

static void spin_forever(void)
{
    for (;;)
        __asm__ volatile("pause" ::: "memory");
}

static void block_forever(void)
{
    for (;;)
        pause();
}

static pthread_t start(void *(*fn)(void *), size_t stack, void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack && pthread_attr_setstacksize(&attr, stack) != 0)
        die("pthread_attr_setstacksize");
    pthread_t t;
    errno = pthread_create(&t, &attr, fn, arg);
    if (errno)
        die("pthread_create");
    pthread_attr_destroy(&attr);
    return t;
}

/* An alternate signal stack of `size` bytes, mmap'd with an inaccessible
 * page below it, so running off its end faults at once. */
static void altstack(size_t size)
{
    size_t page = 4096, len = (size + page - 1) / page * page;
    char *m = mmap(NULL, len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap altstack");
    if (mprotect(m, page, PROT_NONE) != 0)
        die("mprotect");
    stack_t ss = {.ss_sp = m + page, .ss_size = len, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        die("sigaltstack");
}

static int exit_status;

static void exit_from_handler(int sig)
{
    (void)sig;
    exit(exit_status);
}

static void on_sigusr1_onstack(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_from_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaction");
}

/* ---- class 1 ---- */

static void *exit_when_main_blocked(void *arg)
{
    (void)arg;
    wait_flag(&flag_a);
    wait_in_syscall(main_tid);
    printf("edges: exit from a thread\n");
    exit(0);
}

static int case_exit_thread_join(const char *arg)
{
    (void)arg;
    void *volatile kept = kept_main_local();
    memset(kept, 1, 1101);
    scrub();
    pthread_t t = start(exit_when_main_blocked, 0, NULL);
    flag_a = 1;
    pthread_join(t, NULL);
    return 1; /* not reached */
}

static void *exit_when_main_spins(void *arg)
{
    (void)arg;
    wait_flag(&flag_a);
    printf("edges: exit from a thread\n");
    exit(0);
}

static int case_exit_thread_spin(const char *arg)
{
    (void)arg;
    void *volatile kept = kept_main_local();
    memset(kept, 1, 1101);
    scrub();
    start(exit_when_main_spins, 0, NULL);
    for (;;)
        flag_a = 1;
    return 1;
}

static int case_exit_altstack_main(const char *arg)
{
    (void)arg;
    void *volatile kept = kept_main_local();
    memset(kept, 1, 1101);
    altstack(256 << 10);
    on_sigusr1_onstack();
    scrub();
    printf("edges: exit from a handler\n");
    fflush(stdout);
    raise(SIGUSR1);
    return 1;
}

static void *raise_on_altstack(void *arg)
{
    (void)arg;
    altstack(256 << 10);
    wait_flag(&flag_a);
    wait_in_syscall(main_tid);
    printf("edges: exit from a thread's handler\n");
    fflush(stdout);
    pthread_kill(pthread_self(), SIGUSR1);
    return NULL;
}

static int case_exit_altstack_thread(const char *arg)
{
    (void)arg;
    void *volatile kept = kept_main_local();
    memset(kept, 1, 1101);
    on_sigusr1_onstack();
    scrub();
    pthread_t t = start(raise_on_altstack, 0, NULL);
    flag_a = 1;
    pthread_join(t, NULL);
    return 1;
}

/* ---- class 2 ---- */

static uintptr_t a_lo, a_hi;

static void *thread_a(void *arg)
{
    (void)arg;
    /* An allocation: heapprof notes the thread and its stack. (Before
     * pthread_getattr_np, which allocates too: see getattr-first.) */
    void *volatile scratch = malloc(100);
    memset(scratch, 2, 100);
    free(scratch);
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        die("pthread_getattr_np");
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    a_lo = (uintptr_t)addr;
    a_hi = a_lo + size;
    return NULL;
}

static int b_spins;
static volatile uintptr_t b_local_at;

static void *thread_b(void *arg)
{
    (void)arg;
    /* No allocation here. */
    void *volatile mine = handoff;
    handoff = NULL;
    b_local_at = (uintptr_t)&mine;
    tid_b = gettid();
    flag_b = 1;
    if (b_spins)
        spin_forever();
    block_forever();
    return NULL;
}

static int reused_stack(size_t a_size, size_t b_size, int spins)
{
    pthread_join(start(thread_a, a_size, NULL), NULL);
    b_spins = spins;
    handoff = kept_reused_stack();
    memset(handoff, 3, 1202);
    start(thread_b, b_size, NULL);
    wait_flag(&flag_b);
    if (!spins)
        wait_in_syscall(tid_b);
    scrub();
    printf("edges: B's stack %s A's\n", b_local_at >= a_lo && b_local_at < a_hi ? "is" : "is NOT");
    return 0;
}

static int case_reused_stack_blocked(const char *arg)
{
    (void)arg;
    return reused_stack(256 << 10, 256 << 10, 0);
}

static int case_reused_stack_spin(const char *arg)
{
    (void)arg;
    return reused_stack(256 << 10, 256 << 10, 1);
}

static int case_reused_stack_smaller(const char *arg)
{
    (void)arg;
    return reused_stack(256 << 10, 128 << 10, 1);
}

/* ---- classes 3 and 4 ---- */

static int store_in(void *region, const char *what)
{
    if (region == MAP_FAILED || region == NULL)
        die(what);
    void **slots = region;
    slots[7] = kept_shared();
    memset(slots[7], 4, 1303);
    scrub();
    printf("edges: kept in %s\n", what);
    return 0;
}

static void *map_fd(int fd, const char *what)
{
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        die(what);
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return m;
}

static int case_shared_anon(const char *arg)
{
    (void)arg;
    return store_in(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
                    "a shared anonymous mapping");
}

static int case_shm_open(const char *arg)
{
    (void)arg;
    char name[64];
    snprintf(name, sizeof name, "/heapprof-edges-%d", (int)getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    shm_unlink(name);
    return store_in(map_fd(fd, "shm_open"), "a shm_open mapping");
}

static int case_memfd(const char *arg)
{
    (void)arg;
    return store_in(map_fd(memfd_create("heapprof-edges", MFD_CLOEXEC), "memfd_create"),
                    "a memfd mapping");
}

static int case_shared_file(const char *arg)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/edges-shared-XXXXXX", arg ? arg : "/tmp");
    int fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return store_in(map_fd(fd, "a file"), "a shared file mapping");
}

static int case_sysv_shm(const char *arg)
{
    (void)arg;
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0)
        die("shmget");
    void *m = shmat(id, NULL, 0);
    shmctl(id, IPC_RMID, NULL); /* gone when the process is */
    return store_in(m == (void *)-1 ? NULL : m, "a SysV shared memory segment");
}

static void *private_anon(int advice, const char *what)
{
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || madvise(m, 4096, advice) != 0)
        die(what);
    return m;
}

static int case_dontfork(const char *arg)
{
    (void)arg;
    return store_in(private_anon(MADV_DONTFORK, "MADV_DONTFORK"), "a mapping marked MADV_DONTFORK");
}

static int case_wipeonfork(const char *arg)
{
    (void)arg;
    return store_in(private_anon(MADV_WIPEONFORK, "MADV_WIPEONFORK"),
                    "a mapping marked MADV_WIPEONFORK");
}

static int case_sbrk(const char *arg)
{
    (void)arg;
    void **m = sbrk(4096);
    if (m == (void *)-1)
        die("sbrk");
    m[5] = kept_sbrk();
    memset(m[5], 5, 1404);
    scrub();
    printf("edges: kept in sbrk memory\n");
    return 0;
}

/* ---- class 5 ---- */

#if defined(__x86_64__)
static void *hold_in_registers(void *arg)
{
    (void)arg;
    /* The pointer goes from the global into r12 and r15, the global is
     * cleared, and the thread spins: no copy in memory. */
    __asm__ volatile("movq %[h], %%r12\n\t"
                     "movq %%r12, %%r15\n\t"
                     "movq $0, %[h]\n\t"
                     "movl $1, %[f]\n\t"
                     "1: pause\n\t"
                     "jmp 1b\n\t"
                     : [h] "+m"(handoff), [f] "=m"(flag_a)
                     :
                     : "r12", "r15", "memory");
    __builtin_unreachable();
}

static int case_register(const char *arg)
{
    (void)arg;
    handoff = kept_in_register();
    memset(handoff, 6, 1505);
    start(hold_in_registers, 0, NULL);
    wait_flag(&flag_a);
    scrub();
    printf("edges: kept in a register\n");
    return 0;
}
#else
static int case_register(const char *arg)
{
    (void)arg;
    printf("edges: not x86-64\n");
    return 77;
}
#endif

/* ---- class 7 ---- */

static int case_largebin(const char *arg)
{
    (void)arg;
    /* Chunk sizes: lost_largebin 1104 (usable 1096, all of it asked for),
     * f1 3600 and f2 3760, both in the large bin of 3584..4095. */
    char *v = lost_largebin();
    char *f1 = freed_later(3592);
    kept_global[0] = kept_guard();
    char *f2 = freed_later(3752);
    kept_global[1] = kept_guard();
    memset(v, 8, 1096);
    uintptr_t f1_at = (uintptr_t)f1, f1_header = f1_at - 16;
    free(f1);
    free(f2);
    /* Larger than both (a small request would be cut from one of them):
     * sorts them from the unsorted bin into their large bin, where each
     * one's fd_nextsize and bk_nextsize point at the other. */
    kept_global[2] = malloc(8000);
    /* The exact fit for f2: taken out of the bin, its words kept. */
    uintptr_t *r = kept_reused_chunk(3752);
    hold = r;
    int laid_out = f1_at == (uintptr_t)v + 1104 && (char *)r == f2;
    int stale = 0;
    if (laid_out)
        for (int i = 0; i < 4; i++)
            stale += r[i] == f1_header;
    /* stderr: the layout is glibc's, and valgrind's allocator has its own. */
    fprintf(stderr, "edges: %s, %d stale words pointing into lost_largebin\n",
            laid_out ? "laid out as planned" : "NOT laid out as planned", stale);
    /* r is kept, its first words untouched; v is lost. */
    memset(r + 4, 9, 3752 - 32);
    kept_global[3] = r;
    hold = v;
    hold = NULL;
    printf("edges: largebin\n");
    return 0;
}

static void *fill_arena(void *arg)
{
    (void)arg;
    void *target = handoff;
    handoff = NULL;
    enum { N = 400 };
    void *objs[N];
    for (int i = 0; i < N; i++) {
        void **o = malloc(64);
        for (int k = 0; k < 8; k++)
            o[k] = target;
        objs[i] = o;
    }
    uintptr_t heap_end = (uintptr_t)sbrk(0);
    flag_a = (uintptr_t)objs[0] > heap_end; /* not the main arena's brk heap */
    for (int i = 0; i < N; i++)
        free(objs[i]);
    return NULL;
}

static int case_thread_arena(const char *arg)
{
    (void)arg;
    handoff = lost_arena_target();
    memset(handoff, 10, 1707);
    pthread_join(start(fill_arena, 0, NULL), NULL);
    scrub();
    fprintf(stderr, "edges: the thread's objects %s\n",
            flag_a ? "were in an arena of their own" : "were in the brk heap");
    printf("edges: thread arena\n");
    return 0;
}

/* ---- class 8 ---- */

static int dtor_armed;

__attribute__((destructor)) static void program_destructor(void)
{
    if (!dtor_armed)
        return;
    hold = lost_in_destructor();
    memset(hold, 11, 1808);
    hold = NULL;
}

static int case_dtor(const char *arg)
{
    (void)arg;
    dtor_armed = 1;
    printf("edges: leak in a destructor\n");
    return 0;
}

static int case_dlopen(const char *arg, const char *what)
{
    if (!arg) {
        fprintf(stderr, "edges: %s needs the library's path\n", what);
        return 2;
    }
    void *h = dlopen(arg, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "edges: dlopen %s: %s\n", arg, dlerror());
        return 2;
    }
    return 0;
}

static int case_dlopen_ctor(const char *arg)
{
    int r = case_dlopen(arg, "dlopen-ctor");
    scrub();
    printf("edges: dlopen'ed\n");
    return r;
}

static int case_dlopen_global(const char *arg)
{
    int r = case_dlopen(arg, "dlopen-global");
    if (r)
        return r;
    void *h = dlopen(arg, RTLD_NOW | RTLD_NOLOAD);
    void **slot = h ? dlsym(h, "edges_lib_global") : NULL;
    if (!slot) {
        fprintf(stderr, "edges: no edges_lib_global in %s\n", arg);
        return 2;
    }
    *slot = kept_lib_global();
    memset(*slot, 12, 2919);
    scrub();
    printf("edges: kept in a library's global\n");
    return 0;
}

static int case_newlocale(const char *arg)
{
    (void)arg;
    locale_t l = lost_newlocale();
    if (l == (locale_t)0)
        die("newlocale C.UTF-8");
    hold = l;
    hold = NULL;
    scrub();
    printf("edges: newlocale dropped\n");
    return 0;
}

/* ---- class 9 ---- */

static void small_stack_objects(void)
{
    kept_global[0] = kept_small_stack();
    memset(kept_global[0], 13, 2010);
    hold = lost_small_stack();
    memset(hold, 14, 2111);
    hold = NULL;
    scrub();
}

static int exit_on_altstack(size_t size)
{
    small_stack_objects();
    altstack(size);
    exit_status = 7;
    on_sigusr1_onstack();
    printf("edges: exit(7) from a handler on a %zu-byte altstack\n", size);
    fflush(stdout);
    raise(SIGUSR1);
    return 1;
}

static int case_altstack_sigstksz(const char *arg)
{
    (void)arg;
    /* SIGSTKSZ as <signal.h> gives it without _GNU_SOURCE (8192), which
     * programs built before glibc 2.34 have compiled in. With _GNU_SOURCE
     * it is sysconf(_SC_SIGSTKSZ), 47808 on the machine the truth was
     * established on: altstack-48k covers that. */
    return exit_on_altstack(LEGACY_SIGSTKSZ);
}

static int case_altstack_16k(const char *arg)
{
    (void)arg;
    return exit_on_altstack(16 << 10);
}

static int case_altstack_32k(const char *arg)
{
    (void)arg;
    return exit_on_altstack(32 << 10);
}

static int case_altstack_48k(const char *arg)
{
    (void)arg;
    return exit_on_altstack(48 << 10);
}

static void *exit_7(void *arg)
{
    (void)arg;
    exit(7);
}

static int case_thread_16k(const char *arg)
{
    (void)arg;
    small_stack_objects();
    /* stdout's buffer is allocated here, not on the small stack. */
    printf("edges: exit(7) from a thread with a 16 KiB stack\n");
    pthread_join(start(exit_7, 16384, NULL), NULL);
    return 1;
}

/* ---- class 10 ---- */

static void tight_rlimit_as(void)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("/proc/self/status");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        die("read /proc/self/status");
    buf[n] = 0;
    char *vm = strstr(buf, "VmSize:");
    if (!vm)
        die("no VmSize");
    unsigned long long kb = strtoull(vm + 7, NULL, 10);
    struct rlimit rl = {.rlim_cur = (kb + 1024) * 1024, .rlim_max = (kb + 1024) * 1024};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        die("setrlimit");
}

static int rlimit_as(int lose)
{
    tight_rlimit_as();
    hold = lost_rlimit();
    if (!hold)
        die("malloc under the limit");
    memset(hold, 15, 2212);
    if (!lose)
        free(hold);
    hold = NULL;
    scrub();
    printf("edges: under RLIMIT_AS\n");
    return 0;
}

static int case_rlimit_as_lost(const char *arg)
{
    (void)arg;
    return rlimit_as(1);
}

static int case_rlimit_as_none(const char *arg)
{
    (void)arg;
    return rlimit_as(0);
}

/* ---- more ---- */

static __thread void *tls_slot;

static void *keep_in_tls(void *arg)
{
    tls_slot = handoff;
    handoff = NULL;
    escape(&tls_slot);
    tid_b = gettid();
    flag_b = 1;
    if (arg)
        block_forever();
    return NULL;
}

static int case_tls_live_thread(const char *arg)
{
    (void)arg;
    handoff = kept_tls_thread();
    memset(handoff, 16, 2313);
    start(keep_in_tls, 0, (void *)1);
    wait_flag(&flag_b);
    wait_in_syscall(tid_b);
    scrub();
    printf("edges: kept in a thread's TLS\n");
    return 0;
}

static int case_tls_exited_thread(const char *arg)
{
    (void)arg;
    handoff = lost_tls_exited();
    memset(handoff, 17, 2414);
    pthread_join(start(keep_in_tls, 0, NULL), NULL);
    scrub();
    printf("edges: kept in an exited thread's TLS\n");
    return 0;
}

#define XOR_KEY ((uintptr_t)0x5a5a5a5a5a5a5a5aull)
volatile uintptr_t xored;

static int case_xor(const char *arg)
{
    (void)arg;
    hold = lost_xor();
    memset(hold, 18, 2515);
    xored = (uintptr_t)hold ^ XOR_KEY;
    hold = NULL;
    scrub();
    printf("edges: xor-ed\n");
    return 0;
}

static int case_pipe(const char *arg)
{
    (void)arg;
    int p[2];
    if (pipe(p) != 0)
        die("pipe");
    hold = lost_in_pipe();
    memset(hold, 19, 2616);
    void *copy = hold;
    if (write(p[1], &copy, sizeof copy) != sizeof copy)
        die("write");
    copy = NULL;
    escape(&copy);
    hold = NULL;
    scrub();
    printf("edges: in a pipe\n");
    return 0;
}

static void *poll_forever(void *arg)
{
    (void)arg;
    void *volatile mine = handoff;
    handoff = NULL;
    escape(mine);
    tid_b = gettid();
    flag_b = 1;
    for (;;)
        poll(NULL, 0, -1);
    return NULL;
}

static int case_poll_thread(const char *arg)
{
    (void)arg;
    handoff = kept_poll_thread();
    memset(handoff, 20, 2717);
    start(poll_forever, 0, NULL);
    wait_flag(&flag_b);
    wait_in_syscall(tid_b);
    scrub();
    printf("edges: kept by a thread in poll\n");
    return 0;
}

static int case_mprotect_ro(const char *arg)
{
    (void)arg;
    void **m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap");
    m[9] = lost_in_readonly_map();
    memset(m[9], 21, 2818);
    if (mprotect(m, 4096, PROT_READ) != 0)
        die("mprotect");
    scrub();
    printf("edges: kept in a read-only mapping\n");
    return 0;
}

/* A thread whose first allocation is the one pthread_getattr_np makes
 * (its cpuset, while it holds the thread's lock). */
static void *getattr_first(void *arg)
{
    (void)arg;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        die("pthread_getattr_np");
    pthread_attr_destroy(&attr);
    kept_global[0] = kept_after_getattr();
    memset(kept_global[0], 23, 3222);
    return NULL;
}

static int case_getattr_first(const char *arg)
{
    (void)arg;
    pthread_join(start(getattr_first, 0, NULL), NULL);
    printf("edges: pthread_getattr_np first\n");
    return 0;
}

/* ---- main ---- */

struct edge_case {
    const char *name;
    int (*fn)(const char *arg);
};

static const struct edge_case cases[] = {
    {"exit-thread-join", case_exit_thread_join},
    {"exit-thread-spin", case_exit_thread_spin},
    {"exit-altstack-main", case_exit_altstack_main},
    {"exit-altstack-thread", case_exit_altstack_thread},
    {"reused-stack-blocked", case_reused_stack_blocked},
    {"reused-stack-spin", case_reused_stack_spin},
    {"reused-stack-smaller", case_reused_stack_smaller},
    {"shared-anon", case_shared_anon},
    {"shm-open", case_shm_open},
    {"memfd", case_memfd},
    {"shared-file", case_shared_file},
    {"sysv-shm", case_sysv_shm},
    {"dontfork", case_dontfork},
    {"wipeonfork", case_wipeonfork},
    {"sbrk", case_sbrk},
    {"register", case_register},
    {"largebin", case_largebin},
    {"thread-arena", case_thread_arena},
    {"dtor", case_dtor},
    {"dlopen-ctor", case_dlopen_ctor},
    {"newlocale", case_newlocale},
    {"altstack-sigstksz", case_altstack_sigstksz},
    {"altstack-16k", case_altstack_16k},
    {"altstack-32k", case_altstack_32k},
    {"altstack-48k", case_altstack_48k},
    {"thread-16k", case_thread_16k},
    {"rlimit-as-lost", case_rlimit_as_lost},
    {"rlimit-as-none", case_rlimit_as_none},
    {"tls-live-thread", case_tls_live_thread},
    {"tls-exited-thread", case_tls_exited_thread},
    {"xor", case_xor},
    {"pipe", case_pipe},
    {"poll-thread", case_poll_thread},
    {"mprotect-ro", case_mprotect_ro},
    {"dlopen-global", case_dlopen_global},
    {"getattr-first", case_getattr_first},
};

int main(int argc, char **argv)
{
    main_tid = gettid();
    if (argc < 2) {
        fprintf(stderr, "usage: edges CASE [ARG]\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name))
            continue;
        int r = cases[i].fn(argc > 2 ? argv[2] : NULL);
        /* The case's frames were below this one: what they left there
         * goes (tests/leaks/edges/stale.c is about what stays). */
        scrub();
        return r;
    }
    fprintf(stderr, "edges: no case %s\n", argv[1]);
    return 2;
}
