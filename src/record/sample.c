/* The sampled path: what happens to an allocation the sampler took (its
 * stack captured, counted in the stack table, entered in the live set and
 * the peak estimate) and to the free of a sampled object.
 */
#define _GNU_SOURCE
#include "record.h"
#include "heapprof.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void hp_on_alloc(void *p, size_t size, bool headed)
{
    if (HP_UNLIKELY(__atomic_load_n(&hp_state, __ATOMIC_RELAXED) != HP_STATE_ON))
        return; /* turned off at start-up: see hp_report_find */
    struct hp_thread *t = &hp_thread;
    int saved = errno;
    t->busy = true;
    void *ips[HP_MAX_FRAMES];
    int depth = hp_stack_capture(ips, HP_MAX_FRAMES);
    struct hp_live_rec rec = {hp_table_record(ips, depth, size, hp_labels_current()), headed, size};
    if (rec.bucket && hp_live_insert(p, rec))
        hp_peak_track(size, 1);
    if (HP_TRACING())
        hp_trace_alloc(ips, depth, size);
    t->busy = false;
    errno = saved;
}

struct hp_live_rec hp_on_free(void *p)
{
    struct hp_live_rec rec = hp_live_remove(p);
    if (rec.bucket) {
        hp_peak_track(rec.size, -1);
        if (HP_TRACING())
            hp_trace_free(rec.size);
    }
    return rec;
}

void hp_on_unfree(void *p, struct hp_live_rec rec)
{
    if (hp_live_insert(p, rec))
        hp_peak_track(rec.size, 1);
}
