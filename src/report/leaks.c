/* The leak summary: the stacks whose sampled allocations are still live at
 * exit, by the leak check's verdict (report/reach.c): definitely lost, then
 * indirectly lost, each stack with its bytes, objects and frames; memory
 * still reachable (in sampled mode: still referenced) is one line, or its
 * stacks too with HEAPPROF_LEAK_REACHABLE. Without the check
 * (HEAPPROF_LEAK_SCAN=0, or when it could not be made) every stack with
 * memory never freed is listed, as heaptrack's and bytehound's "never
 * freed" do. Per stack the in-use estimate is the sum over its buckets of
 * the same unbiased values the profile holds, so the summary and
 * `go tool pprof -sample_index=inuse_space` (with -tagfocus=leak=...) agree
 * to the byte.
 *
 * Suppressions use LeakSanitizer's file format: lines `leak:PATTERN`, where
 * PATTERN is matched against each frame's function (demangled and mangled),
 * source file and module; `*` matches any run of characters, `^` and `$`
 * anchor, and otherwise it may match anywhere. A built-in list drops the C
 * and C++ runtimes' one-time allocations (stdio buffers, the C++ exception
 * emergency pool, the loader's TLS and link maps, locale data), which no
 * program can free. Those patterns are matched only against the frames of
 * the runtime nearest the allocation (the C library, the loader, the C++
 * and gcc runtimes), up to the first frame of the program's own code: what
 * the runtime allocated for itself. Memory the program's code allocated is
 * its own, even when the loader called that code (a destructor run by
 * _dl_fini, a dlopen'ed library's constructor).
 */
#define _GNU_SOURCE
#include "leaks.h"
#include "iface.h"
#include "symbols.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Matched against every frame; the C library's internal functions have no
 * names without its separate debug info, so its caches are recognised by the
 * public function that fills them. */
static const char *const builtin_suppressions[] = {
    "_IO_file_doallocate",               /* stdio buffers */
    "(anonymous namespace)::pool::pool", /* libstdc++'s exception emergency pool */
    "^ld-linux",                         /* the loader: TLS blocks, dlopen's link maps, */
    "^_dl_",                             /* and what libraries' constructors allocate */
    "__new_exitfn",                      /* atexit records */
    "^_nl_",                             /* locale data */
    "^setlocale$",
    "^tzset$", /* the time zone, read once */
    "^tzset_internal$",
    "^__tzfile_",
    "^__tzstring",
    "^__tz_convert$",
    "^localtime$",
    "^localtime_r$",
    "^mktime$",
    "^ctime$",
    "^ctime_r$",
    "^strftime$",
    "^__nss_", /* name service modules and their caches */
    "^nss_",
    "^__gconv", /* character set converters loaded once */
    "^getpwnam$",
    "^getpwuid$",
    "^getgrnam$",
    "^getgrgid$",
    "^gethostbyname$",
    "^gethostbyname2$",
    "^gethostbyaddr$",
    "^getservbyname$",
    "^getprotobyname$",
    NULL,
};

enum { LEAK_THREADS = 4 };
struct leak {
    uint32_t stack;   /* leaf node */
    uint32_t verdict; /* enum hp_verdict; HP_V_NONE without the leak check */
    bool live;        /* some sampled object of the stack is in use */
    uint64_t bytes, objects;
    double var;      /* of the bytes estimate */
    int64_t samples; /* live samples behind it */
    /* The names of the threads whose objects are in use, the first few. */
    const char *threads[LEAK_THREADS];
    int nthreads, more_threads;
};

static void note_thread(struct leak *l, const char *name)
{
    for (int i = 0; i < l->nthreads; i++)
        if (!strcmp(l->threads[i], name))
            return;
    if (l->nthreads < LEAK_THREADS)
        l->threads[l->nthreads++] = name;
    else
        l->more_threads++;
}

/* Glob match of pattern (with * and optional ^/$ anchors) within s. */
static bool glob_at(const char *p, const char *s, bool anchored_end)
{
    for (; *p; p++, s++) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return true;
            for (; *s; s++)
                if (glob_at(p, s, anchored_end))
                    return true;
            return glob_at(p, s, anchored_end);
        }
        if (*p == '$' && !p[1])
            return *s == 0;
        if (*s != *p)
            return false;
    }
    return !anchored_end || *s == 0;
}

