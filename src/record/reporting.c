/* The reporting half, libheapprof-report.so.VERSION, from the directory this
 * object was loaded from (a build tree and an installed tree alike): found
 * at start-up, loaded when first needed.
 *
 * Loading it and what it brings (libdw, libelf, protobuf-c, zlib and theirs)
 * costs a process about 0.3 ms. Most processes need it only at exit, to
 * write; many never do: a shell that execs its command, a compiler driver
 * that execs or a program killed outright. So it is loaded by whatever first
 * needs it: the constructor when the background thread, a CPU profile or a
 * trace is asked for, heapprof_dump and heapprof_snapshot, and the exit,
 * which runs on heapprof's own stack inside the busy mark (record/exit.c).
 * At start-up the file is only looked for, so that a library installed
 * without it still says so then, in one line, and profiles nothing.
 */
#define _GNU_SOURCE
#include "record.h"
#include "heapprof.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static bool tried;

/* Its path, from the path of the object that holds this function. */
static bool report_path(char *out, size_t len)
{
    const char *self = hp_dl_path_of((const void *)report_path);
    if (!self || !strchr(self, '/')) {
        hp_log("heapprof: cannot find where libheapprof is loaded from; profiling is off");
        return false;
    }
    const char *slash = strrchr(self, '/');
    int n = snprintf(out, len, "%.*s/libheapprof-report.so.%s", (int)(slash - self), self,
                     HEAPPROF_VERSION);
    return n > 0 && (size_t)n < len;
}

bool hp_report_find(void)
{
    char path[4200];
    if (!report_path(path, sizeof path))
        return false;
    if (access(path, R_OK) != 0) {
        hp_log("heapprof: cannot load the reporting half %s (no such file beside the library); "
               "profiling is off",
               path);
        return false;
    }
    return true;
}

static void load(void)
{
    char path[4200];
    if (!report_path(path, sizeof path))
        return;
    void *h = hp_dl_open(path, RTLD_NOW | RTLD_LOCAL);
    const struct hp_report *r = h ? dlsym(h, HP_REPORT_SYMBOL) : NULL;
    if (!r) {
        hp_log("heapprof: cannot load the reporting half %s (%s); no profile is written", path,
               h ? "no entry table" : dlerror());
        return;
    }
    __atomic_store_n(&hp_report, r, __ATOMIC_RELEASE);
}

const struct hp_report *hp_report_need(bool may_wait)
{
    const struct hp_report *r = __atomic_load_n(&hp_report, __ATOMIC_ACQUIRE);
    if (r)
        return r;
    /* Without waiting (the exit-signal handler): the thread the signal
     * interrupted may be the one loading it. */
    if (may_wait)
        hp_mutex_lock(&load_mu);
    else if (pthread_mutex_trylock(&load_mu) != 0)
        return NULL;
    if (!tried) {
        tried = true;
        bool was_busy = hp_busy_begin();
        load();
        hp_busy_end(was_busy);
    }
    pthread_mutex_unlock(&load_mu);
    return __atomic_load_n(&hp_report, __ATOMIC_ACQUIRE);
}

/* A fork while another thread was loading it: the child tries again. */
void hp_report_child(void)
{
    pthread_mutex_init(&load_mu, NULL);
    if (!__atomic_load_n(&hp_report, __ATOMIC_ACQUIRE))
        tried = false;
}
