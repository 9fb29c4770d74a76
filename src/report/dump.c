/* Dumps: a heap profile (a snapshot of the recording half's tables,
 * symbolized, written as a profile and, at exit, the leak check and the
 * leak summary), a numbered snapshot, a CPU profile; one at a time, and
 * each on a thread marked busy, so that nothing it allocates is recorded.
 */
#define _GNU_SOURCE
#include "dump.h"
#include "iface.h"
#include "cpuprof.h"
#include "leakcheck.h"
#include "leaks.h"
#include "profile.h"
#include "reach.h"
#include "symbols.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

int hp_dump_to(const char *path, enum hp_dump_kind kind, int *nleaks)
{
    bool was_busy = hp_busy_begin();
    hp_mutex_lock(&dump_lock);
    hp_stderr_choose();
    int r;
    struct hp_snapshot snap;
    char comment[256];
    /* At exit, with the leak summary on: the leak check's verdicts first. */
    bool verdicts = false;
    if (kind == HP_DUMP_NOW && nleaks && hp_cfg.leak_scan) {
        struct hp_reach_stats st;
        int rr = hp_reach_check(&st);
        if (rr)
            hp_log("heapprof: the leak check could not be made (%s); the leak summary lists "
                   "memory never freed",
                   strerror(-rr));
        verdicts = rr == 0;
        /* What it read and how long it took: asked for, or when it took
         * long enough for the wait at exit to want an explanation. */
        if (verdicts && (hp_cfg.leak_stats || st.ns >= 1000000000))
            hp_log("heapprof: leak check: %llu objects, %llu lost, %.1f MiB of roots and %.1f MiB "
                   "of objects read in %.1f ms; %.1f MiB of memory of its own%s",
                   (unsigned long long)st.objects, (unsigned long long)(st.definite + st.indirect),
                   (double)st.root_bytes / 1048576.0, (double)st.heap_bytes / 1048576.0,
                   (double)st.ns / 1e6, (double)st.child_bytes / 1048576.0,
                   hp_cfg.leak_stats ? "" : " (HEAPPROF_LEAK_SCAN=0 turns it off)");
    }
    r = kind == HP_DUMP_PEAK ? hp_snapshot_peak(&snap)
        : verdicts           ? hp_snapshot_take_verdicts(&snap)
                             : hp_snapshot_take(&snap);
    if (r == 0) {
        int n = 0;
        if (kind == HP_DUMP_PEAK) {
            int64_t seen, copied;
            hp_peak_levels(&seen, &copied);
            n = snprintf(comment, sizeof comment,
                         "heapprof peak: in-use estimate %lld bytes at its highest, %lld when "
                         "copied. ",
                         (long long)seen, (long long)copied);
        }
        if (hp_table_folded() && n >= 0 && (size_t)n < sizeof comment)
            snprintf(comment + n, sizeof comment - (size_t)n,
                     "heapprof: the stack table reached HEAPPROF_MAX_MEMORY (%zu bytes); stacks "
                     "first seen after that are counted under [other].",
                     hp_cfg.max_memory);
        if (kind == HP_DUMP_PEAK || hp_table_folded())
            snap.comment = comment;
        struct hp_symbolizer *sym = hp_sym_open(&snap.arena);
        r = hp_profile_write(&snap, sym, path, hp_start_ns());
        if (r)
            hp_log("heapprof: cannot write the profile %s: %s", path, strerror(-r));
        if (nleaks)
            *nleaks = hp_leaks_report(&snap, sym);
        hp_sym_close(sym);
    } else if (r != -ENOENT) {
        hp_log("heapprof: cannot take a snapshot for %s: %s", path, strerror(-r));
        if (nleaks) {
            /* No summary, but the CI gate still holds: on memory never
             * freed, which includes whatever is lost. */
            size_t live = hp_live_count_frozen();
            hp_log("heapprof: no leak summary: %zu sampled objects were never freed", live);
            *nleaks = live > 0;
        }
    }
    hp_snapshot_release(&snap);
    pthread_mutex_unlock(&dump_lock);
    hp_busy_end(was_busy);
    return r;
}

/* A snapshot with HEAPPROF_SIGNAL_LEAKS: a live leak check's profile,
 * whose in-use samples carry the leak label. When the check cannot be made
 * (another runs, no memory for its copy), the snapshot is written without
 * verdicts and a line says why. */
static int dump_with_verdicts(const char *path)
{
    struct hp_snapshot s;
    struct hp_reach_stats st;
    char why[256];
    int r = hp_leakcheck_run(&s, &st, why, sizeof why);
    if (r) {
        hp_snapshot_release(&s);
        hp_log("heapprof: snapshot %s without leak verdicts: %s", path, why);
        return hp_dump_to(path, HP_DUMP_NOW, NULL);
    }
    bool was_busy = hp_busy_begin();
    hp_mutex_lock(&dump_lock);
    uint8_t *gz;
    size_t len;
    r = hp_leakcheck_encode(&s, 0, &gz, &len);
    if (r == 0)
        r = hp_write_file_atomic(path, gz, len);
    if (r)
        hp_log("heapprof: cannot write the snapshot %s: %s", path, strerror(-r));
    pthread_mutex_unlock(&dump_lock);
    hp_busy_end(was_busy);
    hp_snapshot_release(&s);
    return r;
}

int hp_dump_snapshot(void)
{
    static int seq_counter;
    if (!hp_cfg.path[0])
        return -ENOTSUP; /* HEAPPROF_HTTP alone: no file to number */
    int seq = __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED);
    char base[4096], path[4200], tag[16];
    if (hp_process_path(base, sizeof base) != 0)
        return -ENAMETOOLONG;
    snprintf(tag, sizeof tag, "%04d", seq);
    int r = hp_path_with_tag(path, sizeof path, base, tag);
    if (r == 0 && hp_cfg.snap_leaks)
        r = dump_with_verdicts(path);
    else if (r == 0)
        r = hp_dump_to(path, HP_DUMP_NOW, NULL);
    return r ? r : seq;
}

int hp_dump_cpu(const char *path, struct hp_cpu_profile *p)
{
    bool was_busy = hp_busy_begin();
    hp_mutex_lock(&dump_lock);
    hp_stderr_choose();
    char comment[512];
    struct hp_symbolizer *sym = hp_sym_open(&p->arena);
    uint8_t *gz;
    size_t len;
    int r = hp_cpu_encode(p, sym, hp_cpu_comment(p, comment, sizeof comment), &gz, &len);
    hp_sym_close(sym);
    if (r == 0)
        r = hp_write_file_atomic(path, gz, len);
    if (r)
        hp_log("heapprof: cannot write the CPU profile %s: %s", path, strerror(-r));
    pthread_mutex_unlock(&dump_lock);
    hp_busy_end(was_busy);
    return r;
}

void hp_dump_child(void)
{
    pthread_mutex_init(&dump_lock, NULL);
}
