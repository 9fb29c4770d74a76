/* The profile writer: a snapshot of the tables as a gzipped pprof profile,
 * shaped as Go's runtime writes a heap profile; and a CPU profile
 * (record/cpu.c) as Go writes one. Both go through one encoder (enc_*): the
 * same self-contained symbols, mappings and streaming.
 *
 * Heap profiles:
 * Sample types alloc_objects/count, alloc_space/bytes, inuse_objects/count,
 * inuse_space/bytes; period_type space/bytes; period = the sampling rate;
 * one sample per (stack, size class) bucket with a numeric label "bytes"
 * (the average size of the bucket's objects);
 * values already unbiased; Location addresses are return address - 1 (the
 * call instruction), each inside its mapping; Functions carry names, files
 * and lines, so pprof needs no binary to read it.
 */
#define _GNU_SOURCE
#include "report.h"
#include "profile.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Function Function;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__ValueType ValueType;
typedef Perftools__Profiles__Label Label;

struct str_entry {
    UT_hash_handle hh;
    const char *s;
    int64_t index;
};
struct loc_key {
    uintptr_t pc;
    uintptr_t variant;
};
struct loc_entry {
    UT_hash_handle hh;
    struct loc_key key;
    uint64_t id;
};
struct fn_entry {
    UT_hash_handle hh;
    const char *key; /* system_name NUL file */
    size_t keylen;
    uint64_t id;
};

struct builder {
    struct hp_arena *a;
    struct hp_symbolizer *sym;
    struct str_entry *strings;
    char **string_table;
    size_t nstrings, capstrings;
    struct loc_entry *locs;
    Location **locations;
    size_t nlocs, caplocs;
    struct fn_entry *fns;
    Function **functions;
    size_t nfns, capfns;
    /* The location id of each node of the tree of frames, once known:
     * samples share their outer frames, so most frames are found here. */
    uint32_t *node_loc;
    uint32_t nnodes;
    bool oom;
};

/* Grows an arena-held pointer array by doubling (the old copy stays in the
 * arena until the dump ends). */
static bool push(struct builder *b, void ***arr, size_t *n, size_t *cap, void *item)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void **na = hp_arena_alloc(b->a, nc * sizeof *na);
        if (!na) {
            b->oom = true;
            return false;
        }
        if (*n)
            memcpy(na, *arr, *n * sizeof *na);
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = item;
    return true;
}

static int64_t str_index(struct builder *b, const char *s)
{
    if (!s)
        s = "";
    struct str_entry *e;
    HASH_FIND_STR(b->strings, s, e);
    if (e)
        return e->index;
    e = hp_alloc(sizeof *e);
    char *copy = hp_arena_strdup(b->a, s);
    if (!e || !copy) {
        hp_free(e, sizeof *e);
        b->oom = true;
        return 0;
    }
    e->s = copy;
    e->index = (int64_t)b->nstrings;
    if (!push(b, (void ***)&b->string_table, &b->nstrings, &b->capstrings, copy)) {
        hp_free(e, sizeof *e);
        return 0;
    }
    HASH_ADD_KEYPTR(hh, b->strings, e->s, strlen(e->s), e);
    if (!e->hh.tbl) {
        hp_free(e, sizeof *e);
        b->oom = true;
    }
    return (int64_t)b->nstrings - 1;
}

static uint64_t function_id(struct builder *b, const struct hp_frame_line *l)
{
    const char *sys = l->system_name ? l->system_name : "";
    const char *file = l->file ? l->file : "";
    size_t ls = strlen(sys), lf = strlen(file);
    char *key = hp_arena_alloc(b->a, ls + lf + 2);
    if (!key) {
        b->oom = true;
        return 0;
    }
    memcpy(key, sys, ls + 1);
    memcpy(key + ls + 1, file, lf + 1);
    size_t keylen = ls + lf + 1;
    struct fn_entry *e;
    HASH_FIND(hh, b->fns, key, keylen, e);
    if (e)
        return e->id;
    Function *f = hp_arena_alloc(b->a, sizeof *f);
    e = hp_alloc(sizeof *e);
    if (!f || !e) {
        hp_free(e, sizeof *e);
        b->oom = true;
        return 0;
    }
    perftools__profiles__function__init(f);
    f->id = b->nfns + 1;
    f->name = str_index(b, l->function ? l->function : sys);
    f->system_name = str_index(b, sys);
    f->filename = str_index(b, file);
    if (!push(b, (void ***)&b->functions, &b->nfns, &b->capfns, f)) {
        hp_free(e, sizeof *e);
        return 0;
    }
    e->key = key;
    e->keylen = keylen;
    e->id = f->id;
    HASH_ADD_KEYPTR(hh, b->fns, e->key, e->keylen, e);
    if (!e->hh.tbl) {
        hp_free(e, sizeof *e);
        b->oom = true;
    }
    return f->id;
}

