/* The heap over time, shown: each series of the timeline (report/timeline.c)
 * named by the first frame of its stack outside the runtimes, told apart
 * from the others that would read alike; the whole as a self-contained HTML
 * page (a stacked area chart in inline SVG, and its legend) or as JSON; on
 * the endpoint (/debug/pprof/timeline, report/handlers.c) and, at exit,
 * NAME.timeline.html and NAME.timeline.json beside the profile.
 */
#define _GNU_SOURCE
#include "timeline_render.h"
#include "iface.h"
#include "symbols.h"
#include "text.h"
#include "timeline.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { TOP = HP_TIMELINE_TOP, MAX_SERIES = HP_TIMELINE_SERIES, MAX_POINTS = HP_TIMELINE_POINTS };

/* The series (a copy), and what is shown of each. */
struct view {
    struct hp_timeline_series s;
    const char *name[MAX_SERIES];     /* the label: the function, told apart */
    const char *function[MAX_SERIES]; /* the function that called the allocator */
    const char *file[MAX_SERIES];
    int line[MAX_SERIES];
    const char *frames[MAX_SERIES]; /* the stack, caller by caller */
    double max[MAX_SERIES], mean[MAX_SERIES];
};

/* The allocator's side of a stack, skipped to find the function that
 * called it: heapprof (cut at capture already), the C and C++ runtimes'
 * allocating functions (strdup, operator new, fopen), the loader; and the
 * C++ library's templates compiled into the program (cxx_library). */
