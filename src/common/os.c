/* OS primitives: everything heapprof asks of the kernel beyond memory
 * (common/mem.c) and the loader (record/dl.c), in one place. Clocks,
 * diagnostics through write(2), descriptors kept out of the program's way,
 * /proc and other files read whole, and files written atomically (or in
 * place, for descriptors, FIFOs and devices).
 */
#define _GNU_SOURCE
#include "hp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- clocks ---- */

int64_t hp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t hp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t hp_mono_ms(void)
{
    return hp_mono_ns() / 1000000;
}

/* ---- memory maps (the profiler's own memory, common/mem.c) ---- */

void *hp_os_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void hp_os_unmap(void *p, size_t len)
{
    /* The system call itself: libheapprof.so interposes munmap. */
    syscall(SYS_munmap, p, len);
}

/* ---- diagnostics ---- */

/* Some programs close stderr at exit (coreutils' close_stdout does), after
 * which the leak summary would be lost. A copy of stderr is kept on a high
 * descriptor, checked by device and inode before each use, because a program
 * may have put something else on that number since. */
static int err_fd = -1;
static dev_t err_dev;
static ino_t err_ino;

void hp_stderr_keep(void)
{
    struct stat st;
    if (err_fd >= 0)
        return; /* kept already */
    if (fstat(STDERR_FILENO, &st) != 0)
        return;
    int fd = hp_fd_dup_high(STDERR_FILENO);
    if (fd < 0)
        return;
    err_fd = fd;
    err_dev = st.st_dev;
    err_ino = st.st_ino;
}

/* Chosen once per dump, before symbolization opens files that could take a
 * closed descriptor 2's number. */
static int chosen_fd = -1;

void hp_stderr_choose(void)
{
    struct stat st;
    chosen_fd = STDERR_FILENO;
    if (fcntl(STDERR_FILENO, F_GETFD) < 0 && err_fd >= 0 && fstat(err_fd, &st) == 0 &&
        st.st_dev == err_dev && st.st_ino == err_ino)
        chosen_fd = err_fd;
}

int hp_stderr_fd(void)
{
    return chosen_fd >= 0 ? chosen_fd : STDERR_FILENO;
}

int hp_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

void hp_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    hp_write_all(hp_stderr_fd(), buf, (size_t)n);
}

/* ---- descriptors ---- */

int hp_fd_dup_high(int fd)
{
    /* Out of the low numbers a program may expect to get from open(). */
    return fcntl(fd, F_DUPFD_CLOEXEC, 900);
}

int hp_fd_high(int fd)
{
    if (fd < 0)
        return fd;
    int hi = hp_fd_dup_high(fd);
    if (hi < 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        return fd;
    }
    close(fd);
    return hi;
}

int hp_absolute_path(char *out, size_t len, const char *path)
{
    if (path[0] == '/') {
        if (strlen(path) >= len)
            return -ENAMETOOLONG;
        strcpy(out, path);
        return 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return -errno;
    int n = snprintf(out, len, "%s/%s", strcmp(cwd, "/") ? cwd : "", path);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- writing files ---- */

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* A name for one of the process's descriptors: /dev/stdin, /dev/stdout,
 * /dev/stderr, /dev/fd/N, /proc/self/fd/N, /proc/thread-self/fd/N or
 * /proc/PID/fd/N. */
static bool names_descriptor(const char *path)
{
    static const char *const prefixes[] = {"/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/"};
    if (!strcmp(path, "/dev/stdin") || !strcmp(path, "/dev/stdout") || !strcmp(path, "/dev/stderr"))
        return true;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(path, prefixes[i], strlen(prefixes[i])))
            return all_digits(path + strlen(prefixes[i]));
    if (strncmp(path, "/proc/", 6) != 0)
        return false;
    const char *p = path + 6, *slash = strchr(p, '/');
    if (!slash || slash == p || strncmp(slash, "/fd/", 4) != 0)
        return false;
    for (const char *q = p; q < slash; q++)
        if (*q < '0' || *q > '9')
            return false;
    return all_digits(slash + 4);
}

bool hp_path_in_place(const char *path)
{
    if (names_descriptor(path))
        return true;
    struct stat st, target;
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode))
        return false;
    /* A symlink is replaced like a file (never followed into a file someone
     * else planted it to), unless it leads to a FIFO, device or socket. */
    if (S_ISLNK(st.st_mode))
        return stat(path, &target) == 0 && !S_ISREG(target.st_mode) && !S_ISDIR(target.st_mode);
    return true;
}

