/* The heap profile: a snapshot of the recording half's tables as a gzipped
 * pprof profile, shaped as Go's runtime writes a heap profile (its
 * writeHeapProto), through the profile builder (report/pprof.c).
 *
 * Sample types alloc_objects/count, alloc_space/bytes, inuse_objects/count,
 * inuse_space/bytes; period_type space/bytes; period = the sampling rate;
 * one sample per (stack, size class) bucket with a numeric label "bytes"
 * (the average size of the bucket's objects), the thread's name and the
 * program's labels as string labels, and, in an exit profile taken with the
 * leak check's verdicts, a "leak" label; values already unbiased
 * (hp_snapshot_estimate, record/table.c).
 */
#define _GNU_SOURCE
#include "profile.h"
#include "iface.h"
#include "pprof.h"

#include <errno.h>
#include <string.h>

/* The frames of one stack after another, each walk up the tree of frames
 * stopping where it joins the previous stack's: a profile's buckets come
 * grouped by stack, in the order the stacks' nodes were made, so that
 * consecutive stacks share most of their outer frames. Reading every node
 * of every stack was 6% of an exact-mode run of deep_tree (half a million
 * stacks of 20 to 30 frames; cache misses on the nodes). A node's depth,
 * learnt when a walk reaches the outermost frame, says where it would sit
 * in the previous stack's frames; if it is there, the rest is the same. */
struct walker {
    uint8_t *depth; /* per node: 0 unknown, else frames from it to the outermost */
    uint32_t nnodes;
    struct hp_frame buf[2][HP_MAX_FRAMES];
    int n[2]; /* frames in buf[i] */
    int cur;  /* buf[cur]: the last stack walked */
};

static const struct hp_frame *walk(struct walker *w, uint32_t stack, int *depth)
{
    const struct hp_frame *prev = w->buf[w->cur];
    int pn = w->n[w->cur];
    struct hp_frame *fs = w->buf[w->cur ^ 1];
    int d = 0;
    bool whole = false; /* reached the outermost frame */
    uint32_t x = stack;
    while (x && d < HP_MAX_FRAMES) {
        int dx = w->depth && x < w->nnodes ? w->depth[x] : 0;
        if (dx && dx <= pn && prev[pn - dx].node == x) {
            int take = dx < HP_MAX_FRAMES - d ? dx : HP_MAX_FRAMES - d;
            memcpy(&fs[d], &prev[pn - dx], (size_t)take * sizeof *fs);
            d += take;
            whole = take == dx;
            break;
        }
        x = hp_stack_frame(x, &fs[d++]);
        whole = x == 0;
    }
    if (whole && w->depth)
        for (int j = 0; j < d; j++)
            if (fs[j].node < w->nnodes && d - j <= UINT8_MAX)
                w->depth[fs[j].node] = (uint8_t)(d - j);
    w->cur ^= 1;
    w->n[w->cur] = d;
    *depth = d;
    return fs;
}

