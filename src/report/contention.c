/* The mutex and block profiles as Go's runtime/pprof writes them, from
 * record/contention.c's table: one sample per stack that waited, values
 * already unbiased there (contentions/count, delay/nanoseconds).
 *
 * Go scales a mutex profile's samples by the fraction and writes that
 * fraction as its period; so does this. Its block profile has period 1.
 */
#define _GNU_SOURCE
#include "contention.h"
#include "iface.h"
#include "pprof.h"
#include "symbols.h"
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int64_t whole(double v)
{
    return v < 0 ? 0 : (int64_t)(v + 0.5);
}

int hp_cont_encode(struct hp_cont_profile *p, struct hp_symbolizer *sym, int64_t start_ns,
                   const char *comment, uint8_t **out, size_t *outlen)
{
    struct hp_pprof *pp = hp_pprof_begin(&p->arena, sym, false);
    if (!pp)
        return -ENOMEM;
    for (size_t i = 0; i < p->nstacks && hp_pprof_ok(pp); i++) {
        const struct hp_cont_stack *st = &p->stacks[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        for (int d = 0; d < st->depth; d++) {
            fs[d].ip = st->ips[d];
            fs[d].node = UINT32_MAX;
            fs[d].epoch = st->epoch;
        }
        int64_t values[2] = {whole(st->count), whole(st->delay)};
        hp_pprof_sample(pp, fs, st->depth, values, 2, NULL, 0);
    }
    char note[160];
    if (p->folded && !comment) {
        snprintf(note, sizeof note,
                 "heapprof: the contention table was full; later stacks are "
                 "under [other]");
        comment = note;
    }
    struct hp_pprof_head h = {
        .types = {{"contentions", "count"}, {"delay", "nanoseconds"}},
        .ntypes = 2,
        .period_type = {"contentions", "count"},
        .period = p->kind == HP_CONT_MUTEX && p->rate > 0 ? p->rate : 1,
        .time_nanos = start_ns,
        .duration_nanos = p->time_ns - start_ns,
        .comment = comment,
    };
    return hp_pprof_end(pp, &h, out, outlen);
}

static int by_delay_desc(const void *x, const void *y)
{
    const struct hp_cont_stack *a = x, *b = y;
    return a->delay < b->delay ? 1 : a->delay > b->delay ? -1 : 0;
}

char *hp_cont_text(struct hp_cont_profile *p, struct hp_symbolizer *sym, size_t *len)
{
    qsort(p->stacks, p->nstacks, sizeof *p->stacks, by_delay_desc);
    struct hp_text t = {.a = &p->arena};
    /* Go's header: delays are in "cycles", which cycles/second converts to
     * time; heapprof's are nanoseconds. */
    if (p->kind == HP_CONT_MUTEX)
        hp_text_put(&t, "--- mutex:\ncycles/second=1000000000\nsampling period=%lld\n",
                    (long long)p->rate);
    else
        hp_text_put(&t, "--- contention:\ncycles/second=1000000000\n");
    for (size_t i = 0; i < p->nstacks && !t.oom; i++) {
        const struct hp_cont_stack *st = &p->stacks[i];
        hp_text_put(&t, "%lld %lld @", (long long)whole(st->delay), (long long)whole(st->count));
        for (int d = 0; d < st->depth; d++)
            hp_text_put(&t, " %#lx", (unsigned long)(st->ips[d] - 1));
        hp_text_put(&t, "\n");
        for (int d = 0; d < st->depth; d++) {
            struct hp_symbolized fr;
            uintptr_t pc = st->ips[d];
            hp_sym_lookup(sym, pc, st->epoch, &fr);
            if (fr.nlines == 0)
                hp_text_put(&t, "#\t%#lx\n", (unsigned long)(pc - 1));
            for (int l = 0; l < fr.nlines; l++) {
                const struct hp_frame_line *ln = &fr.lines[l];
                if (ln->file)
                    hp_text_put(&t, "#\t%#lx\t%s\t%s:%d\n", (unsigned long)(pc - 1), ln->function,
                                ln->file, ln->line);
                else
                    hp_text_put(&t, "#\t%#lx\t%s\n", (unsigned long)(pc - 1), ln->function);
            }
        }
        hp_text_put(&t, "\n");
    }
    if (t.oom)
        return NULL;
    *len = t.len;
    return t.p ? t.p : (char *)"";
}