static uint64_t location_id(struct builder *b, uintptr_t pc, uint32_t epoch)
{
    struct hp_symbolized sym;
    hp_sym_lookup(b->sym, pc, epoch, &sym); /* cached: cheap when seen before */
    struct loc_key key = {pc, sym.variant};
    struct loc_entry *e;
    HASH_FIND(hh, b->locs, &key, sizeof key, e);
    if (e)
        return e->id;
    Location *loc = hp_arena_alloc(b->a, sizeof *loc);
    e = hp_alloc(sizeof *e);
    if (!loc || !e) {
        hp_free(e, sizeof *e);
        b->oom = true;
        return 0;
    }
    perftools__profiles__location__init(loc);
    loc->id = b->nlocs + 1;
    loc->mapping_id = sym.mapping >= 0 ? (uint64_t)sym.mapping + 1 : 0;
    loc->address = pc - 1;
    if (sym.nlines > 0) {
        loc->line = hp_arena_alloc(b->a, (size_t)sym.nlines * sizeof *loc->line);
        Line *lines = hp_arena_alloc(b->a, (size_t)sym.nlines * sizeof *lines);
        if (!loc->line || !lines) {
            b->oom = true;
            hp_free(e, sizeof *e);
            return 0;
        }
        for (int i = 0; i < sym.nlines; i++) {
            perftools__profiles__line__init(&lines[i]);
            lines[i].function_id = function_id(b, &sym.lines[i]);
            lines[i].line = sym.lines[i].line;
            loc->line[i] = &lines[i];
        }
        loc->n_line = (size_t)sym.nlines;
    }
    if (!push(b, (void ***)&b->locations, &b->nlocs, &b->caplocs, loc)) {
        hp_free(e, sizeof *e);
        return 0;
    }
    e->key = key;
    e->id = loc->id;
    HASH_ADD(hh, b->locs, key, sizeof key, e);
    if (!e->hh.tbl) {
        hp_free(e, sizeof *e);
        b->oom = true;
    }
    return loc->id;
}

static ValueType *value_type(struct builder *b, const char *type, const char *unit)
{
    ValueType *v = hp_arena_alloc(b->a, sizeof *v);
    if (!v) {
        b->oom = true;
        return NULL;
    }
    perftools__profiles__value_type__init(v);
    v->type = str_index(b, type);
    v->unit = str_index(b, unit);
    return v;
}

static void free_indexes(struct builder *b)
{
    struct str_entry *s, *st;
    HASH_ITER(hh, b->strings, s, st)
    {
        HASH_DEL(b->strings, s);
        hp_free(s, sizeof *s);
    }
    struct loc_entry *l, *lt;
    HASH_ITER(hh, b->locs, l, lt)
    {
        HASH_DEL(b->locs, l);
        hp_free(l, sizeof *l);
    }
    struct fn_entry *f, *ft;
    HASH_ITER(hh, b->fns, f, ft)
    {
        HASH_DEL(b->fns, f);
        hp_free(f, sizeof *f);
    }
}

static uint64_t frame_location(struct builder *b, const struct hp_frame *f)
{
    if (f->node < b->nnodes && b->node_loc[f->node])
        return b->node_loc[f->node];
    uint64_t id = location_id(b, f->ip, f->epoch);
    if (f->node < b->nnodes && id <= UINT32_MAX)
        b->node_loc[f->node] = (uint32_t)id;
    return id;
}

/* The profile is written as a stream: samples are packed one at a time and
 * compressed as they go, so a dump needs memory for the distinct frames,
 * functions and strings and for the compressed output, never for all the
 * samples at once. A protobuf message may hold its fields in any order, and
 * a repeated field's elements need not be adjacent, so the samples (field 2)
 * come first and the rest of the Profile message after them. */
struct gz_out {
    z_stream z;
    struct hp_arena *a;
    uint8_t *buf;
    size_t cap;
    size_t staged;
    int err;
    uint8_t stage[64 << 10]; /* bytes not yet deflated */
};

