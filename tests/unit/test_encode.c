/* Encoder round trip: a hand-made snapshot is written as a profile, read
 * back with protobuf-c and with the project's decoder (heapprof-decode,
 * argv[1]), and every field heapprof promises is checked, values against
 * Go's unbiasing computed here independently. */
#define _GNU_SOURCE
#include "record/record.h"
#include "report/report.h"
#include "profile.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"

__attribute__((noinline)) static void *ret_addr(void)
{
    return __builtin_return_address(0);
}

/* Two call sites whose return addresses stand for allocation sites. */
__attribute__((noinline)) void *alpha_site(void);
__attribute__((noinline)) void *alpha_site(void)
{
    void *r = ret_addr();
    __asm__ volatile("" ::: "memory");
    return r;
}
__attribute__((noinline)) void *beta_site(void);
__attribute__((noinline)) void *beta_site(void)
{
    void *r = ret_addr();
    __asm__ volatile("" ::: "memory");
    return r;
}

/* Go's unbiasing of one bucket, unrounded. */
static double go_exact(int64_t count, uint64_t size, long rate, bool bytes)
{
    double scale = rate <= 1 ? 1.0 : 1.0 / (1.0 - exp(-(double)size / (double)rate));
    return (double)count * (bytes ? (double)size : 1.0) * scale;
}

static uint8_t *read_gunzip(const char *path, size_t *len)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    int n = gzread(f, buf, (unsigned)cap);
    gzclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return buf;
}

