/* heapprof-decode: reads a pprof profile (gzipped or not), checks it the way
 * `go tool pprof` would before trusting it, and prints it as text, as JSON, or
 * as per-function totals. It is the project's own independent reader: the
 * tests use it to hold the library to the format, so it shares no code with
 * src/.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <zlib.h>

#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Function Function;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Label Label;
typedef Perftools__Profiles__ValueType ValueType;

enum mode { MODE_TEXT, MODE_JSON, MODE_FLAT, MODE_CUM };

static const char *prog = "heapprof-decode";
static const char *input_name = "";

/* Every fatal problem is one line on stderr and exit status 1, so scripts can
 * tell "bad profile" from "bad usage" (status 2). */
__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: %s: ", prog, input_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    return q;
}

/* ---- input ---------------------------------------------------------------- */

static unsigned char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = xrealloc(NULL, cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                fail("read error: %s", strerror(errno));
            break;
        }
    }
    *len = n;
    return buf;
}

/* Inflates a gzip stream. Concatenated members are accepted because gzip(1)
 * produces them and zlib readers (Go's included) take them as one stream. */
static unsigned char *gunzip(const unsigned char *in, size_t in_len, size_t *out_len)
{
    size_t cap = in_len * 4 + 4096, n = 0;
    unsigned char *out = xrealloc(NULL, cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        fail("zlib: inflateInit2 failed");
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)in_len;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            out = xrealloc(out, cap);
        }
        zs.next_out = out + n;
        zs.avail_out = (uInt)(cap - n);
        int rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            if (inflateReset(&zs) != Z_OK)
                fail("zlib: inflateReset failed");
            continue;
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0)
            fail("truncated gzip stream");
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            fail("corrupt gzip stream: %s", zs.msg ? zs.msg : "inflate error");
    }
    inflateEnd(&zs);
    *out_len = n;
    return out;
}

/* ---- lookups by id ---------------------------------------------------------- */

/* Ids are arbitrary uint64 values, so each table is indexed by an array of
 * (id, position) sorted by id and searched with bsearch. */
struct idx {
    uint64_t id;
    size_t pos;
};

static int idx_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct idx *)a)->id, y = ((const struct idx *)b)->id;
    return x < y ? -1 : x > y;
}

static struct idx *build_index(const char *what, size_t n, uint64_t (*get)(const Profile *, size_t),
                               const Profile *p)
{
    struct idx *ix = xrealloc(NULL, n * sizeof *ix);
    for (size_t i = 0; i < n; i++) {
        ix[i].id = get(p, i);
        ix[i].pos = i;
        if (ix[i].id == 0)
            fail("%s #%zu has id 0", what, i);
    }
    qsort(ix, n, sizeof *ix, idx_cmp);
    for (size_t i = 1; i < n; i++)
        if (ix[i].id == ix[i - 1].id)
            fail("duplicate %s id %" PRIu64, what, ix[i].id);
    return ix;
}

static long find_pos(const struct idx *ix, size_t n, uint64_t id)
{
    struct idx key = {id, 0};
    const struct idx *hit = n ? bsearch(&key, ix, n, sizeof *ix, idx_cmp) : NULL;
    return hit ? (long)hit->pos : -1;
}

static uint64_t mapping_id(const Profile *p, size_t i)
{
    return p->mapping[i]->id;
}
static uint64_t location_id(const Profile *p, size_t i)
{
    return p->location[i]->id;
}
static uint64_t function_id(const Profile *p, size_t i)
{
    return p->function[i]->id;
}

struct tables {
    struct idx *map, *loc, *fn;
};

static const Mapping *get_mapping(const Profile *p, const struct tables *t, uint64_t id)
{
    long i = find_pos(t->map, p->n_mapping, id);
    return i < 0 ? NULL : p->mapping[i];
}
static const Location *get_location(const Profile *p, const struct tables *t, uint64_t id)
{
    long i = find_pos(t->loc, p->n_location, id);
    return i < 0 ? NULL : p->location[i];
}
static const Function *get_function(const Profile *p, const struct tables *t, uint64_t id)
{
    long i = find_pos(t->fn, p->n_function, id);
    return i < 0 ? NULL : p->function[i];
}

/* ---- validation --------------------------------------------------------------- */

static void check_str(const Profile *p, int64_t s, const char *where)
{
    if (s < 0 || (uint64_t)s >= p->n_string_table)
        fail("string index %" PRId64 " out of range (table has %zu) in %s", s, p->n_string_table,
             where);
}