static int write_file_atomic(const char *path, const void *data, size_t len);

/* Writing past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills the
 * program: a profile must never do that. The signal is blocked on this
 * thread while writing (write then fails with EFBIG), and one raised by the
 * write is taken off the pending set before the mask is restored. */
int hp_write_file_atomic(const char *path, const void *data, size_t len)
{
    sigset_t xfsz, old;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &xfsz, &old);
    sigset_t pending;
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGXFSZ);
    int r = write_file_atomic(path, data, len);
    if (!was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&xfsz, NULL, &zero) == SIGXFSZ)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

/* Writes everything and closes fd: 0 or the first errno. No fdatasync: it
 * made a dump several times slower, and a full disk already shows in write()
 * (block reservation, on ext4 and tmpfs among others) or in close() (network
 * file systems). */
static int write_and_close(int fd, const void *data, size_t len)
{
    int err = hp_write_all(fd, data, len);
    if (close(fd) != 0 && !err && errno != EINTR)
        err = errno;
    return err;
}

/* A path naming a FIFO, a device (HEAPPROF=/dev/null), a socket or a
 * descriptor (HEAPPROF_LEAKS=/dev/stderr) is written in place: renaming over
 * it would replace the node itself with a regular file. */
static int write_special(const char *path, const void *data, size_t len)
{
    /* O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of
     * hanging the program's exit. O_APPEND: a descriptor that is a regular
     * file (2>log) gets the text after what is already there. */
    int fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return -write_and_close(fd, data, len);
}

/* Puts the file written at tmp in path's place, atomically: a reader sees
 * the old file or the new one whole. Over an existing file, the two are
 * exchanged and the old one, now at tmp, unlinked: a rename over it would
 * cost 0.1 to 1 ms on ext4, which starts writing the new file's data out
 * first (auto_da_alloc, its guard for programs that replace a file without
 * fsync; heapprof does not sync its files: see write_and_close). Where there
 * is no file yet, or the file system cannot exchange, a plain rename. */
static int replace(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
        unlink(tmp);
        return 0;
    }
    return rename(tmp, path) == 0 ? 0 : errno;
}

static int write_file_atomic(const char *path, const void *data, size_t len)
{
    static unsigned counter;
    if (hp_path_in_place(path))
        return write_special(path, data, len); /* a directory fails with EISDIR */
    char tmp[4200];
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        unsigned c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), c);
        if (n < 0 || (size_t)n >= sizeof tmp)
            return -ENAMETOOLONG;
        /* O_EXCL: never follows a symlink planted at the temporary name, and
         * never writes into a file someone else made. */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0 && errno != EEXIST)
            return -errno;
    }
    if (fd < 0)
        return -EEXIST;
    int err = write_and_close(fd, data, len);
    if (!err)
        err = replace(tmp, path);
    if (err) {
        unlink(tmp);
        return -err;
    }
    return 0;
}

int hp_thread_spawn(void *(*fn)(void *), const char *name)
{
    return hp_thread_spawn_with(fn, NULL, name);
}

int hp_thread_spawn_with(void *(*fn)(void *), void *arg, const char *name)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The C library's: heapprof's own pthread_create (interpose/threads.c)
     * is for the program's threads. */
    hp_real_resolve();
    int r = hp_real.pthread_create ? hp_real.pthread_create(&tid, &attr, fn, arg) : ENOSYS;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0)
        hp_real.pthread_setname_np(tid, name);
    return r;
}
