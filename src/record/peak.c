/* The peak of the estimated in-use bytes, for the peak profile: the
 * estimate kept on the sampled path, and a copy of the tables taken when it
 * sets a new peak (record/table.c makes the copy).
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

/* Estimated in-use bytes, for peak tracking. Updated only on the sampled
 * path. A peak copy of the tables is taken when the estimate first exceeds
 * the last copy's level by 1/16: the copy kept is therefore within 1/17
 * (about 6%), and 1/64 per thread not yet gathered (below), below the true
 * peak of the estimate, and a program whose heap
 * grows from 1 MiB to 16 GiB takes at most about 230 copies (log(2^14) /
 * log(17/16)), each costing one pass over the buckets, instead of one copy
 * at every small new maximum. */
static int64_t inuse_est, peak_copied, peak_seen;
bool hp_peak_on;

static int64_t weight(uint64_t size)
{
    return (int64_t)((double)size * hp_unbias_scale(size, hp_cfg.rate));
}

/* Each thread gathers its changes to the estimate and adds them to the
 * shared one only once they reach 1/64 of the last copy's level either way,
 * so that threads do not all write one cache line at every sample once the
 * heap is large. The shared estimate then lags by less than 1/64 of the
 * peak per thread. */
static HP_TLS int64_t peak_pending;
static HP_TLS bool peak_key_set;
static pthread_key_t peak_key;
static bool peak_key_made;

/* At thread exit: what the thread gathered goes to the shared estimate,
 * or threads that come and go would make it drift. */
static void peak_flush(void *unused)
{
    (void)unused;
    __atomic_add_fetch(&inuse_est, peak_pending, __ATOMIC_RELAXED);
    peak_pending = 0;
}

void hp_peak_init(void)
{
    if (pthread_key_create(&peak_key, peak_flush) == 0)
        peak_key_made = true;
}

/* Adds (or with sign -1 takes away) one sampled object of size bytes to the
 * in-use estimate, and copies the tables when that sets a new peak. */
void hp_peak_track(uint64_t size, int sign)
{
    if (!hp_peak_on)
        return; /* no shared write, nor the unbiasing's expm1, unless asked */
    int64_t delta = peak_pending + sign * weight(size);
    int64_t step = __atomic_load_n(&peak_copied, __ATOMIC_RELAXED) / 64;
    if (delta < step && delta > -step) {
        peak_pending = delta;
        if (HP_UNLIKELY(!peak_key_set) && peak_key_made) {
            peak_key_set = true;
            pthread_setspecific(peak_key, (void *)1);
        }
        return;
    }
    peak_pending = 0;
    int64_t now = __atomic_add_fetch(&inuse_est, delta, __ATOMIC_RELAXED);
    if (delta <= 0)
        return;
    int64_t seen = __atomic_load_n(&peak_seen, __ATOMIC_RELAXED);
    while (now > seen && !__atomic_compare_exchange_n(&peak_seen, &seen, now, true,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    int64_t copied = __atomic_load_n(&peak_copied, __ATOMIC_RELAXED);
    if (now > copied + copied / 16 &&
        __atomic_compare_exchange_n(&peak_copied, &copied, now, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        hp_peak_capture();
}

void hp_peak_levels(int64_t *seen, int64_t *copied)
{
    *seen = __atomic_load_n(&peak_seen, __ATOMIC_RELAXED);
    *copied = __atomic_load_n(&peak_copied, __ATOMIC_RELAXED);
}