static const char *str(const Profile *p, int64_t s)
{
    return p->string_table[s];
}

static void validate(const Profile *p, struct tables *t)
{
    char where[96];
    if (p->n_string_table == 0 || p->string_table[0][0] != '\0')
        fail("string_table[0] is not the empty string");

    for (size_t i = 0; i < p->n_sample_type; i++) {
        snprintf(where, sizeof where, "sample_type #%zu", i);
        check_str(p, p->sample_type[i]->type, where);
        check_str(p, p->sample_type[i]->unit, where);
    }
    if (p->period_type) {
        check_str(p, p->period_type->type, "period_type");
        check_str(p, p->period_type->unit, "period_type");
    }
    check_str(p, p->default_sample_type, "default_sample_type");
    check_str(p, p->drop_frames, "drop_frames");
    check_str(p, p->keep_frames, "keep_frames");
    for (size_t i = 0; i < p->n_comment; i++)
        check_str(p, p->comment[i], "comment");

    t->map = build_index("mapping", p->n_mapping, mapping_id, p);
    t->loc = build_index("location", p->n_location, location_id, p);
    t->fn = build_index("function", p->n_function, function_id, p);

    for (size_t i = 0; i < p->n_mapping; i++) {
        const Mapping *m = p->mapping[i];
        snprintf(where, sizeof where, "mapping %" PRIu64, m->id);
        check_str(p, m->filename, where);
        check_str(p, m->build_id, where);
    }
    for (size_t i = 0; i < p->n_function; i++) {
        const Function *f = p->function[i];
        snprintf(where, sizeof where, "function %" PRIu64, f->id);
        check_str(p, f->name, where);
        check_str(p, f->system_name, where);
        check_str(p, f->filename, where);
    }
    for (size_t i = 0; i < p->n_location; i++) {
        const Location *l = p->location[i];
        if (l->mapping_id != 0) {
            const Mapping *m = get_mapping(p, t, l->mapping_id);
            if (!m)
                fail("location %" PRIu64 " names missing mapping %" PRIu64, l->id, l->mapping_id);
            if (m->memory_limit != 0 &&
                (l->address < m->memory_start || l->address >= m->memory_limit))
                fail("location %" PRIu64 " address 0x%" PRIx64 " is outside mapping %" PRIu64
                     " [0x%" PRIx64 ", 0x%" PRIx64 ")",
                     l->id, l->address, m->id, m->memory_start, m->memory_limit);
        }
        for (size_t j = 0; j < l->n_line; j++) {
            /* pprof tolerates function_id 0 as "no function", but a line
             * without a function carries nothing, and heapprof never writes
             * one, so it is refused here. */
            if (!get_function(p, t, l->line[j]->function_id))
                fail("location %" PRIu64 " line #%zu names missing function %" PRIu64, l->id, j,
                     l->line[j]->function_id);
        }
    }
    for (size_t i = 0; i < p->n_sample; i++) {
        const Sample *s = p->sample[i];
        if (s->n_value != p->n_sample_type)
            fail("sample #%zu has %zu values but there are %zu sample types", i, s->n_value,
                 p->n_sample_type);
        for (size_t j = 0; j < s->n_location_id; j++)
            if (!get_location(p, t, s->location_id[j]))
                fail("sample #%zu names missing location %" PRIu64, i, s->location_id[j]);
        for (size_t j = 0; j < s->n_label; j++) {
            snprintf(where, sizeof where, "label of sample #%zu", i);
            check_str(p, s->label[j]->key, where);
            check_str(p, s->label[j]->str, where);
            check_str(p, s->label[j]->num_unit, where);
        }
    }
}

/* ---- text output ------------------------------------------------------------ */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Prints a profile string for the text form, with control characters
 * escaped so that one sample stays one line whatever a file name holds. */
static void put_text(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            printf("\\x%02x", *c);
        else
            putchar(*c);
    }
}

static void print_label(const Profile *p, const Label *l)
{
    put_text(str(p, l->key));
    if (l->str != 0) {
        putchar('=');
        put_text(str(p, l->str));
    } else {
        printf("=%" PRId64, l->num);
        put_text(str(p, l->num_unit));
    }
}

