/* The pprof profile builder, as Go's runtime/pprof has it in proto.go:
 * the tables of strings, functions, locations and mappings, and the
 * samples, which are packed one at a time and compressed as they go
 * (report/wire.c), so that a dump needs memory for the distinct frames,
 * functions and strings and for the compressed output, never for all the
 * samples at once. The samples (field 2 of Profile) come first and the rest
 * of the message after them: a message may hold its fields in any order.
 * The samples are packed here (hp_pprof_sample), the rest by protobuf-c,
 * from profile.proto.
 *
 * Location addresses are return address - 1 (the call instruction), each
 * inside its mapping; Functions carry names, files and lines, and the
 * mappings say so (has_functions...), so that pprof keeps them.
 */
#define _GNU_SOURCE
#include "pprof.h"
#include "iface.h"
#include "symbols.h"
#include "wire.h"
#include "profile.pb-c.h"

#include <errno.h>
#include <string.h>

/* Profile's field numbers written here by hand (profile.proto). */
enum { PROFILE_SAMPLE = 2 };

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Function Function;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__ValueType ValueType;

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

/* One profile being written: the tables of strings, locations and
 * functions, and the compressed stream the samples go into. */
struct hp_pprof {
    struct builder b;
    struct hp_wire *w;
};

int64_t hp_pprof_string(struct hp_pprof *p, const char *s)
{
    return str_index(&p->b, s);
}

struct hp_pprof *hp_pprof_begin(struct hp_arena *a, struct hp_symbolizer *sym, bool nodes)
{
    struct hp_pprof *p = hp_arena_alloc(a, sizeof *p);
    if (!p)
        return NULL;
    struct builder *b = &p->b;
    b->a = a;
    b->sym = sym;
    if (nodes) {
        b->nnodes = hp_table_nodes();
        b->node_loc = hp_arena_alloc(b->a, (size_t)b->nnodes * sizeof *b->node_loc);
        if (!b->node_loc)
            b->nnodes = 0;
    }
    str_index(b, ""); /* string_table[0] must be "" */
    str_index(b, "bytes");
    str_index(b, "thread");
    p->w = hp_wire_open(b->a);
    if (!p->w) {
        free_indexes(b);
        return NULL;
    }
    hp_wire_members(p->w);
    return p;
}

bool hp_pprof_ok(const struct hp_pprof *p)
{
    return !p->b.oom && !hp_wire_error(p->w);
}

/* Packed samples are written here rather than by protobuf-c: its generic
 * packer (a size pass, then a pack pass, each walking the field
 * descriptors) was 9% of an exact-mode run of deep_tree with half a million
 * samples. The bytes are the ones protobuf-c writes for proto3: fields in
 * their numbers' order, repeated scalars packed, fields that are zero or
 * empty left out, int64 as the varint of its two's complement. */
static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A packed repeated field of n varints; nothing when n is 0. The varints
 * are written once, behind room for a one-byte length, and moved up in the
 * rare case that their length needs more (a stack of 64 frames with large
 * location ids). out has room for a key, a length and n varints. */
static size_t put_packed(uint8_t *out, unsigned field, const uint64_t *v, size_t n)
{
    if (!n)
        return 0;
    size_t k = hp_wire_key(out, field, HP_WIRE_LEN);
    uint8_t *body = out + k + 1;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += hp_wire_varint(body + len, v[i]);
    size_t ll = varint_len(len);
    if (ll > 1)
        memmove(body + ll - 1, body, len);
    hp_wire_varint(out + k, len);
    return k + ll + len;
}

/* A scalar field; nothing when it is 0. */
static size_t put_scalar(uint8_t *out, unsigned field, int64_t v)
{
    if (!v)
        return 0;
    size_t k = hp_wire_key(out, field, HP_WIRE_VARINT);
    return k + hp_wire_varint(out + k, (uint64_t)v);
}

/* One sample, packed on the stack and compressed at once. */
void hp_pprof_sample(struct hp_pprof *p, const struct hp_frame *fs, int depth,
                     const int64_t *values, size_t nvalues, const struct hp_pprof_label *labels,
                     size_t nlabels)
{
    struct builder *b = &p->b;
    enum { MAX_LABELS = 3 + HEAPPROF_LABELS_MAX, MAX_VALUES = 8 };
    uint64_t ids[HP_MAX_FRAMES], vals[MAX_VALUES];
    if (depth > HP_MAX_FRAMES)
        depth = HP_MAX_FRAMES;
    for (int d = 0; d < depth; d++)
        ids[d] = frame_location(b, &fs[d]);
    if (nvalues > MAX_VALUES)
        nvalues = MAX_VALUES;
    for (size_t i = 0; i < nvalues; i++)
        vals[i] = (uint64_t)values[i];
    if (nlabels > MAX_LABELS)
        nlabels = MAX_LABELS;
    /* Each field at most a key and a length (2 varints) before its
     * varints; a label is three fields of one varint each. */
    enum { V = HP_WIRE_VARINT_MAX };
    uint8_t
        out[2 * V + HP_MAX_FRAMES * V + 2 * V + MAX_VALUES * V + MAX_LABELS * (2 * V + 3 * 2 * V)];
    size_t n = put_packed(out, 1, ids, (size_t)depth);
    n += put_packed(out + n, 2, vals, nvalues);
    for (size_t k = 0; k < nlabels; k++) {
        uint8_t body[3 * 2 * V];
        size_t m = put_scalar(body, 1, labels[k].key);
        m += put_scalar(body + m, 2, labels[k].str);
        m += put_scalar(body + m, 3, labels[k].num);
        n += hp_wire_key(out + n, 3, HP_WIRE_LEN);
        n += hp_wire_varint(out + n, m);
        memcpy(out + n, body, m);
        n += m;
    }
    hp_wire_field(p->w, PROFILE_SAMPLE, out, n);
}

/* Everything but the samples, as one more piece of the same message; then
 * the gzip stream's end. */
int hp_pprof_end(struct hp_pprof *pp, const struct hp_pprof_head *h, uint8_t **out, size_t *outlen)
{
    struct builder *b = &pp->b;
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
            hp_wire_raw(pp->w, raw, len);
        } else {
            b->oom = true;
        }
    }
    int r = hp_wire_close(pp->w, out, outlen);
    free_indexes(b);
    return b->oom ? -ENOMEM : r;
}