static int gz_begin(struct gz_out *g, struct hp_arena *a)
{
    memset(&g->z, 0, sizeof g->z);
    g->a = a;
    g->staged = 0;
    g->err = 0;
    /* windowBits 15 + 16: a gzip wrapper, as pprof expects. Fastest level,
     * as Go's runtime/pprof writes profiles: the dump runs inside the
     * program. */
    if (deflateInit2(&g->z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    g->cap = 256 << 10;
    g->buf = hp_arena_alloc(a, g->cap);
    if (!g->buf) {
        deflateEnd(&g->z);
        return -ENOMEM;
    }
    g->z.next_out = g->buf;
    g->z.avail_out = (uInt)g->cap;
    return 0;
}

/* Deflates the staged bytes; with finish, ends the stream. */
static void gz_drain(struct gz_out *g, bool finish)
{
    g->z.next_in = g->stage;
    g->z.avail_in = (uInt)g->staged;
    for (;;) {
        if (g->z.avail_out == 0) {
            /* Double the output buffer; the old one stays in the arena until
             * the dump ends (at most as much again). */
            size_t used = g->cap;
            uint8_t *nb = hp_arena_alloc(g->a, g->cap * 2);
            if (!nb) {
                g->err = -ENOMEM;
                return;
            }
            memcpy(nb, g->buf, used);
            g->buf = nb;
            g->cap *= 2;
            g->z.next_out = nb + used;
            g->z.avail_out = (uInt)(g->cap - used);
        }
        int r = deflate(&g->z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (r == Z_STREAM_END)
            break;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            g->err = -EIO;
            return;
        }
        if (!finish && g->z.avail_in == 0 && g->z.avail_out != 0)
            break;
    }
    g->staged = 0;
}

static void gz_put(struct gz_out *g, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len && !g->err) {
        size_t n = sizeof g->stage - g->staged;
        if (n > len)
            n = len;
        memcpy(g->stage + g->staged, p, n);
        g->staged += n;
        p += n;
        len -= n;
        if (g->staged == sizeof g->stage)
            gz_drain(g, false);
    }
}

static int gz_finish(struct gz_out *g, uint8_t **out, size_t *outlen)
{
    if (!g->err)
        gz_drain(g, true);
    *outlen = g->cap - g->z.avail_out;
    *out = g->buf;
    deflateEnd(&g->z);
    return g->err;
}

/* A length-delimited field: its key (field number, wire type 2), its length
 * as a varint, its bytes. */
static void put_field(struct gz_out *g, unsigned field, const uint8_t *data, size_t len)
{
    uint8_t head[20];
    size_t n = 0;
    uint64_t v = ((uint64_t)field << 3) | 2;
    for (int k = 0; k < 2; k++, v = len) {
        do {
            head[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            v >>= 7;
        } while (v);
    }
    gz_put(g, head, n);
    gz_put(g, data, len);
}

/* ---- the encoder both profiles share ---- */

/* One profile being written: the tables of strings, locations and
 * functions, and the compressed stream the samples go into. */
struct enc {
    struct builder b;
    struct gz_out *g;
    int64_t bytes_key, thread_key;
};

/* nodes: frames carry node numbers of the stack table (heap profiles), so
 * locations can be cached by node. */
static int enc_begin(struct enc *e, struct hp_arena *a, struct hp_symbolizer *sym, bool nodes)
{
    memset(e, 0, sizeof *e);
    struct builder *b = &e->b;
    b->a = a;
    b->sym = sym;
    if (nodes) {
        b->nnodes = hp_table_nodes();
        b->node_loc = hp_arena_alloc(b->a, (size_t)b->nnodes * sizeof *b->node_loc);
        if (!b->node_loc)
            b->nnodes = 0;
    }
    str_index(b, ""); /* string_table[0] must be "" */
    e->bytes_key = str_index(b, "bytes");
    e->thread_key = str_index(b, "thread");
    e->g = hp_arena_alloc(b->a, sizeof *e->g);
    if (!e->g || gz_begin(e->g, b->a) != 0)
        return -ENOMEM;
    return 0;
}

static bool enc_ok(const struct enc *e)
{
    return !e->b.oom && !e->g->err;
}

/* One sample, packed on the stack and compressed at once. */
static void enc_sample(struct enc *e, const struct hp_frame *fs, int depth, int64_t *values,
                       size_t nvalues, Label **labels, size_t nlabels)
{
    struct builder *b = &e->b;
    uint64_t ids[HP_MAX_FRAMES];
    if (depth > HP_MAX_FRAMES)
        depth = HP_MAX_FRAMES;
    for (int d = 0; d < depth; d++)
        ids[d] = frame_location(b, &fs[d]);
    Sample sm;
    perftools__profiles__sample__init(&sm);
    sm.location_id = ids;
    sm.n_location_id = (size_t)depth;
    sm.value = values;
    sm.n_value = nvalues;
    sm.label = labels;
    sm.n_label = nlabels;
    size_t len = perftools__profiles__sample__get_packed_size(&sm);
    uint8_t small[HP_MAX_FRAMES * 10 + 256];
    uint8_t *packed = len <= sizeof small ? small : hp_arena_alloc(b->a, len);
    if (!packed) {
        b->oom = true;
        return;
    }
    perftools__profiles__sample__pack(&sm, packed);
    put_field(e->g, 2, packed, len);
}

/* What the Profile message says besides its samples. */
struct enc_head {
    const char *types[4][2]; /* sample types: type, unit */
    int ntypes;
    const char *period_type[2];
    int64_t period;
    int64_t time_nanos, duration_nanos;
    const char *default_type; /* NULL: none */
    const char *comment;      /* NULL: none */
};

/* Everything but the samples, as one more piece of the same message; then
 * the gzip stream's end. */
static int enc_end(struct enc *e, const struct enc_head *h, uint8_t **out, size_t *outlen)
{
    struct builder *b = &e->b;
    Profile p;
    perftools__profiles__profile__init(&p);
    ValueType *types[4];
    for (int i = 0; i < h->ntypes && i < 4; i++)
        types[i] = value_type(b, h->types[i][0], h->types[i][1]);
    p.sample_type = types;
    p.n_sample_type = (size_t)h->ntypes;
    p.period_type = value_type(b, h->period_type[0], h->period_type[1]);
    p.period = h->period;
    p.time_nanos = h->time_nanos;
    p.duration_nanos = h->duration_nanos;
    if (h->default_type)
        p.default_sample_type = str_index(b, h->default_type);
    int64_t comment;
    if (h->comment) {
        comment = str_index(b, h->comment);
        p.comment = &comment;
        p.n_comment = 1;
    }

    /* Mappings last: symbolizing the locations set their has_* flags. */
    struct hp_mapping *maps;
    int nmaps = hp_sym_mappings(b->sym, &maps);
    Mapping **mps = nmaps ? hp_arena_alloc(b->a, (size_t)nmaps * sizeof *mps) : NULL;
    if (nmaps && !mps)
        b->oom = true;
    for (int i = 0; i < nmaps && mps && !b->oom; i++) {
        Mapping *m = hp_arena_alloc(b->a, sizeof *m);
        if (!m) {
            b->oom = true;
            break;
        }
        perftools__profiles__mapping__init(m);
        m->id = (uint64_t)i + 1;
        m->memory_start = maps[i].start;
        m->memory_limit = maps[i].limit;
        m->file_offset = maps[i].offset;
        m->filename = str_index(b, maps[i].file);
        m->build_id = str_index(b, maps[i].build_id);
        m->has_functions = maps[i].has_functions;
        m->has_filenames = maps[i].has_filenames;
        m->has_line_numbers = maps[i].has_lines;
        m->has_inline_frames = maps[i].has_functions;
        mps[i] = m;
    }
    p.mapping = mps;
    p.n_mapping = mps ? (size_t)nmaps : 0;
    p.location = b->locations;
    p.n_location = b->nlocs;
    p.function = b->functions;
    p.n_function = b->nfns;
    p.string_table = b->string_table;
    p.n_string_table = b->nstrings;

    if (!b->oom) {
        size_t len = perftools__profiles__profile__get_packed_size(&p);
        uint8_t *raw = hp_arena_alloc(b->a, len + 1);
        if (raw) {
            perftools__profiles__profile__pack(&p, raw);
            gz_put(e->g, raw, len);
        } else {
            b->oom = true;
        }
    }
    int r = gz_finish(e->g, out, outlen);
    free_indexes(b);
    return b->oom ? -ENOMEM : r;
}

/* ---- the heap profile ---- */

int hp_profile_encode(struct hp_snapshot *s, struct hp_symbolizer *sym, int64_t start_ns,
                      const char *default_type, uint8_t **out, size_t *outlen)
{
    struct enc e;
    if (enc_begin(&e, &s->arena, sym, true) != 0) {
        free_indexes(&e.b);
        return -ENOMEM;
    }
    struct builder *b = &e.b;

    /* The samples, one per bucket. */
    for (size_t i = 0; i < s->nbuckets && enc_ok(&e); i++) {
        struct hp_snap_bucket *sb = &s->buckets[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        int depth = hp_stack_frames(sb->stack, fs, HP_MAX_FRAMES);
        Label label[3 + HEAPPROF_LABELS_MAX], *labels[3 + HEAPPROF_LABELS_MAX];
        size_t nl = 0;
        perftools__profiles__label__init(&label[nl]);
        label[nl].key = e.bytes_key;
        /* Go's label is the size of every object in the bucket; a bucket here
         * holds one size class, and the label is the average size of the
         * objects it stands for. */
        label[nl++].num = (int64_t)hp_snap_avg_size(sb);
        /* The thread's name and the program's labels, as string labels. */
        const struct hp_labelset *ls = hp_labelset_at(sb->labels);
        if (ls && ls->thread) {
            perftools__profiles__label__init(&label[nl]);
            label[nl].key = e.thread_key;
            label[nl++].str = str_index(b, ls->thread);
        }
        for (int k = 0; ls && k < ls->n && nl < 2 + HEAPPROF_LABELS_MAX; k++) {
            perftools__profiles__label__init(&label[nl]);
            label[nl].key = str_index(b, ls->kv[2 * k]);
            label[nl++].str = str_index(b, ls->kv[2 * k + 1]);
        }
        /* The leak check's verdict on the in-use objects (an exit profile
         * taken with verdicts): -tagfocus=leak=definite shows lost memory.
         * A bucket's own entry holds its counts and its reachable objects:
         * written as two samples, the counts without the label. */
        static const char *const verdict_names[HP_NVERDICTS] = {NULL, "definite", "indirect",
                                                                "reachable"};
        bool split = s->verdicts && sb->verdict == HP_V_NONE && (sb->est[2] || sb->est[3]);
        int first = split && !sb->est[0] && !sb->est[1]; /* 1: no counts to write apart */
        for (int part = first; part <= (int)split; part++) {
            int64_t values[4];
            memcpy(values, sb->est, sizeof values); /* unbiased: hp_snapshot_estimate */
            uint32_t verdict = sb->verdict;
            if (split && part == 0)
                values[2] = values[3] = 0;
            else if (split) {
                values[0] = values[1] = 0;
                verdict = HP_V_REACHABLE;
            }
            size_t n = nl;
            if (s->verdicts && verdict > HP_V_NONE && verdict < HP_NVERDICTS) {
                perftools__profiles__label__init(&label[n]);
                label[n].key = str_index(b, "leak");
                label[n++].str = str_index(b, verdict_names[verdict]);
            }
            for (size_t k = 0; k < n; k++)
                labels[k] = &label[k];
            enc_sample(&e, fs, depth, values, 4, labels, n);
        }
    }

    struct enc_head h = {
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
    return enc_end(&e, &h, out, outlen);
}

/* ---- the CPU profile ---- */

int hp_cpu_encode(struct hp_cpu_profile *p, struct hp_symbolizer *sym, const char *comment,
                  uint8_t **out, size_t *outlen)
{
    struct enc e;
    if (enc_begin(&e, &p->arena, sym, false) != 0) {
        free_indexes(&e.b);
        return -ENOMEM;
    }
    int64_t period = 1000000000LL / (p->hz > 0 ? p->hz : 100);
    for (size_t i = 0; i < p->nstacks && enc_ok(&e); i++) {
        const struct hp_cpu_stack *st = p->stacks[i];
        struct hp_frame fs[HP_MAX_FRAMES];
        int depth = st->depth < HP_MAX_FRAMES ? st->depth : HP_MAX_FRAMES;
        for (int d = 0; d < depth; d++) {
            fs[d].ip = st->ips[d];
            fs[d].node = UINT32_MAX; /* not a node of the heap's stack table */
            fs[d].epoch = st->epoch;
        }
        int64_t values[2] = {st->count, st->count * period};
        enc_sample(&e, fs, depth, values, 2, NULL, 0);
    }
    /* As Go's runtime/pprof writes a CPU profile: samples/count and
     * cpu/nanoseconds, period 1e9/hz nanoseconds of CPU, the window's start
     * and length. */
    struct enc_head h = {
        .types = {{"samples", "count"}, {"cpu", "nanoseconds"}},
        .ntypes = 2,
        .period_type = {"cpu", "nanoseconds"},
        .period = period,
        .time_nanos = p->start_ns,
        .duration_nanos = p->end_ns - p->start_ns,
        .comment = comment,
    };
    return enc_end(&e, &h, out, outlen);
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
