/* rb_pidlog: a preloadable library that records every process that ends
 * through exit(), for the real-programs tests (real_programs.py).
 *
 * heapprof writes its profile from its destructor; this library's destructor
 * runs at the same point of a normal exit, so the processes it lists are
 * exactly those that must have left a profile. Each appends one line,
 * `PID EXE`, to the file named by RB_PIDLOG (O_APPEND: one write, so lines
 * from concurrent processes do not mix). It never allocates.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((destructor)) static void pidlog_exit(void)
{
    const char *log = getenv("RB_PIDLOG");
    if (!log || !*log)
        return;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        n = 0;
    exe[n] = 0;
    char line[4200];
    int len = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), exe);
    if (len <= 0 || (size_t)len >= sizeof line)
        return;
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)len);
    (void)w;
    close(fd);
}