int hp_profile_encode(struct hp_snapshot *s, struct hp_symbolizer *sym, int64_t start_ns,
                      const char *default_type, uint8_t **out, size_t *outlen)
{
    struct walker *wk = hp_arena_alloc(&s->arena, sizeof *wk);
    if (!wk)
        return -ENOMEM;
    wk->nnodes = hp_table_nodes();
    wk->depth = hp_arena_alloc(&s->arena, wk->nnodes); /* NULL: every walk whole */
    struct hp_pprof *p = hp_pprof_begin(&s->arena, sym, true);
    if (!p)
        return -ENOMEM;
    int64_t bytes_key = hp_pprof_string(p, "bytes"), thread_key = hp_pprof_string(p, "thread");

    /* The samples, one per bucket. */
    for (size_t i = 0; i < s->nbuckets && hp_pprof_ok(p); i++) {
        struct hp_snap_bucket *sb = &s->buckets[i];
        int depth;
        const struct hp_frame *fs = walk(wk, sb->stack, &depth);
        struct hp_pprof_label label[3 + HEAPPROF_LABELS_MAX];
        size_t nl = 0;
        label[nl] = (struct hp_pprof_label){.key = bytes_key};
        /* Go's label is the size of every object in the bucket; a bucket here
         * holds one size class, and the label is the average size of the
         * objects it stands for. */
        label[nl++].num = (int64_t)hp_snap_avg_size(sb);
        /* The thread's name and the program's labels, as string labels. */
        const struct hp_labelset *ls = hp_labelset_at(sb->labels);
        if (ls && ls->thread) {
            label[nl] = (struct hp_pprof_label){.key = thread_key};
            label[nl++].str = hp_pprof_string(p, ls->thread);
        }
        for (int k = 0; ls && k < ls->n && nl < 2 + HEAPPROF_LABELS_MAX; k++) {
            label[nl] = (struct hp_pprof_label){.key = hp_pprof_string(p, ls->kv[2 * k])};
            label[nl++].str = hp_pprof_string(p, ls->kv[2 * k + 1]);
        }
        /* The leak check's verdict on the in-use objects (an exit profile
         * taken with verdicts): -tagfocus=leak=definite shows lost memory.
         * A bucket's own entry holds its counts and its reachable objects:
         * written as two samples, the counts without the label. */
        static const char *const verdict_names[HP_NVERDICTS] = {NULL, "definite", "indirect",
                                                                "reachable"};
        bool split = s->verdicts && sb->verdict == HP_V_NONE &&
                     (sb->est[HP_INUSE_OBJECTS] || sb->est[HP_INUSE_SPACE]);
        int first = split && !sb->est[HP_ALLOC_OBJECTS] &&
                    !sb->est[HP_ALLOC_SPACE]; /* 1: no counts to write apart */
        for (int part = first; part <= (int)split; part++) {
            int64_t values[4];
            memcpy(values, sb->est, sizeof values); /* unbiased: hp_snapshot_estimate */
            uint32_t verdict = sb->verdict;
            if (split && part == 0)
                values[HP_INUSE_OBJECTS] = values[HP_INUSE_SPACE] = 0;
            else if (split) {
                values[HP_ALLOC_OBJECTS] = values[HP_ALLOC_SPACE] = 0;
                verdict = HP_V_REACHABLE;
            }
            size_t n = nl;
            if (s->verdicts && verdict > HP_V_NONE && verdict < HP_NVERDICTS) {
                label[n] = (struct hp_pprof_label){.key = hp_pprof_string(p, "leak")};
                label[n++].str = hp_pprof_string(p, verdict_names[verdict]);
            }
            hp_pprof_sample(p, fs, depth, values, 4, label, n);
        }
    }

    struct hp_pprof_head h = {
        .types = {{"alloc_objects", "count"},
                  {"alloc_space", "bytes"},
                  {"inuse_objects", "count"},
                  {"inuse_space", "bytes"}},
        .ntypes = 4,
        .period_type = {"space", "bytes"},
        .period = s->rate,
        .default_type = default_type,
        .comment = s->comment,
    };
    if (s->since_ns && s->time_ns) {
        /* A delta, as Go writes one: it starts when its window did. */
        h.time_nanos = s->since_ns;
        h.duration_nanos = s->time_ns - s->since_ns;
    } else {
        h.time_nanos = hp_now_ns();
        h.duration_nanos = start_ns ? h.time_nanos - start_ns : 0;
    }
    return hp_pprof_end(p, &h, out, outlen);
}

int hp_profile_write(struct hp_snapshot *s, struct hp_symbolizer *sym, const char *path,
                     int64_t start_ns)
{
    uint8_t *gz;
    size_t gzlen;
    int r = hp_profile_encode(s, sym, start_ns, NULL, &gz, &gzlen);
    if (r)
        return r;
    return hp_write_file_atomic(path, gz, gzlen);
}