static void print_text(const Profile *p, const struct tables *t)
{
    printf("sample types:");
    for (size_t i = 0; i < p->n_sample_type; i++)
        printf(" %s/%s", str(p, p->sample_type[i]->type), str(p, p->sample_type[i]->unit));
    printf("\n");
    if (p->period_type)
        printf("period type: %s/%s\n", str(p, p->period_type->type), str(p, p->period_type->unit));
    else
        printf("period type: (none)\n");
    printf("period: %" PRId64 "\n", p->period);
    printf("default sample type: %s\n",
           p->default_sample_type ? str(p, p->default_sample_type) : "(none)");
    printf("time: %" PRId64 " ns, duration: %" PRId64 " ns\n", p->time_nanos, p->duration_nanos);
    for (size_t i = 0; i < p->n_comment; i++) {
        fputs("comment: ", stdout);
        put_text(str(p, p->comment[i]));
        putchar('\n');
    }

    printf("mappings: %zu\n", p->n_mapping);
    for (size_t i = 0; i < p->n_mapping; i++) {
        const Mapping *m = p->mapping[i];
        printf("  %" PRIu64 ": 0x%" PRIx64 "-0x%" PRIx64 " offset 0x%" PRIx64 " ", m->id,
               m->memory_start, m->memory_limit, m->file_offset);
        put_text(*str(p, m->filename) ? str(p, m->filename) : "(no file)");
        if (*str(p, m->build_id)) {
            fputs(" build-id ", stdout);
            put_text(str(p, m->build_id));
        }
        /* The flags tell pprof which symbols the profile already carries. */
        const char *flag_names[4] = {"functions", "filenames", "line_numbers", "inline_frames"};
        bool flags[4] = {m->has_functions, m->has_filenames, m->has_line_numbers,
                         m->has_inline_frames};
        int shown = 0;
        fputs(" [", stdout);
        for (int k = 0; k < 4; k++)
            if (flags[k])
                printf("%s%s", shown++ ? " " : "", flag_names[k]);
        printf("%s]\n", shown ? "" : "no symbols");
    }

    printf("samples: %zu\n", p->n_sample);
    for (size_t i = 0; i < p->n_sample; i++) {
        const Sample *s = p->sample[i];
        for (size_t j = 0; j < s->n_value; j++)
            printf("%s%" PRId64, j ? " " : "", s->value[j]);
        for (size_t j = 0; j < s->n_label; j++) {
            printf(j ? " " : "  ");
            print_label(p, s->label[j]);
        }
        printf(" :");
        bool first = true;
        for (size_t j = 0; j < s->n_location_id; j++) {
            const Location *l = get_location(p, t, s->location_id[j]);
            if (l->n_line == 0) {
                const Mapping *m = l->mapping_id ? get_mapping(p, t, l->mapping_id) : NULL;
                printf("%s0x%" PRIx64, first ? " " : " <- ", l->address);
                if (m && *str(p, m->filename)) {
                    fputs(" (", stdout);
                    put_text(base_name(str(p, m->filename)));
                    putchar(')');
                }
                first = false;
                continue;
            }
            for (size_t k = 0; k < l->n_line; k++) {
                const Function *f = get_function(p, t, l->line[k]->function_id);
                fputs(first ? " " : " <- ", stdout);
                put_text(*str(p, f->name) ? str(p, f->name) : "??");
                if (*str(p, f->filename)) {
                    fputs(" (", stdout);
                    put_text(str(p, f->filename));
                    printf(":%" PRId64 ")", l->line[k]->line);
                }
                first = false;
            }
        }
        printf("\n");
    }
}

/* ---- JSON output ------------------------------------------------------------ */

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"':
            fputs("\\\"", stdout);
            break;
        case '\\':
            fputs("\\\\", stdout);
            break;
        case '\n':
            fputs("\\n", stdout);
            break;
        case '\r':
            fputs("\\r", stdout);
            break;
        case '\t':
            fputs("\\t", stdout);
            break;
        case '\b':
            fputs("\\b", stdout);
            break;
        case '\f':
            fputs("\\f", stdout);
            break;
        default:
            /* Bytes >= 0x80 pass through: names are UTF-8 (or at worst
             * arbitrary bytes a strict parser will reject, which is the
             * honest outcome). */
            if (*c < 0x20)
                printf("\\u%04x", *c);
            else
                putchar(*c);
        }
    }
    putchar('"');
}

static void json_vt(const Profile *p, const ValueType *vt)
{
    printf("[");
    json_str(vt ? str(p, vt->type) : "");
    printf(",");
    json_str(vt ? str(p, vt->unit) : "");
    printf("]");
}