static bool runtime_module(const char *module)
{
    static const char *const prefixes[] = {"libc.so",  "libc-",    "libstdc++", "libheapprof",
                                           "ld-linux", "libgcc_s", "libm.so"};
    if (!module)
        return false;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(module, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/* C++ standard library code instantiated in the program (std::vector's
 * growth, std::string's constructor, the allocator's allocate): its
 * caller is the one to name. Demangled template names may start with their
 * return type ("void std::vector<long>::_M_realloc_insert<long>"), so the
 * namespace is looked for up to the first '<' or '('. */
static bool cxx_library(const char *fn)
{
    if (!fn)
        return false;
    static const char *const spaces[] = {"std::", "__gnu_cxx::"};
    size_t head = strcspn(fn, "<(");
    for (size_t k = 0; k < sizeof spaces / sizeof *spaces; k++) {
        size_t n = strlen(spaces[k]);
        for (size_t i = 0; i + n <= head; i++)
            if ((i == 0 || fn[i - 1] == ' ') && !strncmp(fn + i, spaces[k], n))
                return true;
    }
    return false;
}

/* One frame of a series' stack column, its inlined functions from line
 * `from` on; with the call's offset in its function (func+0x1a) when
 * `offset`, as the leak summary tells identical-looking stacks apart. */
static void put_frame(struct hp_text *t, struct hp_symbolizer *sym, const struct hp_frame *f,
                      int from, bool offset)
{
    struct hp_symbolized fr;
    hp_sym_lookup(sym, f->ip, f->epoch, &fr);
    char off[32] = "";
    uint64_t o;
    if (offset && sym && hp_sym_offset(sym, f->ip, f->epoch, &o))
        snprintf(off, sizeof off, "+%#llx", (unsigned long long)o);
    for (int l = from; l < fr.nlines; l++)
        hp_text_put(t, "%s%s%s", t->len ? " < " : "", fr.lines[l].function,
                    l == fr.nlines - 1 ? off : "");
    if (!fr.nlines)
        hp_text_put(t, "%s%#lx", t->len ? " < " : "", (unsigned long)f->ip - 1);
}

/* A series' stack as the legend shows it: `shown` frames from its named
 * one (`leaf`, from its line `leaf_line`) outwards. */
struct shown_stack {
    struct hp_frame fs[HP_MAX_FRAMES];
    int depth, leaf, leaf_line, shown;
};

static const char *stack_text(struct hp_arena *a, struct hp_symbolizer *sym,
                              const struct shown_stack *st, uint64_t mask, int beyond)
{
    struct hp_text t = {.a = a};
    for (int d = st->leaf; d >= 0 && d < st->depth && d - st->leaf < st->shown; d++)
        put_frame(&t, sym, &st->fs[d], d == st->leaf ? st->leaf_line : 0,
                  d < 64 && ((mask >> d) & 1));
    if (beyond >= 0 && beyond < st->depth) {
        hp_text_put(&t, " < ...");
        put_frame(&t, sym, &st->fs[beyond], 0, true);
    }
    return t.p ? t.p : "";
}

/* Two stacks can read alike in the legend: calls from one line, or frames
 * that differ only past the ones shown. As in the leak summary, each group
 * that reads alike gets the call's offset on every shown frame whose
 * address is not the same in all of the group, and the first differing
 * frame past the shown ones after " < ..."; a stack still alike (the same
 * addresses, in a library loaded again elsewhere) gets " #n", its rank in
 * the group. */
static void frames_apart(struct view *v, struct hp_arena *a, struct hp_symbolizer *sym,
                         const struct shown_stack *st)
{
    bool done[MAX_SERIES] = {false};
    for (int s = 0; s < v->s.nseries; s++) {
        if (done[s])
            continue;
        int group[MAX_SERIES], n = 0;
        for (int o = s; o < v->s.nseries; o++)
            if (!done[o] && !strcmp(v->frames[o], v->frames[s]))
                group[n++] = o;
        for (int k = 0; k < n; k++)
            done[group[k]] = true;
        if (n < 2)
            continue;
        uint64_t mask = 0;
        int first_diff = INT32_MAX;
        for (int k = 1; k < n; k++) {
            const struct shown_stack *x = &st[group[0]], *y = &st[group[k]];
            int most = x->depth > y->depth ? x->depth : y->depth;
            for (int d = 0; d < most; d++)
                if (d >= x->depth || d >= y->depth || x->fs[d].ip != y->fs[d].ip) {
                    if (d < 64)
                        mask |= (uint64_t)1 << d;
                    if (d < first_diff)
                        first_diff = d;
                }
        }
        for (int k = 0; k < n; k++) {
            const struct shown_stack *x = &st[group[k]];
            int beyond =
                first_diff != INT32_MAX && first_diff - x->leaf >= x->shown ? first_diff : -1;
            v->frames[group[k]] = stack_text(a, sym, x, mask, beyond);
        }
        for (int k = 1; k < n; k++) {
            bool alike = false;
            for (int j = 0; j < n && !alike; j++)
                alike = j != k && !strcmp(v->frames[group[j]], v->frames[group[k]]);
            if (!alike)
                continue;
            struct hp_text t = {.a = a};
            hp_text_put(&t, "%s #%d", v->frames[group[k]], k + 1);
            if (t.p)
                v->frames[group[k]] = t.p;
        }
    }
}

/* Names each series: its stack's first frame outside the runtimes, with
 * file:line, or the offset in the function, where two would read alike. */
static void view_name(struct view *v, struct hp_arena *a)
{
    struct hp_symbolizer *sym = hp_sym_open(a);
    struct hp_mapping *maps = NULL;
    int nmaps = sym ? hp_sym_mappings(sym, &maps) : 0;
    uintptr_t pcs[MAX_SERIES];
    uint32_t epochs[MAX_SERIES];
    struct shown_stack *st = hp_arena_alloc(a, MAX_SERIES * sizeof *st);
    if (!st) {
        hp_sym_close(sym);
        return;
    }
    for (int s = 0; s < v->s.nseries; s++) {
        struct hp_frame *fs = st[s].fs;
        int depth = hp_stack_frames(v->s.stacks[s], fs, HP_MAX_FRAMES);
        /* The first (frame, line) outside the runtimes, innermost first;
         * the leaf itself when every frame is theirs. */
        int leaf = -1, leaf_line = 0;
        struct hp_symbolized fr, first = {0};
        for (int d = 0; d < depth && leaf < 0; d++) {
            hp_sym_lookup(sym, fs[d].ip, fs[d].epoch, &fr);
            const char *module =
                fr.mapping >= 0 && fr.mapping < nmaps ? hp_basename(maps[fr.mapping].file) : NULL;
            int from = 0;
            if (leaf < 0 && !runtime_module(module)) {
                while (from < fr.nlines && cxx_library(fr.lines[from].function))
                    from++;
                if (from < fr.nlines || !fr.nlines) {
                    leaf = d;
                    leaf_line = from;
                    first = fr;
                }
            }
        }
        st[s].shown = 8;
        if (leaf < 0 && depth > 0) {
            leaf = 0;
            st[s].shown = 1;
            hp_sym_lookup(sym, fs[0].ip, fs[0].epoch, &first);
        }
        st[s].depth = depth;
        st[s].leaf = leaf;
        st[s].leaf_line = leaf_line;
        pcs[s] = leaf >= 0 ? fs[leaf].ip : 0;
        epochs[s] = leaf >= 0 ? fs[leaf].epoch : 0;
        /* No name: the address, and the file it is in. */
        char addr[300];
        snprintf(addr, sizeof addr, "%#lx in %s", (unsigned long)(pcs[s] ? pcs[s] - 1 : 0),
                 first.mapping >= 0 && first.mapping < nmaps ? hp_basename(maps[first.mapping].file)
                                                             : "?");
        const struct hp_frame_line *ln = first.nlines ? &first.lines[leaf_line] : NULL;
        v->function[s] = ln ? ln->function : hp_arena_strdup(a, addr);
        v->file[s] = ln ? ln->file : NULL;
        v->line[s] = ln ? ln->line : 0;
        v->frames[s] = stack_text(a, sym, &st[s], 0, -1);
        v->name[s] = v->function[s];
    }
    frames_apart(v, a, sym, st);
    /* Series that read alike are told apart, each by the first of these
     * that no other series shares: the function; with its file:line (or,
     * without lines, the call's offset in the function, as the leak
     * summary does); with both; with its caller too; with the stack's
     * number. */
    enum { LEVELS = 4 };
    const char **labels[LEVELS];
    for (int k = 0; k < LEVELS; k++)
        labels[k] = hp_arena_alloc(a, MAX_SERIES * sizeof *labels[k]);
    if (!labels[0] || !labels[1] || !labels[2] || !labels[3]) {
        hp_sym_close(sym);
        return; /* the plain function names stay */
    }
    for (int s = 0; s < v->s.nseries; s++) {
        char label[1024], offset[32] = "", where[600] = "";
        uint64_t off;
        if (sym && pcs[s] && hp_sym_offset(sym, pcs[s], epochs[s], &off))
            snprintf(offset, sizeof offset, "+%#llx", (unsigned long long)off);
        if (v->file[s] && v->line[s] > 0)
            snprintf(where, sizeof where, " (%s:%d)", hp_basename(v->file[s]), v->line[s]);
        labels[0][s] = v->function[s];
        snprintf(label, sizeof label, "%s%s", v->function[s], where[0] ? where : offset);
        labels[1][s] = hp_arena_strdup(a, label);
        snprintf(label, sizeof label, "%s%s%s", v->function[s], offset, where);
        labels[2][s] = hp_arena_strdup(a, label);
        const char *caller = strstr(v->frames[s], " < ");
        const char *next = caller ? strstr(caller + 3, " < ") : NULL;
        size_t clen = !caller ? 0 : next ? (size_t)(next - caller - 3) : strlen(caller + 3);
        int n = (int)strlen(label);
        if (caller && (size_t)n < sizeof label)
            snprintf(label + n, sizeof label - (size_t)n, " from %.*s", (int)clen, caller + 3);
        labels[3][s] = hp_arena_strdup(a, label);
    }
    for (int s = 0; s < v->s.nseries; s++) {
        int k;
        for (k = 0; k < LEVELS; k++) {
            bool shared = !labels[k][s];
            for (int o = 0; o < v->s.nseries && !shared; o++)
                shared = o != s && labels[k][o] && !strcmp(labels[k][o], labels[k][s]);
            if (!shared)
                break;
        }
        if (k < LEVELS) {
            v->name[s] = labels[k][s];
            continue;
        }
        char label[1100];
        snprintf(label, sizeof label, "%s [stack %u]", labels[3][s] ? labels[3][s] : v->function[s],
                 v->s.stacks[s]);
        v->name[s] = hp_arena_strdup(a, label);
        if (!v->name[s])
            v->name[s] = v->function[s];
    }
    hp_sym_close(sym);
    for (int s = 0; s < v->s.nseries; s++) {
        double sum = 0;
        for (int i = 0; i < v->s.npoints; i++) {
            sum += v->s.points[i].v[s];
            if (v->s.points[i].v[s] > v->max[s])
                v->max[s] = v->s.points[i].v[s];
        }
        v->mean[s] = v->s.npoints ? sum / v->s.npoints : 0;
    }
}

static void render_json(struct hp_text *b, const struct view *v)
{
    hp_text_put(b, "{\"heapprof\":\"%s\",\"pid\":%ld,\"start_unix_ns\":%lld,", HEAPPROF_VERSION,
                (long)getpid(), (long long)hp_start_ns());
    hp_text_put(b,
                "\"tick_ms\":%ld,\"ticks_per_point\":%d,\"merges\":%d,\"max_points\":%d,"
                "\"ticks\":%llu,\"tick_cpu_ns_mean\":%.0f,\"tick_cpu_ns_max\":%.0f,"
                "\"rate\":%ld,\"points\":%d,\n",
                hp_cfg.timeline_ms, v->s.per_point, v->s.merges, MAX_POINTS,
                (unsigned long long)v->s.ticks, v->s.cpu_ns_mean, v->s.cpu_ns_max, hp_cfg.rate,
                v->s.npoints);
    hp_text_put(b, "\"times_s\":[");
    for (int i = 0; i < v->s.npoints; i++)
        hp_text_put(b, "%s%.3f", i ? "," : "", v->s.points[i].t_ms / 1000);
    hp_text_put(b, "],\n\"total\":[");
    for (int i = 0; i < v->s.npoints; i++)
        hp_text_put(b, "%s%.0f", i ? "," : "", v->s.points[i].total);
    hp_text_put(b, "],\n\"other\":[");
    for (int i = 0; i < v->s.npoints; i++)
        hp_text_put(b, "%s%.0f", i ? "," : "", v->s.points[i].other);
    hp_text_put(b, "],\n\"series\":[");
    for (int s = 0; s < v->s.nseries; s++) {
        hp_text_put(b, "%s\n{\"stack\":%u,\"name\":", s ? "," : "", v->s.stacks[s]);
        hp_text_json(b, v->name[s]);
        hp_text_put(b, ",\"function\":");
        hp_text_json(b, v->function[s]);
        if (v->file[s]) {
            hp_text_put(b, ",\"file\":");
            hp_text_json(b, v->file[s]);
            hp_text_put(b, ",\"line\":%d", v->line[s]);
        }
        hp_text_put(b, ",\"frames\":");
        hp_text_json(b, v->frames[s]);
        hp_text_put(b, ",\"values\":[");
        for (int i = 0; i < v->s.npoints; i++)
            hp_text_put(b, "%s%.0f", i ? "," : "", v->s.points[i].v[s]);
        hp_text_put(b, "]}");
    }
    /* Live leak checks (HEAPPROF_LEAK_INTERVAL, /debug/pprof/leaks): the
     * lost bytes each found, at its own times. */
    hp_text_put(b, "],\n\"lost\":{\"times_s\":[");
    for (int i = 0; i < v->s.nlost; i++)
        hp_text_put(b, "%s%.3f", i ? "," : "", v->s.lost[i].t_ms / 1000);
    hp_text_put(b, "],\"definite\":[");
    for (int i = 0; i < v->s.nlost; i++)
        hp_text_put(b, "%s%.0f", i ? "," : "", v->s.lost[i].definite);
    hp_text_put(b, "],\"indirect\":[");
    for (int i = 0; i < v->s.nlost; i++)
        hp_text_put(b, "%s%.0f", i ? "," : "", v->s.lost[i].indirect);
    hp_text_put(b, "]}}\n");
}

/* 1, 2 or 5 times a power of ten (of 1024 for bytes), near range/5. */
static double nice_step(double range, bool bytes)
{
    if (range <= 0)
        return 1;
    double raw = range / 5, base = 1;
    if (bytes)
        while (base * 1024 <= raw)
            base *= 1024;
    while (base * 10 <= raw)
        base *= 10;
    while (base > raw && base > 1)
        base /= 10;
    return raw <= base ? base : raw <= 2 * base ? 2 * base : raw <= 5 * base ? 5 * base : 10 * base;
}

static void bytes_text(char *out, size_t len, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while ((v < 0 ? -v : v) >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    bool whole = !(v < 1e15 && v > -1e15) || v == (double)(long long)v;
    snprintf(out, len, whole ? "%.0f %s" : "%.1f %s", v, units[u]);
}

/* Colours for the series, by their rank; "other" is grey. */
static const char *const palette[] = {
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#1f77b4", "#17becf", "#bcbd22", "#8c564b", "#d62728", "#2ca02c", "#9467bd",
};

static void render_html(struct hp_text *b, const struct view *v)
{
    enum { W = 960, H = 420, L = 80, R = 20, T = 20, B = 40 };
    const double pw = W - L - R, ph = H - T - B;
    /* Layers from the bottom: the series holding most on average first,
     * other on top. */
    int order[MAX_SERIES];
    for (int s = 0; s < v->s.nseries; s++) {
        int j = s;
        while (j > 0 && v->mean[order[j - 1]] < v->mean[s]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = s;
    }
    double tmax = 0, ymax = 0;
    for (int i = 0; i < v->s.npoints; i++) {
        if (v->s.points[i].t_ms / 1000 > tmax)
            tmax = v->s.points[i].t_ms / 1000;
        if (v->s.points[i].total > ymax)
            ymax = v->s.points[i].total;
    }
    if (tmax <= 0)
        tmax = 1;
    double ystep = nice_step(ymax > 0 ? ymax : 1024, true);
    /* Up to the next whole step (ceil: libm is not linked, iface.h). */
    double steps = (ymax > 0 ? ymax : 1024) / ystep, whole = (double)(long long)steps;
    ymax = ystep * (whole < steps ? whole + 1 : whole);
    double xstep = nice_step(tmax, false);

    char cmd[512];
    size_t cl = 0;
    const char *raw = hp_start_cmdline(&cl);
    if (cl >= sizeof cmd)
        cl = sizeof cmd - 1;
    if (raw)
        memcpy(cmd, raw, cl);
    for (size_t i = 0; i < cl; i++)
        if (!cmd[i])
            cmd[i] = ' ';
    cmd[cl] = 0;

    hp_text_put(b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                   "<title>heapprof: heap over time</title>\n"
                   "<style>body{font-family:sans-serif;margin:1rem}"
                   "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}"
                   "td.n,th.n{text-align:left}.sw{display:inline-block;width:12px;height:12px}"
                   "svg text{font-size:12px;fill:#333}</style>\n</head>\n<body>\n"
                   "<h2>Heap over time</h2>\n<p>");
    hp_text_html(b, cmd);
    hp_text_put(
        b,
        " (process %ld): estimated in-use bytes of the stacks that held the most (each that "
        "was ever in the top %d, at most %d), the rest as other; sampling rate %ld bytes. "
        "%d points, each the mean of %d tick%s of %ld ms (merged %d time%s).</p>\n",
        (long)getpid(), TOP, MAX_SERIES, hp_cfg.rate, v->s.npoints, v->s.per_point,
        v->s.per_point == 1 ? "" : "s", hp_cfg.timeline_ms, v->s.merges,
        v->s.merges == 1 ? "" : "s");
    /* An empty chart says why: a program that allocates less than the
     * sampling rate (512 KiB by default) between ticks has nothing sampled. */
    bool nothing = v->s.nseries == 0;
    for (int i = 0; i < v->s.npoints && nothing; i++)
        nothing = v->s.points[i].total <= 0;
    if (nothing && hp_cfg.rate > 1)
        hp_text_put(b,
                    "<p id=\"nothing\"><b>Nothing was sampled%s.</b> heapprof samples about one "
                    "allocation per HEAPPROF_RATE bytes allocated (%ld here), and no sampled "
                    "object was in use at any tick: the program allocates less than that, or "
                    "frees it at once. Lower the rate to see it, e.g. "
                    "<code>HEAPPROF_RATE=4096</code>, or <code>HEAPPROF_RATE=1</code> to record "
                    "every allocation (exact, slower).</p>\n",
                    v->s.npoints ? "" : " yet", hp_cfg.rate);
    else if (nothing)
        hp_text_put(b,
                    "<p id=\"nothing\"><b>Nothing in use%s.</b> Every allocation is "
                    "recorded (HEAPPROF_RATE=1) and none was in use at any tick.</p>\n",
                    v->s.npoints ? "" : " yet");
    hp_text_put(
        b,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
        "viewBox=\"0 0 %d %d\">\n",
        W, H, W, H);
    /* Grid and axes. */
    for (double y = 0; y <= ymax * 1.0001; y += ystep) {
        double py = T + ph - y / ymax * ph;
        char label[32];
        bytes_text(label, sizeof label, y);
        hp_text_put(b,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                    L, py, W - R, py, L - 6, py + 4, label);
    }
    for (double x = 0; x <= tmax * 1.0001; x += xstep) {
        double px = L + x / tmax * pw;
        hp_text_put(b,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g s</text>\n",
                    px, T, px, H - B, px, H - B + 16, x);
    }
    /* The areas, each from the top of the layer below to its own top. */
    double *below = hp_arena_alloc(b->a, (size_t)(v->s.npoints ? v->s.npoints : 1) * sizeof *below);
    if (!below) {
        b->oom = true;
        return;
    }
    for (int k = 0; k <= v->s.nseries && v->s.npoints; k++) {
        bool other = k == v->s.nseries;
        int s = other ? -1 : order[k];
        const char *colour = other ? "#bbbbbb" : palette[k % (sizeof palette / sizeof *palette)];
        hp_text_put(b, "<path class=\"area\" fill=\"%s\" stroke=\"%s\" stroke-width=\"0.5\" d=\"",
                    colour, colour);
        /* A single point shows as a narrow bar. */
        double half = v->s.npoints == 1 ? 2 : 0;
        for (int i = 0; i < v->s.npoints; i++) {
            double val = other ? v->s.points[i].other : v->s.points[i].v[s];
            double px = L + v->s.points[i].t_ms / 1000 / tmax * pw;
            double py = T + ph - (below[i] + val) / ymax * ph;
            hp_text_put(b, "%s%.1f,%.1f", i ? " L" : "M", px - half, py);
            if (half)
                hp_text_put(b, " L%.1f,%.1f", px + half, py);
        }
        for (int i = v->s.npoints - 1; i >= 0; i--) {
            double px = L + v->s.points[i].t_ms / 1000 / tmax * pw;
            double py = T + ph - below[i] / ymax * ph;
            if (half)
                hp_text_put(b, " L%.1f,%.1f", px + half, py);
            hp_text_put(b, " L%.1f,%.1f", px - half, py);
            below[i] += other ? v->s.points[i].other : v->s.points[i].v[s];
        }
        hp_text_put(b, " Z\"><title>");
        hp_text_html(b, other ? "other" : v->name[s]);
        hp_text_put(b, "</title></path>\n");
    }
    /* Live leak checks' lost bytes (definite and indirect), a red line
     * with a dot per check, on the same axes: a leak in progress rises. */
    if (v->s.nlost) {
        hp_text_put(b, "<path id=\"lost\" fill=\"none\" stroke=\"#c00\" stroke-width=\"2\" d=\"");
        for (int i = 0; i < v->s.nlost; i++) {
            const struct hp_timeline_lost *p = &v->s.lost[i];
            double t = p->t_ms / 1000 > tmax ? tmax : p->t_ms / 1000 < 0 ? 0 : p->t_ms / 1000;
            double y = p->definite + p->indirect > ymax ? ymax : p->definite + p->indirect;
            hp_text_put(b, "%s%.1f,%.1f", i ? " L" : "M", L + t / tmax * pw,
                        T + ph - y / ymax * ph);
        }
        hp_text_put(b, "\"><title>lost (leak checks)</title></path>\n");
        for (int i = 0; i < v->s.nlost; i++) {
            const struct hp_timeline_lost *p = &v->s.lost[i];
            double t = p->t_ms / 1000 > tmax ? tmax : p->t_ms / 1000 < 0 ? 0 : p->t_ms / 1000;
            double y = p->definite + p->indirect > ymax ? ymax : p->definite + p->indirect;
            char lost[32];
            bytes_text(lost, sizeof lost, p->definite + p->indirect);
            hp_text_put(b,
                        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#c00\"><title>%.1f s: "
                        "%s lost</title></circle>\n",
                        L + t / tmax * pw, T + ph - y / ymax * ph, p->t_ms / 1000, lost);
        }
    }
    hp_text_put(b,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>"
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n",
                L, T, L, H - B, L, H - B, W - R, H - B);
    if (!v->s.npoints || nothing)
        hp_text_put(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                    L + (int)pw / 2, T + (int)ph / 2,
                    !v->s.npoints ? "no points yet" : "nothing sampled: see above");
    hp_text_put(b, "</svg>\n");
    /* The legend, top of the chart first. */
    hp_text_put(b,
                "<table id=\"legend\">\n<tr><th></th><th class=\"n\">function (first frame outside "
                "the allocator)</th><th>now</th><th>highest point</th><th class=\"n\">stack</th>"
                "</tr>\n");
    const struct hp_timeline_point *last = v->s.npoints ? &v->s.points[v->s.npoints - 1] : NULL;
    for (int k = v->s.nseries; k >= 0; k--) {
        bool other = k == v->s.nseries;
        int s = other ? -1 : order[k];
        const char *colour = other ? "#bbbbbb" : palette[k % (sizeof palette / sizeof *palette)];
        char now[32], top[32];
        double omax = 0;
        for (int i = 0; other && i < v->s.npoints; i++)
            if (v->s.points[i].other > omax)
                omax = v->s.points[i].other;
        bytes_text(now, sizeof now, !last ? 0 : other ? last->other : last->v[s]);
        bytes_text(top, sizeof top, other ? omax : v->max[s]);
        hp_text_put(
            b, "<tr><td><span class=\"sw\" style=\"background:%s\"></span></td><td class=\"n\">",
            colour);
        hp_text_html(b, other ? "other" : v->name[s]);
        hp_text_put(b, "</td><td>%s</td><td>%s</td><td class=\"n\">", now, top);
        hp_text_html(b, other ? "stacks never in the top, and the others before they entered it"
                              : v->frames[s]);
        hp_text_put(b, "</td></tr>\n");
    }
    if (v->s.nlost) {
        const struct hp_timeline_lost *p = &v->s.lost[v->s.nlost - 1];
        char lost[32];
        bytes_text(lost, sizeof lost, p->definite + p->indirect);
        hp_text_put(b,
                    "<tr><td><span class=\"sw\" style=\"background:#c00\"></span></td><td "
                    "class=\"n\">lost (leak checks: definitely and indirectly)</td><td>%s</td>"
                    "<td></td><td class=\"n\">%d checks (HEAPPROF_LEAK_INTERVAL, "
                    "/debug/pprof/leaks); a line, not a layer: lost bytes are part of the "
                    "in-use bytes above</td></tr>\n",
                    lost, v->s.nlost);
    }
    char tot[32];
    bytes_text(tot, sizeof tot, last ? last->total : 0);
    hp_text_put(b,
                "<tr><td></td><td class=\"n\"><b>total</b></td><td><b>%s</b></td><td></td><td></td>"
                "</tr>\n</table>\n",
                tot);
    hp_text_put(b,
                "<p>heapprof %s. The same series as JSON: <code>/debug/pprof/timeline?format=json"
                "</code> on the endpoint, <code>NAME.timeline.json</code> at exit.</p>\n"
                "</body>\n</html>\n",
                HEAPPROF_VERSION);
}

int hp_timeline_render(struct hp_arena *a, bool json, char **out, size_t *len)
{
    struct view *v = hp_arena_alloc(a, sizeof *v);
    if (!v)
        return -ENOMEM;
    memset(v, 0, sizeof *v);
    int r = hp_timeline_copy(&v->s, a);
    if (r)
        return r;
    view_name(v, a);
    struct hp_text b = {.a = a};
    if (json)
        render_json(&b, v);
    else
        render_html(&b, v);
    if (b.oom || !b.p)
        return -ENOMEM;
    *out = b.p;
    *len = b.len;
    return 0;
}

/* NAME.timeline.EXT beside the profile: its name up to ".pb" (out.pb.gz
 * gives out.timeline.html), or all of it. */
static int path_for(char *out, size_t len, const char *profile, const char *ext)
{
    const char *cut = strstr(hp_basename(profile), ".pb");
    if (!cut)
        cut = profile + strlen(profile);
    int n = snprintf(out, len, "%.*s.timeline.%s", (int)(cut - profile), profile, ext);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int hp_timeline_write(const char *profile, char *html, char *json, size_t len)
{
    if (!hp_timeline_on())
        return -ENOENT;
    bool was_busy = hp_busy_begin();
    hp_timeline_last_point(); /* so that the series reaches the end */
    int result = 0;
    for (int k = 0; k < 2; k++) {
        char *path = k ? json : html;
        struct hp_arena a = {0};
        char *text = NULL;
        size_t tlen = 0;
        int r = path_for(path, len, profile, k ? "json" : "html");
        if (r == 0)
            r = hp_timeline_render(&a, k == 1, &text, &tlen);
        if (r == 0)
            r = hp_write_file_atomic(path, text, tlen);
        if (r) {
            hp_log("heapprof: cannot write the timeline %s: %s",
                   r == -ENAMETOOLONG ? profile : path, strerror(-r));
            path[0] = 0; /* not written: not announced */
            if (k == 0)
                json[0] = 0;
            result = r;
        }
        hp_arena_release(&a);
        if (r)
            break; /* one line for the two files */
    }
    hp_busy_end(was_busy);
    return result;
}