int main(int argc, char **argv)
{
    void *main_ret = ret_addr();
    void *a = alpha_site(), *b = beta_site();

    struct hp_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.rate = 524288;
    /* Two stacks recorded in the stack table, as the sampled path records
     * them; the snapshot's counts are made by hand. */
    hp_cfg.rate = 524288;
    hp_cfg.max_memory = 64 << 20;
    hp_table_init();
    void *ips1[2] = {a, main_ret}, *ips2[2] = {b, main_ret};
    uint32_t s1 = hp_bucket_at(hp_table_record(ips1, 2, 1024, 0))->stack;
    uint32_t s2 = hp_bucket_at(hp_table_record(ips2, 2, 524288, 0))->stack;
    CHECK(s1 && s2 && s1 != s2, "stacks %u %u", s1, s2);
    /* Each bucket's weights as the sampled path adds them: 1/p(s) objects
     * and s/p(s) bytes per sample. */
#define BUCKET(st, size, nalloc, nlive)                                                            \
    {                                                                                              \
        .stack = (st), .allocs = (nalloc), .live = (nlive), .w = {                                 \
            go_exact(nalloc, size, 524288, false),                                                 \
            go_exact(nalloc, size, 524288, true),                                                  \
            go_exact(nlive, size, 524288, false),                                                  \
            go_exact(nlive, size, 524288, true)                                                    \
        }                                                                                          \
    }
    struct hp_snap_bucket buckets[] = {
        /* Go's example: 2050 objects, 2099200.67 bytes. */
        BUCKET(s1, 1024, 4, 4),
        /* Go's example: 1.58 objects, 829411 bytes. */
        BUCKET(s2, 524288, 1, 1),
        /* Another size class under one stack, one still live. */
        BUCKET(s1, 100, 3, 1),
    };
    snap.buckets = buckets;
    snap.nbuckets = 3;
    hp_snapshot_estimate(&snap);
    /* The profile rounds each stack's total, shared among its buckets. */
    int64_t s1_total[4] = {
        llround(go_exact(4, 1024, 524288, false) + go_exact(3, 100, 524288, false)),
        llround(go_exact(4, 1024, 524288, true) + go_exact(3, 100, 524288, true)),
        llround(go_exact(4, 1024, 524288, false) + go_exact(1, 100, 524288, false)),
        llround(go_exact(4, 1024, 524288, true) + go_exact(1, 100, 524288, true))};
    int64_t s1_seen[4] = {0, 0, 0, 0};

    char path[] = "/tmp/heapprof-encode-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    struct hp_symbolizer *sym = hp_sym_open(&snap.arena);
    int r = hp_profile_write(&snap, sym, path, hp_now_ns() - 1000);
    CHECK(r == 0, "hp_profile_write: %d", r);

    size_t len;
    uint8_t *raw = read_gunzip(path, &len);
    Perftools__Profiles__Profile *p =
        raw ? perftools__profiles__profile__unpack(NULL, len, raw) : NULL;
    CHECK(p != NULL, "profile does not unpack");
    if (!p)
        return 1;
    char **st = p->string_table;
    CHECK(p->n_string_table > 0 && !strcmp(st[0], ""), "string_table[0] is not empty");
    const char *types[4][2] = {{"alloc_objects", "count"},
                               {"alloc_space", "bytes"},
                               {"inuse_objects", "count"},
                               {"inuse_space", "bytes"}};
    CHECK(p->n_sample_type == 4, "%zu sample types", p->n_sample_type);
    for (size_t i = 0; i < 4 && i < p->n_sample_type; i++)
        CHECK(!strcmp(st[p->sample_type[i]->type], types[i][0]) &&
                  !strcmp(st[p->sample_type[i]->unit], types[i][1]),
              "sample type %zu is %s/%s", i, st[p->sample_type[i]->type],
              st[p->sample_type[i]->unit]);
    CHECK(p->period_type && !strcmp(st[p->period_type->type], "space") &&
              !strcmp(st[p->period_type->unit], "bytes"),
          "period type");
    CHECK(p->period == 524288, "period %lld", (long long)p->period);
    CHECK(p->default_sample_type == 0, "heap profile sets no default sample type");
    CHECK(p->time_nanos > 0 && p->duration_nanos > 0, "time and duration");
    CHECK(p->n_sample == 3, "%zu samples", p->n_sample);

    for (size_t i = 0; i < p->n_sample && i < 3; i++) {
        Perftools__Profiles__Sample *sm = p->sample[i];
        /* Find the bucket this sample came from by its size label (the
         * average size: here each bucket holds one size). The estimate
         * sorted the buckets. */
        CHECK(sm->n_label == 1 && !strcmp(st[sm->label[0]->key], "bytes"), "bytes label");
        struct hp_snap_bucket *bk = NULL;
        for (int k = 0; k < 3; k++)
            if (sm->n_label && hp_snap_avg_size(&buckets[k]) == (uint64_t)sm->label[0]->num)
                bk = &buckets[k];
        CHECK(bk != NULL, "sample %zu has no matching bucket", i);
        if (!bk)
            continue;
        CHECK(sm->n_value == 4, "value count");
        if (bk->stack == s2) {
            /* Go's published example: one 512 KiB object at 512 KiB. */
            CHECK(sm->n_value == 4 && sm->value[1] == 829411 && sm->value[3] == 829411,
                  "512 KiB object: %lld bytes, want 829411", (long long)sm->value[1]);
            CHECK(sm->n_value == 4 && sm->value[0] == llround(go_exact(1, 524288, 524288, false)),
                  "512 KiB object: %lld objects", (long long)sm->value[0]);
        } else {
            for (int v = 0; v < 4 && v < (int)sm->n_value; v++)
                s1_seen[v] += sm->value[v];
        }
        CHECK(sm->n_location_id == 2, "stack depth");
        struct hp_frame fs[HP_MAX_FRAMES];
        CHECK(hp_stack_frames(bk->stack, fs, HP_MAX_FRAMES) == 2, "stack depth in the table");
        for (size_t l = 0; l < sm->n_location_id; l++) {
            uint64_t id = sm->location_id[l];
            CHECK(id >= 1 && id <= p->n_location, "location id %llu", (unsigned long long)id);
            if (id < 1 || id > p->n_location)
                continue;
            Perftools__Profiles__Location *loc = p->location[id - 1];
            CHECK(loc->address == (uint64_t)fs[l].ip - 1, "address is not return address - 1");
            CHECK(loc->mapping_id >= 1 && loc->mapping_id <= p->n_mapping, "mapping id");
            if (loc->mapping_id >= 1 && loc->mapping_id <= p->n_mapping) {
                Perftools__Profiles__Mapping *m = p->mapping[loc->mapping_id - 1];
                CHECK(loc->address >= m->memory_start && loc->address < m->memory_limit,
                      "address outside its mapping");
                CHECK(m->has_functions, "mapping of a named frame lacks has_functions");
            }
            CHECK(loc->n_line >= 1, "location without a line");
            if (loc->n_line) {
                uint64_t fid = loc->line[loc->n_line - 1]->function_id;
                CHECK(fid >= 1 && fid <= p->n_function, "function id");
                const char *name = st[p->function[fid - 1]->name];
                const char *want_name =
                    l == 1 ? "main" : (bk->stack == s1 ? "alpha_site" : "beta_site");
                CHECK(!strcmp(name, want_name), "frame %zu is %s, want %s", l, name, want_name);
                CHECK(strstr(st[p->function[fid - 1]->filename], "test_encode.c") != NULL,
                      "file of %s is %s", name, st[p->function[fid - 1]->filename]);
                CHECK(loc->line[loc->n_line - 1]->line > 0, "line number");
            }
        }
    }
    for (int v = 0; v < 4; v++)
        CHECK(s1_seen[v] == s1_total[v], "stack 1 value %d sums to %lld, want %lld", v,
              (long long)s1_seen[v], (long long)s1_total[v]);
    /* Go's example 4 x 1024 B gives 2050 objects, 2099200.67 bytes. */
    CHECK(llround(go_exact(4, 1024, 524288, false)) == 2050, "Go's 4 x 1024 B objects");

    /* The main executable's mapping comes first, with its build id. */
    CHECK(p->n_mapping >= 1, "no mappings");
    if (p->n_mapping) {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
        CHECK(!strcmp(st[p->mapping[0]->filename], exe), "first mapping is %s, not %s",
              st[p->mapping[0]->filename], exe);
        CHECK(strlen(st[p->mapping[0]->build_id]) >= 16, "main mapping has no build id");
    }
    perftools__profiles__profile__free_unpacked(p, NULL);
    free(raw);

    /* The project's decoder reads the same values. */
    if (argc > 1) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' --functions=flat '%s'", argv[1], path);
        FILE *f = popen(cmd, "r");
        char line[1024];
        int seen = 0;
        while (f && fgets(line, sizeof line, f)) {
            long long v[4];
            char name[512];
            if (sscanf(line, "%lld %lld %lld %lld %511s", &v[0], &v[1], &v[2], &v[3], name) != 5)
                continue;
            if (!strcmp(name, "alpha_site")) {
                seen++;
                CHECK(v[0] == s1_total[0], "decoder: alpha_site alloc_objects %lld", v[0]);
                CHECK(v[3] == s1_total[3], "decoder: alpha_site inuse_space %lld", v[3]);
            } else if (!strcmp(name, "beta_site")) {
                seen++;
                CHECK(v[1] == 829411, "decoder: beta_site %lld %lld", v[0], v[1]);
            }
        }
        CHECK(f && pclose(f) == 0, "decoder failed");
        CHECK(seen == 2, "decoder showed %d of the 2 sites", seen);
    }

    /* An empty profile is still a valid one. */
    struct hp_snapshot empty;
    memset(&empty, 0, sizeof empty);
    empty.rate = 1;
    r = hp_profile_write(&empty, sym, path, 0);
    CHECK(r == 0, "empty profile: %d", r);
    raw = read_gunzip(path, &len);
    p = raw ? perftools__profiles__profile__unpack(NULL, len, raw) : NULL;
    CHECK(p && p->n_sample == 0 && p->n_sample_type == 4 && p->period == 1, "empty profile");
    if (p)
        perftools__profiles__profile__free_unpacked(p, NULL);
    free(raw);

    hp_sym_close(sym);
    hp_arena_release(&snap.arena);
    unlink(path);
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("encode round trip: all checks passed\n");
    return 0;
}