static void print_json(const Profile *p, const struct tables *t)
{
    printf("{\"sample_types\":[");
    for (size_t i = 0; i < p->n_sample_type; i++) {
        if (i)
            printf(",");
        json_vt(p, p->sample_type[i]);
    }
    printf("],\n\"period_type\":");
    json_vt(p, p->period_type);
    printf(",\n\"period\":%" PRId64 ",\n\"default_sample_type\":", p->period);
    json_str(str(p, p->default_sample_type));
    printf(",\n\"time_nanos\":%" PRId64 ",\n\"duration_nanos\":%" PRId64 ",\n\"comments\":[",
           p->time_nanos, p->duration_nanos);
    for (size_t i = 0; i < p->n_comment; i++) {
        if (i)
            printf(",");
        json_str(str(p, p->comment[i]));
    }
    printf("],\n\"mappings\":[");
    for (size_t i = 0; i < p->n_mapping; i++) {
        const Mapping *m = p->mapping[i];
        printf("%s\n{\"id\":%" PRIu64 ",\"start\":%" PRIu64 ",\"limit\":%" PRIu64
               ",\"offset\":%" PRIu64 ",\"file\":",
               i ? "," : "", m->id, m->memory_start, m->memory_limit, m->file_offset);
        json_str(str(p, m->filename));
        printf(",\"build_id\":");
        json_str(str(p, m->build_id));
        printf(",\"has_functions\":%s,\"has_filenames\":%s,\"has_line_numbers\":%s,"
               "\"has_inline_frames\":%s}",
               m->has_functions ? "true" : "false", m->has_filenames ? "true" : "false",
               m->has_line_numbers ? "true" : "false", m->has_inline_frames ? "true" : "false");
    }
    printf("],\n\"samples\":[");
    for (size_t i = 0; i < p->n_sample; i++) {
        const Sample *s = p->sample[i];
        printf("%s\n{\"values\":[", i ? "," : "");
        for (size_t j = 0; j < s->n_value; j++)
            printf("%s%" PRId64, j ? "," : "", s->value[j]);
        printf("],\"labels\":{");
        for (size_t j = 0; j < s->n_label; j++) {
            const Label *l = s->label[j];
            if (j)
                printf(",");
            json_str(str(p, l->key));
            printf(":");
            if (l->str != 0)
                json_str(str(p, l->str));
            else
                printf("%" PRId64, l->num);
        }
        printf("},\"stack\":[");
        for (size_t j = 0; j < s->n_location_id; j++) {
            const Location *l = get_location(p, t, s->location_id[j]);
            printf("%s{\"address\":%" PRIu64 ",\"mapping\":%" PRIu64 ",\"lines\":[", j ? "," : "",
                   l->address, l->mapping_id);
            for (size_t k = 0; k < l->n_line; k++) {
                const Function *f = get_function(p, t, l->line[k]->function_id);
                printf("%s{\"function\":", k ? "," : "");
                json_str(str(p, f->name));
                printf(",\"system_name\":");
                json_str(str(p, f->system_name));
                printf(",\"file\":");
                json_str(str(p, f->filename));
                printf(",\"line\":%" PRId64 "}", l->line[k]->line);
            }
            printf("]}");
        }
        printf("]}");
    }
    printf("]}\n");
}

/* ---- per-function totals ---------------------------------------------------- */

struct fn_total {
    const char *name; /* key; points into the unpacked profile or names[] */
    int64_t *values;
    size_t last_sample; /* 1 + index of the last sample counted, for cum */
    UT_hash_handle hh;
};

static size_t n_values_g;

