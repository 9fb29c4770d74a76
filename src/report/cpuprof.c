/* The CPU profile (record/cpu.c's samples) as Go's runtime/pprof writes
 * one, through the profile builder (report/pprof.c); and the comment that
 * says what the profile lacks.
 */
#define _GNU_SOURCE
#include "cpuprof.h"
#include "iface.h"
#include "pprof.h"

#include <errno.h>
#include <stdio.h>

const char *hp_cpu_comment(const struct hp_cpu_profile *p, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    if (p->leaf_only)
        n += (size_t)snprintf(buf + n, len - n,
                              "heapprof: %lld samples have their leaf frame only (they landed "
                              "inside heapprof's own work, libunwind, the loader or a fork, "
                              "where unwinding is not safe). ",
                              (long long)p->leaf_only);
    if (p->dropped && n < len)
        n += (size_t)snprintf(buf + n, len - n,
                              "heapprof: %lld samples dropped (the buffer was full, the "
                              "signal was held back while the thread blocked SIGPROF, or the "
                              "kernel delivered it more than 3 periods late, as on a busy "
                              "machine). ",
                              (long long)p->dropped);
    if (p->folded && n < len)
        n += (size_t)snprintf(buf + n, len - n,
                              "heapprof: the stack table was full; later stacks are under "
                              "[other]. ");
    if (p->yielded && n < len)
        n += (size_t)snprintf(buf + n, len - n,
                              "heapprof: the program installed its own SIGPROF handler; the "
                              "profile stops there. ");
    /* Threads that block SIGPROF matter only if they ran: idle ones (a
     * pool asleep with every signal blocked) lost no sample. Said when
     * their CPU time adds up to one sampling period or more. */
    int64_t period = p->hz > 0 ? 1000000000 / p->hz : 10000000;
    if (p->blocked_threads && p->blocked_cpu_ns >= period && n < len)
        n += (size_t)snprintf(buf + n, len - n,
                              "heapprof: %d threads block SIGPROF and could not be sampled: "
                              "%.2f s of their CPU time is not in this profile. ",
                              p->blocked_threads, (double)p->blocked_cpu_ns / 1e9);
    if (p->process_timer && n < len)
        n += (size_t)snprintf(buf + n, len - n,
                              "heapprof: sampled with setitimer(ITIMER_PROF), not per-thread "
                              "timers. ");
    if (n && n < len && buf[n - 1] == ' ')
        buf[n - 1] = 0;
    return n ? buf : NULL;
}

int hp_cpu_encode(struct hp_cpu_profile *p, struct hp_symbolizer *sym, const char *comment,
                  uint8_t **out, size_t *outlen)
{
    struct hp_pprof *pp = hp_pprof_begin(&p->arena, sym, false);
    if (!pp)
        return -ENOMEM;
    int64_t period = 1000000000LL / (p->hz > 0 ? p->hz : 100);
    for (size_t i = 0; i < p->nstacks && hp_pprof_ok(pp); i++) {
        const struct hp_cpu_stack *st = p->stacks[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        int depth = st->depth < HP_MAX_FRAMES ? st->depth : HP_MAX_FRAMES;
        for (int d = 0; d < depth; d++) {
            fs[d].ip = st->ips[d];
            fs[d].node = UINT32_MAX; /* not a node of the heap's stack table */
            fs[d].epoch = st->epoch;
        }
        int64_t values[2] = {st->count, st->count * period};
        hp_pprof_sample(pp, fs, depth, values, 2, NULL, 0);
    }
    /* As Go's runtime/pprof writes a CPU profile: samples/count and
     * cpu/nanoseconds, period 1e9/hz nanoseconds of CPU, the window's start
     * and length. */
    struct hp_pprof_head h = {
        .types = {{"samples", "count"}, {"cpu", "nanoseconds"}},
        .ntypes = 2,
        .period_type = {"cpu", "nanoseconds"},
        .period = period,
        .time_nanos = p->start_ns,
        .duration_nanos = p->end_ns - p->start_ns,
        .comment = comment,
    };
    return hp_pprof_end(pp, &h, out, outlen);
}
