/* exec: the image is about to be replaced, and with it every buffer of a
 * running execution trace. The trace notes the exec as an instant event
 * (with the program it runs), and a trace going to a file is written first
 * (record/trace.c), as at exit.
 *
 * Every form is hooked, not execve alone: glibc's execv, execvp, execl and
 * the rest call its internal execve directly, past the symbol table. The
 * list forms gather their arguments into an array and call the real
 * vector form, as glibc does. posix_spawn and system do not replace the
 * caller's image and are not hooked.
 *
 * Outside a trace each hook is one load and a branch before the real call;
 * what the program sees (return value, errno, the environment passed) is
 * the real call's.
 */
#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether an exec of file could start a program: an executable file at
 * that path or, with search, in a directory of PATH (as glibc's execvp
 * searches: a name with a slash is taken as a path; PATH unset means
 * "/bin:/usr/bin"). A shell looking for a command tries each directory of
 * PATH with execve, and only the last try succeeds: those that cannot
 * start anything neither end the trace nor appear in it. A call that
 * fails for another reason (E2BIG, ENOEXEC, a file that vanished) still
 * ends it: see README, "Execution traces". */
static bool would_run(const char *file, bool search)
{
    if (!file || !*file)
        return false;
    if (!search || strchr(file, '/'))
        return access(file, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t flen = strlen(file);
    char buf[4096];
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen + 1 + flen < sizeof buf) {
            /* An empty entry is the current directory. */
            size_t n = 0;
            if (dlen) {
                memcpy(buf, p, dlen);
                n = dlen;
                buf[n++] = '/';
            }
            memcpy(buf + n, file, flen + 1);
            if (access(buf, X_OK) == 0)
                return true;
        }
        if (!end)
            return false;
        p = end;
    }
}

static inline void before_exec(const char *what, bool search)
{
    if (HP_TRACING() && would_run(what, search))
        hp_trace_exec(what);
}

HEAPPROF_API int execve(const char *path, char *const argv[], char *const envp[])
{
    before_exec(path, false);
    return HP_REAL(execve)(path, argv, envp);
}

HEAPPROF_API int execv(const char *path, char *const argv[])
{
    before_exec(path, false);
    return HP_REAL(execv)(path, argv);
}

HEAPPROF_API int execvp(const char *file, char *const argv[])
{
    before_exec(file, true);
    return HP_REAL(execvp)(file, argv);
}

HEAPPROF_API int execvpe(const char *file, char *const argv[], char *const envp[])
{
    before_exec(file, true);
    return HP_REAL(execvpe)(file, argv, envp);
}

HEAPPROF_API int fexecve(int fd, char *const argv[], char *const envp[])
{
    if (HP_TRACING())
        hp_trace_exec("fexecve");
    return HP_REAL(fexecve)(fd, argv, envp);
}

/* The list forms: arg0, ..., NULL (then envp for execle), gathered on the
 * stack as glibc gathers them. A list longer than MAX_LIST would fail in
 * the kernel anyway (E2BIG); it is refused here with that error. */
enum { MAX_LIST = 1 << 16 };

/* The arguments after the first, up to the NULL, counted on a copy. */
static size_t count(va_list *ap)
{
    va_list c;
    va_copy(c, *ap);
    size_t n = 1;
    while (n < MAX_LIST && va_arg(c, char *) != NULL)
        n++;
    va_end(c);
    return n;
}

static void fill(char **argv, size_t n, const char *first, va_list *ap)
{
    argv[0] = (char *)first;
    for (size_t i = 1; i < n; i++)
        argv[i] = va_arg(*ap, char *);
    argv[n] = NULL;
    (void)va_arg(*ap, char *); /* the NULL: execle's envp comes next */
}

/* The list form's arguments from arg on, gathered into argv on the
 * caller's stack (the alloca must be the caller's: a macro, not a
 * function); a list too long returns E2BIG from the caller. */
#define GATHER(argv, arg, ap)                                                                      \
    size_t n_ = count(&ap);                                                                        \
    if (n_ >= MAX_LIST) {                                                                          \
        va_end(ap);                                                                                \
        errno = E2BIG;                                                                             \
        return -1;                                                                                 \
    }                                                                                              \
    char **argv = __builtin_alloca((n_ + 1) * sizeof *argv);                                       \
    fill(argv, n_, arg, &ap)

HEAPPROF_API int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    GATHER(argv, arg, ap);
    va_end(ap);
    before_exec(path, false);
    return HP_REAL(execv)(path, argv);
}

HEAPPROF_API int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    GATHER(argv, arg, ap);
    va_end(ap);
    before_exec(file, true);
    return HP_REAL(execvp)(file, argv);
}

HEAPPROF_API int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    GATHER(argv, arg, ap);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    before_exec(path, false);
    return HP_REAL(execve)(path, argv, envp);
}