static int total_cmp(const void *a, const void *b)
{
    const struct fn_total *x = *(const struct fn_total *const *)a;
    const struct fn_total *y = *(const struct fn_total *const *)b;
    if (n_values_g) {
        int64_t vx = x->values[n_values_g - 1], vy = y->values[n_values_g - 1];
        if (vx != vy)
            return vx > vy ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* A frame's display name: the function name, or its address when the
 * location has no symbol, so unsymbolized frames still add up somewhere. */
static const char *frame_name(const Profile *p, const struct tables *t, const Location *l,
                              size_t line, char *buf, size_t len)
{
    if (line < l->n_line) {
        const Function *f = get_function(p, t, l->line[line]->function_id);
        if (*str(p, f->name))
            return str(p, f->name);
        if (*str(p, f->system_name))
            return str(p, f->system_name);
    }
    snprintf(buf, len, "0x%" PRIx64, l->address);
    return buf;
}

static void add_total(struct fn_total **tab, const char *name, const Sample *s, size_t sample_no,
                      bool once_per_sample)
{
    struct fn_total *e;
    HASH_FIND_STR(*tab, name, e);
    if (!e) {
        e = xrealloc(NULL, sizeof *e);
        e->name = strdup(name);
        if (!e->name)
            fail("out of memory");
        e->values = xrealloc(NULL, n_values_g * sizeof *e->values);
        memset(e->values, 0, n_values_g * sizeof *e->values);
        e->last_sample = 0;
        HASH_ADD_KEYPTR(hh, *tab, e->name, strlen(e->name), e);
    }
    if (once_per_sample && e->last_sample == sample_no + 1)
        return;
    e->last_sample = sample_no + 1;
    for (size_t k = 0; k < n_values_g; k++)
        e->values[k] += s->value[k];
}

static void print_functions(const Profile *p, const struct tables *t, bool cum)
{
    struct fn_total *tab = NULL;
    char buf[32];
    n_values_g = p->n_sample_type;
    for (size_t i = 0; i < p->n_sample; i++) {
        const Sample *s = p->sample[i];
        if (s->n_location_id == 0) {
            add_total(&tab, "<empty stack>", s, i, true);
            continue;
        }
        for (size_t j = 0; j < s->n_location_id; j++) {
            const Location *l = get_location(p, t, s->location_id[j]);
            size_t nl = l->n_line ? l->n_line : 1;
            for (size_t k = 0; k < nl; k++) {
                add_total(&tab, frame_name(p, t, l, k, buf, sizeof buf), s, i, true);
                if (!cum)
                    break;
            }
            if (!cum)
                break;
        }
    }
    size_t n = HASH_COUNT(tab), i = 0;
    struct fn_total **v = xrealloc(NULL, n * sizeof *v), *e, *tmp;
    HASH_ITER(hh, tab, e, tmp)
    {
        v[i++] = e;
    }
    qsort(v, n, sizeof *v, total_cmp);
    for (i = 0; i < n; i++) {
        for (size_t k = 0; k < n_values_g; k++)
            printf("%" PRId64 "\t", v[i]->values[k]);
        printf("%s\n", v[i]->name);
    }
    HASH_ITER(hh, tab, e, tmp)
    {
        HASH_DEL(tab, e);
        free((void *)e->name);
        free(e->values);
        free(e);
    }
    free(v);
}

/* ---- main ------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s [--json | --functions[=flat|cum]] FILE\n"
            "Reads a pprof profile (gzip-compressed or not; FILE '-' is stdin), checks\n"
            "it as `go tool pprof` would, and prints it.\n"
            "\n"
            "  (default)          readable text: header, mappings, one line per sample\n"
            "                     (values, labels, stack leaf first)\n"
            "  --json             the whole profile as one JSON document\n"
            "  --functions[=flat] per function: the sample's leaf function only\n"
            "  --functions=cum    per function: every function on the stack, once per sample\n"
            "                     (function output: one line per function, tab separated:\n"
            "                     each sample type's total in profile order, then the name;\n"
            "                     sorted by the last value descending, then name)\n"
            "  --help             this text\n"
            "\n"
            "Exit status: 0 ok, 1 unreadable or invalid profile, 2 usage error.\n",
            prog);
}

int main(int argc, char **argv)
{
    enum mode mode = MODE_TEXT;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            mode = MODE_JSON;
        } else if (!strcmp(a, "--functions") || !strcmp(a, "--functions=flat")) {
            mode = MODE_FLAT;
        } else if (!strcmp(a, "--functions=cum")) {
            mode = MODE_CUM;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: unknown option %s\n", prog, a);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "%s: only one FILE may be given\n", prog);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    input_name = path;

    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        fail("cannot open: %s", strerror(errno));
    size_t len;
    unsigned char *raw = read_all(f, &len);
    if (f != stdin)
        fclose(f);
    if (len >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        size_t out_len;
        unsigned char *plain = gunzip(raw, len, &out_len);
        free(raw);
        raw = plain;
        len = out_len;
    }

    Profile *p = perftools__profiles__profile__unpack(NULL, len, raw);
    if (!p)
        fail("not a valid profile.proto message (protobuf decoding failed)");

    struct tables t;
    validate(p, &t);

    switch (mode) {
    case MODE_TEXT:
        print_text(p, &t);
        break;
    case MODE_JSON:
        print_json(p, &t);
        break;
    case MODE_FLAT:
        print_functions(p, &t, false);
        break;
    case MODE_CUM:
        print_functions(p, &t, true);
        break;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: write error\n", prog);
        return 1;
    }
    free(t.map);
    free(t.loc);
    free(t.fn);
    perftools__profiles__profile__free_unpacked(p, NULL);
    free(raw);
    return 0;
}
