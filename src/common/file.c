/* Files heapprof reads whole (its own /proc entries, a suppressions file,
 * a parent's environment), into memory of its own.
 */
#define _GNU_SOURCE
#include "hp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- reading files ---- */

char *hp_read_file(struct hp_arena *a, const char *path, size_t *lenp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    /* Small at first: most of these files are a few hundred bytes (a
     * command line, an environment), and the buffer is zeroed, so each of
     * its pages is a fault; /proc/self/maps grows it to 16 KiB. */
    size_t cap = 4096, len = 0;
    char *buf = hp_alloc(cap);
    while (buf) {
        ssize_t n = hp_read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len + 1 == cap) {
            char *nb = hp_alloc(cap * 2);
            if (nb)
                memcpy(nb, buf, len);
            hp_free(buf, cap);
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    char *out = NULL;
    if (buf) {
        buf[len] = 0;
        out = hp_arena_alloc(a, len + 1);
        if (out)
            memcpy(out, buf, len + 1);
        hp_free(buf, cap);
    }
    if (lenp)
        *lenp = out ? len : 0;
    return out;
}

/* Calls match on each entry of /proc/PID/environ (NUL-terminated, without
 * the NUL) until it returns true; false if none did or the file cannot be
 * read. */
static bool environ_find(pid_t pid, bool (*match)(const char *e, size_t len, const void *arg),
                         const void *arg)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%ld/environ", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool found = false;
    /* Entries are NUL-terminated; carry a partial entry across reads. */
    size_t have = 0;
    while (!found) {
        ssize_t n = hp_read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < have && !found; i++) {
            if (buf[i] != 0)
                continue;
            found = match(buf + start, i - start, arg);
            start = i + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf)
            have = 0; /* an entry longer than the buffer: not the one */
    }
    close(fd);
    return found;
}

struct inherited {
    const char *name, *value;
};

/* NAME=VALUE, or NAME=REL with REL relative and VALUE ending in /REL. */
static bool inherited_entry(const char *e, size_t len, const void *arg)
{
    const struct inherited *w = arg;
    size_t nl = strlen(w->name), vl = strlen(w->value);
    if (len <= nl || memcmp(e, w->name, nl) != 0 || e[nl] != '=')
        return false;
    const char *v = e + nl + 1;
    size_t rl = len - nl - 1;
    if (rl == vl && !memcmp(v, w->value, vl))
        return true;
    return w->value[0] == '/' && rl > 0 && v[0] != '/' && rl < vl && w->value[vl - rl - 1] == '/' &&
           !memcmp(w->value + vl - rl, v, rl);
}

bool hp_proc_environ_inherits(pid_t pid, const char *name, const char *value)
{
    struct inherited w = {name, value};
    return environ_find(pid, inherited_entry, &w);
}