static bool pattern_match(const char *pat, const char *s)
{
    if (!s || !*s)
        return false;
    if (pat[0] == '^')
        return glob_at(pat + 1, s, false);
    for (const char *q = s; *q; q++)
        if (glob_at(pat, q, false))
            return true;
    return false;
}

struct supp {
    const char **pats;
    int n;
    int nbuiltin; /* the first nbuiltin patterns are the built-in ones */
};

/* The runtime's own objects: their frames are where a built-in pattern may
 * match. */
static bool runtime_module(const char *base)
{
    static const char *const prefixes[] = {
        "libc.so", "ld-linux",      "ld64.so",  "libstdc++.so", "libgcc_s.so",
        "libm.so", "libpthread.so", "libdl.so", "libheapprof",  NULL};
    for (int i = 0; base && prefixes[i]; i++)
        if (!strncmp(base, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

static void load_suppressions(struct hp_arena *a, struct supp *sp)
{
    int cap = 64;
    sp->pats = hp_arena_alloc(a, (size_t)cap * sizeof *sp->pats);
    sp->n = 0;
    sp->nbuiltin = 0;
    if (!sp->pats)
        return;
    for (int i = 0; builtin_suppressions[i] && sp->n < cap; i++)
        sp->pats[sp->n++] = builtin_suppressions[i];
    sp->nbuiltin = sp->n;
    if (!hp_cfg.suppressions[0])
        return;
    char *buf = hp_read_file(a, hp_cfg.suppressions, NULL);
    if (!buf) {
        hp_log("heapprof: cannot read HEAPPROF_SUPPRESSIONS file %s: %s", hp_cfg.suppressions,
               strerror(errno));
        return;
    }
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        while (*line == ' ' || *line == '\t')
            line++;
        size_t l = strlen(line);
        while (l && (line[l - 1] == ' ' || line[l - 1] == '\r' || line[l - 1] == '\t'))
            line[--l] = 0;
        if (!*line || *line == '#')
            continue;
        if (strncmp(line, "leak:", 5) != 0)
            continue; /* other LSan/TSan kinds do not apply */
        if (sp->n == cap) {
            const char **np = hp_arena_alloc(a, (size_t)cap * 2 * sizeof *np);
            if (!np)
                break;
            memcpy(np, sp->pats, (size_t)cap * sizeof *np);
            sp->pats = np;
            cap *= 2;
        }
        if (line[5])
            sp->pats[sp->n++] = hp_arena_strdup(a, line + 5);
    }
}

static bool suppressed(const struct supp *sp, struct hp_symbolizer *sym, uint32_t st)
{
    struct hp_mapping *maps;
    int nmaps = hp_sym_mappings(sym, &maps);
    struct hp_frame fs[HP_MAX_FRAMES];
    int depth = hp_stack_frames(st, fs, HP_MAX_FRAMES);
    bool in_runtime = true; /* still in the runtime's frames nearest the allocation */
    for (int d = 0; d < depth; d++) {
        struct hp_symbolized fr;
        hp_sym_lookup(sym, fs[d].ip, fs[d].epoch, &fr);
        const char *module =
            fr.mapping >= 0 && fr.mapping < nmaps ? hp_basename(maps[fr.mapping].file) : NULL;
        in_runtime = in_runtime && runtime_module(module);
        for (int i = in_runtime ? 0 : sp->nbuiltin; i < sp->n; i++) {
            if (!sp->pats[i])
                continue;
            if (pattern_match(sp->pats[i], module))
                return true;
            for (int l = 0; l < fr.nlines; l++)
                if (pattern_match(sp->pats[i], fr.lines[l].function) ||
                    pattern_match(sp->pats[i], fr.lines[l].system_name) ||
                    pattern_match(sp->pats[i], fr.lines[l].file))
                    return true;
        }
    }
    return false;
}

static int by_bytes_desc(const void *x, const void *y)
{
    const struct leak *a = x, *b = y;
    if (a->bytes != b->bytes)
        return a->bytes < b->bytes ? 1 : -1;
    if (a->objects != b->objects)
        return a->objects < b->objects ? 1 : -1;
    return a->stack < b->stack ? -1 : a->stack > b->stack;
}

/* The function's name, with the call's offset in it when asked:
 * "func+0x1a" (the offset of the call instruction, return address - 1, from
 * the function's symbol), or "func@0xADDR" when no symbol gives its start. */
static void offset_name(char *out, size_t len, struct hp_symbolizer *sym, const char *function,
                        const struct hp_frame *f, bool with_offset)
{
    uint64_t off;
    if (!with_offset)
        snprintf(out, len, "%s", function);
    else if (hp_sym_offset(sym, f->ip, f->epoch, &off))
        snprintf(out, len, "%s+%#llx", function, (unsigned long long)off);
    else
        snprintf(out, len, "%s@%#lx", function, (unsigned long)(f->ip - 1));
}

/* offsets: bit d set prints frame d with its call's offset in its function
 * (same_text_offsets). */
static void put_frames(struct hp_text *t, struct hp_symbolizer *sym, uint32_t st, uint64_t offsets)
{
    struct hp_mapping *maps;
    int nmaps = hp_sym_mappings(sym, &maps);
    int shown = 0, total = 0;
    struct hp_frame fs[HP_MAX_FRAMES];
    int depth = hp_stack_frames(st, fs, HP_MAX_FRAMES);
    for (int d = 0; d < depth; d++) {
        struct hp_symbolized fr;
        hp_sym_lookup(sym, fs[d].ip, fs[d].epoch, &fr);
        total += fr.nlines ? fr.nlines : 1;
        if (shown >= hp_cfg.leak_frames)
            continue; /* counted, not shown */
        const char *module =
            fr.mapping >= 0 && fr.mapping < nmaps ? hp_basename(maps[fr.mapping].file) : "?";
        if (fr.nlines == 0) {
            hp_text_put(t, "    #%d 0x%lx in %s\n", shown++, (unsigned long)(fs[d].ip - 1), module);
            continue;
        }
        for (int l = 0; l < fr.nlines && shown < hp_cfg.leak_frames; l++) {
            const struct hp_frame_line *ln = &fr.lines[l];
            char fn[1024];
            /* The offset goes on the function the address is in: the last
             * line (the first ones are functions inlined into it). */
            offset_name(fn, sizeof fn, sym, ln->function, &fs[d],
                        l == fr.nlines - 1 && d < 64 && (offsets >> d & 1));
            if (ln->file && ln->line > 0)
                hp_text_put(t, "    #%d %s at %s:%d\n", shown++, fn, ln->file, ln->line);
            else
                hp_text_put(t, "    #%d %s in %s\n", shown++, fn, module);
        }
    }
    if (total > shown)
        hp_text_put(t, "    ... %d more frame%s (HEAPPROF_LEAK_FRAMES=%d)\n", total - shown,
                    total - shown == 1 ? "" : "s", hp_cfg.leak_frames);
}

static const char *const verdict_words[HP_NVERDICTS] = {"", "definitely lost", "indirectly lost",
                                                        "still reachable"};

/* The square root of v >= 0 (libm is not linked: iface.h): a first guess
 * from the exponent halved, within 6%, then Newton's steps, each doubling
 * the digits right. */
static double root(double v)
{
    if (!(v > 0) || v == __builtin_inf())
        return v > 0 ? v : 0;
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    b = (b >> 1) + (1023ull << 51);
    double r;
    memcpy(&r, &b, sizeof r);
    for (int i = 0; i < 6; i++)
        r = 0.5 * (r + v / r);
    return r;
}

static void put_stack(struct hp_text *t, struct hp_symbolizer *sym, const struct leak *l,
                      size_t num, bool exact, const char *verdict, uint64_t offsets)
{
    if (exact)
        hp_text_put(t, "heapprof: leak #%zu: %llu bytes in %llu objects%s%s%s allocated from:\n",
                    num, (unsigned long long)l->bytes, (unsigned long long)l->objects,
                    *verdict ? " " : "", verdict, *verdict ? "," : "");
    else
        /* How sure: the standard error of the estimate (the square root of
         * its estimated variance) and the samples behind it. */
        hp_text_put(t,
                    "heapprof: leak #%zu: %llu bytes (± %llu, %lld sample%s) in %llu objects%s%s%s "
                    "allocated from:\n",
                    num, (unsigned long long)l->bytes, (unsigned long long)(root(l->var) + 0.5),
                    (long long)l->samples, l->samples == 1 ? "" : "s",
                    (unsigned long long)l->objects, *verdict ? " " : "", verdict,
                    *verdict ? "," : "");
    put_frames(t, sym, l->stack, offsets);
    if (l->nthreads) {
        hp_text_put(t, "    threads:");
        for (int k = 0; k < l->nthreads; k++)
            hp_text_put(t, "%s %s", k ? "," : "", l->threads[k]);
        hp_text_put(t, "%s\n", l->more_threads ? ", ..." : "");
    }
}

static int by_verdict_bytes(const void *x, const void *y)
{
    const struct leak *a = x, *b = y;
    if (a->verdict != b->verdict)
        return a->verdict < b->verdict ? -1 : 1;
    return by_bytes_desc(x, y);
}

struct rendered {
    const char *text;
    size_t len, i;
};

static int by_text(const void *x, const void *y)
{
    const struct rendered *a = x, *b = y;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    int c = a->len ? memcmp(a->text, b->text, a->len) : 0;
    return c ? c : (a->i < b->i ? -1 : a->i > b->i);
}

/* Two distinct stacks can print the same once symbolized: two calls in one
 * function built without line info, or two calls on one line. Rule: among
 * the n stacks shown, each group that prints identically gets, on every
 * frame whose address is not the same in all of the group, the call's
 * offset in its function (func+0x1a), which tells them apart wherever the
 * difference is in the frames shown. Returns a mask per stack for
 * put_frames (all zero when nothing reads alike); NULL without memory. */
static uint64_t *same_text_offsets(struct hp_arena *a, struct hp_symbolizer *sym,
                                   const struct leak *leaks, size_t n)
{
    uint64_t *mask = hp_arena_alloc(a, (n ? n : 1) * sizeof *mask);
    struct rendered *r = hp_arena_alloc(a, (n ? n : 1) * sizeof *r);
    if (!mask || !r)
        return mask;
    for (size_t i = 0; i < n; i++) {
        struct hp_text t = {.a = a};
        put_frames(&t, sym, leaks[i].stack, 0);
        r[i].text = t.p;
        r[i].len = t.len;
        r[i].i = i;
    }
    qsort(r, n, sizeof *r, by_text);
    for (size_t g = 0; g < n;) {
        size_t end = g + 1;
        while (end < n && r[end].len == r[g].len &&
               (!r[g].len || !memcmp(r[end].text, r[g].text, r[g].len)))
            end++;
        if (end - g > 1) {
            struct hp_frame first[HP_MAX_FRAMES], other[HP_MAX_FRAMES];
            int d0 = hp_stack_frames(leaks[r[g].i].stack, first, HP_MAX_FRAMES);
            uint64_t differ = 0;
            for (size_t k = g + 1; k < end; k++) {
                int dk = hp_stack_frames(leaks[r[k].i].stack, other, HP_MAX_FRAMES);
                for (int d = 0; d < d0 && d < dk && d < 64; d++)
                    if (first[d].ip != other[d].ip)
                        differ |= (uint64_t)1 << d;
            }
            for (size_t k = g; k < end; k++)
                mask[r[k].i] = differ;
        }
        g = end;
    }
    return mask;
}

static void size_text(char *out, size_t len, double v)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* "No leaks", as far as the sample can tell. In exact mode it is the truth.
 * At rate R, sampling is a Poisson process over bytes: a leak of L bytes in
 * all (one object or many) holds no sample, and goes unseen, with
 * probability exp(-L/R); it is seen 19 times in 20 only from
 * L = R ln 20, about 3R (1.5 MiB at the default rate). So the line says how
 * many samples and how many bytes it rests on, and what it could miss; when
 * the whole run allocated less than R ln 20, even a program that leaked
 * everything would more likely than 1 in 20 have gone unseen, and there is
 * no verdict to give: the line says so, and points a CI gate at exact mode. */
static void put_no_leaks(struct hp_text *t, const struct hp_snapshot *s, bool exact,
                         const char *verdict)
{
    if (exact) {
        hp_text_put(t, "heapprof: no leaks: %s (exact, rate 1)\n", verdict);
        return;
    }
    uint64_t samples = 0;
    for (size_t i = 0; i < s->nbuckets; i++)
        samples += s->buckets[i].allocs > 0 ? (uint64_t)s->buckets[i].allocs : 0;
    double allocated = (double)hp_allocated_bytes(), rate = (double)s->rate;
    double seen95 = rate * hp_math_log(20.0);
    char all[32], floor95[32];
    size_text(all, sizeof all, allocated);
    size_text(floor95, sizeof floor95, seen95);
    if (allocated < seen95) {
        hp_text_put(t,
                    "heapprof: no leak seen in %llu samples of %s allocated (rate %ld): too few "
                    "to tell; had all of it leaked, it would have gone unseen %.0f%% of the "
                    "time (a leak is seen 95%% of the time from ~%s); for a CI gate use exact "
                    "mode, HEAPPROF_RATE=1\n",
                    (unsigned long long)samples, all, s->rate,
                    100 * (1 + hp_math_expm1(-allocated / rate)), floor95);
        return;
    }
    hp_text_put(t,
                "heapprof: no leaks: %s (estimated, rate %ld): %llu samples of %s allocated; "
                "a leak under ~%s in all is missed more than 5%% of the time (exact mode, "
                "HEAPPROF_RATE=1, misses none)\n",
                verdict, s->rate, (unsigned long long)samples, all, floor95);
}

int hp_leaks_render(struct hp_snapshot *s, struct hp_symbolizer *sym, struct hp_text *out)
{
    struct hp_arena *a = out->a;
    /* Aggregate the buckets of each stack (per verdict, when the leak check
     * gave them): hp_snapshot_estimate left them sorted by stack, so each
     * stack's buckets are one run. */
    struct leak *leaks = hp_arena_alloc(a, (s->nbuckets + 1) * sizeof *leaks);
    if (!leaks)
        return 0;
    struct supp sp;
    load_suppressions(a, &sp);
    size_t n = 0, nsupp = 0;
    /* Per verdict (HP_V_NONE: no verdicts): bytes, objects, stacks. */
    uint64_t vbytes[HP_NVERDICTS] = {0}, vobjects[HP_NVERDICTS] = {0};
    size_t vstacks[HP_NVERDICTS] = {0};
    for (size_t i = 0; i < s->nbuckets;) {
        struct leak l[HP_NVERDICTS];
        memset(l, 0, sizeof l);
        uint32_t stack = s->buckets[i].stack;
        for (; i < s->nbuckets && s->buckets[i].stack == stack; i++) {
            /* Every bucket of the stack counts: their rounded values sum to
             * the stack's estimate. */
            const struct hp_snap_bucket *b = &s->buckets[i];
            /* With verdicts, a bucket's own entry holds its reachable objects. */
            uint32_t v = !s->verdicts                ? HP_V_NONE
                         : b->verdict == HP_V_NONE   ? HP_V_REACHABLE
                         : b->verdict < HP_NVERDICTS ? b->verdict
                                                     : HP_V_REACHABLE;
            struct leak *e = &l[v];
            e->objects += (uint64_t)b->est[HP_INUSE_OBJECTS];
            e->bytes += (uint64_t)b->est[HP_INUSE_SPACE];
            e->var += b->var_inuse;
            e->samples += b->live;
            if (b->live > 0) {
                e->live = true;
                const struct hp_labelset *ls = hp_labelset_at(b->labels);
                if (ls && ls->thread)
                    note_thread(e, ls->thread);
            }
        }
        bool any = false;
        for (int v = 0; v < HP_NVERDICTS; v++)
            any |= l[v].live;
        if (!any)
            continue;
        if (suppressed(&sp, sym, stack)) {
            nsupp++;
            continue;
        }
        for (int v = 0; v < HP_NVERDICTS; v++) {
            if (!l[v].live)
                continue;
            l[v].stack = stack;
            l[v].verdict = v;
            leaks[n++] = l[v];
            vbytes[v] += l[v].bytes;
            vobjects[v] += l[v].objects;
            vstacks[v]++;
        }
    }
    qsort(leaks, n, sizeof *leaks, by_verdict_bytes);

    struct hp_text *t = out;
    bool exact = s->rate <= 1;
    const char *kind = exact ? "exact" : "estimated";
    /* Without the leak check: every stack with memory never freed. With it:
     * lost first (definitely, then indirectly), then what is still
     * reachable, one line, or its stacks with HEAPPROF_LEAK_REACHABLE. In
     * sampled mode "reachable" is "still referenced" (report/reach.c). */
    size_t nlost = vstacks[HP_V_DEFINITE] + vstacks[HP_V_INDIRECT];
    const char *reach_word = exact ? "still reachable" : "still referenced";
    if (!s->verdicts && n == 0)
        put_no_leaks(t, s, exact, "every sampled allocation was freed");
    else if (!s->verdicts)
        hp_text_put(t,
                    "heapprof: %llu bytes in %llu objects never freed, from %zu stacks (%s, rate "
                    "%ld)\n",
                    (unsigned long long)vbytes[0], (unsigned long long)vobjects[0], n, kind,
                    s->rate);
    else if (nlost == 0)
        put_no_leaks(t, s, exact, "no memory lost");
    else
        hp_text_put(
            t,
            "heapprof: %llu bytes in %llu objects lost, from %zu stacks (%s, rate %ld): "
            "definitely %llu bytes in %llu objects, indirectly %llu bytes in %llu objects\n",
            (unsigned long long)(vbytes[HP_V_DEFINITE] + vbytes[HP_V_INDIRECT]),
            (unsigned long long)(vobjects[HP_V_DEFINITE] + vobjects[HP_V_INDIRECT]), nlost, kind,
            s->rate, (unsigned long long)vbytes[HP_V_DEFINITE],
            (unsigned long long)vobjects[HP_V_DEFINITE], (unsigned long long)vbytes[HP_V_INDIRECT],
            (unsigned long long)vobjects[HP_V_INDIRECT]);
    size_t listed = !s->verdicts || hp_cfg.leak_reachable ? n : nlost;
    size_t shown = listed < (size_t)hp_cfg.leak_stacks ? listed : (size_t)hp_cfg.leak_stacks;
    uint64_t rest_bytes = 0, rest_objects = 0;
    uint64_t *offsets = same_text_offsets(a, sym, leaks, shown);
    for (size_t i = 0; i < listed; i++) {
        if (i < shown) {
            put_stack(t, sym, &leaks[i], i + 1, exact,
                      leaks[i].verdict == HP_V_REACHABLE ? reach_word
                                                         : verdict_words[leaks[i].verdict],
                      offsets ? offsets[i] : 0);
        } else {
            rest_bytes += leaks[i].bytes;
            rest_objects += leaks[i].objects;
        }
    }
    if (shown < listed)
        hp_text_put(t,
                    "heapprof: ... and %zu more stacks: %llu bytes in %llu objects "
                    "(HEAPPROF_LEAK_STACKS=%zu shows them all)\n",
                    listed - shown, (unsigned long long)rest_bytes,
                    (unsigned long long)rest_objects, listed);
    if (s->verdicts && vstacks[HP_V_REACHABLE])
        hp_text_put(t, "heapprof: %s: %llu bytes in %llu objects, from %zu stacks%s\n", reach_word,
                    (unsigned long long)vbytes[HP_V_REACHABLE],
                    (unsigned long long)vobjects[HP_V_REACHABLE], vstacks[HP_V_REACHABLE],
                    hp_cfg.leak_reachable ? "" : " (HEAPPROF_LEAK_REACHABLE=1 lists them)");
    /* The CI gate: lost memory, or anything never freed without the check
     * or with HEAPPROF_LEAKS_EXIT_ANY. */
    int gate = !s->verdicts || hp_cfg.leaks_exit_any ? (int)n : (int)nlost;
    if (nsupp)
        hp_text_put(t, "heapprof: %zu runtime or suppressed stacks not shown\n", nsupp);
    return gate;
}

int hp_leaks_report(struct hp_snapshot *s, struct hp_symbolizer *sym)
{
    struct hp_text t = {.a = &s->arena};
    int gate = hp_leaks_render(s, sym, &t);
    if (hp_cfg.leaks_path[0]) {
        char path[4096];
        int r = hp_process_leaks_path(path, sizeof path);
        if (r == 0)
            r = hp_write_file_atomic(path, t.p ? t.p : "", t.len);
        if (r)
            hp_log("heapprof: cannot write the leak summary %s: %s",
                   r == -ENAMETOOLONG ? hp_cfg.leaks_path : path, strerror(-r));
    } else if (t.len) {
        hp_write_all(hp_stderr_fd(), t.p, t.len);
    }
    return gate;
}
