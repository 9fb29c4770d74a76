/* The reporting half's own interfaces (src/report/): symbols, the profile
 * writer, the leak summary, the HTTP endpoint and the background thread.
 * It sees the recording half only through iface.h.
 */
#ifndef HP_REPORT_H
#define HP_REPORT_H

#include "iface.h"

int hp_dump_to(const char *path, enum hp_dump_kind kind, int *nleaks);

/* ---- the background thread (report/agent.c), HTTP (report/http.c) ---- */
void hp_agent_start(void);
void hp_agent_child(void);
struct hp_http;
struct pollfd;
struct hp_http *hp_http_open(const char *spec);
int hp_http_pollfds(struct hp_http *h, struct pollfd *fds, int max, int64_t *deadline);
void hp_http_service(struct hp_http *h, const struct pollfd *fds, int n);
void hp_http_child(struct hp_http *h);

/* ---- symbols (report/symbols.c) ---- */
struct hp_frame_line {
    const char *function;    /* demangled; NULL when unknown */
    const char *system_name; /* as in the symbol table */
    const char *file;        /* NULL when unknown */
    int line;
};
struct hp_symbolized {
    int nlines; /* innermost first; 0 when nothing is known */
    struct hp_frame_line *lines;
    int mapping; /* index into the mapping list, -1 when none */
    /* 0, or which unloaded library's saved symbols answered: the same
     * address can mean different code before and after a dlclose. */
    uint32_t variant;
};
struct hp_mapping {
    uint64_t start, limit, offset;
    const char *file;
    const char *build_id; /* lowercase hex, or "" */
    bool has_functions, has_filenames, has_lines;
};
struct hp_symbolizer;
struct hp_symbolizer *hp_sym_open(struct hp_arena *a);
/* Symbolizes the return address pc of a frame recorded at epoch (its
 * struct hp_frame's); the epoch lets addresses in libraries unloaded since
 * then get the names they had. */
void hp_sym_lookup(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch,
                   struct hp_symbolized *out);
int hp_sym_mappings(struct hp_symbolizer *s, struct hp_mapping **out);
/* The offset of pc - 1 (the call instruction) from the start of the
 * function symbol that holds it: false when no symbol does. */
bool hp_sym_offset(struct hp_symbolizer *s, uintptr_t pc, uint32_t epoch, uint64_t *off);
void hp_sym_close(struct hp_symbolizer *s);

/* ---- the profile writer (report/profile.c) ---- */
/* Writes a gzipped pprof profile of the snapshot to path atomically.
 * Returns 0 or a negative errno. Symbolizes each address once; sym may be
 * shared with the leak report. */
int hp_profile_write(struct hp_snapshot *s, struct hp_symbolizer *sym, const char *path,
                     int64_t start_ns);
/* Encodes the profile into a gzip buffer held by the snapshot's arena.
 * default_type: NULL for the heap profile, "alloc_space" for allocs. */
int hp_profile_encode(struct hp_snapshot *s, struct hp_symbolizer *sym, int64_t start_ns,
                      const char *default_type, uint8_t **out, size_t *outlen);

/* ---- text in a dump's arena (report/report.c) ---- */
struct hp_text {
    struct hp_arena *a;
    char *p; /* NUL-terminated when not NULL */
    size_t len, cap;
    bool oom; /* some text could not be added */
};
void hp_text_put(struct hp_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the leak check (report/reach.c) ---- */
struct hp_reach_stats {
    uint64_t objects;            /* live objects checked */
    uint64_t definite, indirect; /* of them, lost */
    uint64_t root_bytes;         /* roots read */
    uint64_t heap_bytes;         /* objects read (exact mode) */
    uint64_t faults;             /* pages skipped as unreadable */
    uint64_t child_bytes;        /* the child's own memory at its peak */
    int64_t ns;                  /* how long it took, the fork included */
};
/* Gives every lost live object its verdict (hp_live_set_verdict); 0, or
 * -errno when the check could not be made or finish (no verdicts then). */
int hp_reach_check(struct hp_reach_stats *stats);

/* ---- the heap over time (report/timeline.c) ---- */
void hp_timeline_start(void);
void hp_timeline_child(void);
bool hp_timeline_on(void);
/* Takes a point when one is due; returns when the next one is (hp_mono_ms
 * time), INT64_MAX when the timeline is off. */
int64_t hp_timeline_tick(void);
/* The chart as a self-contained HTML page, or the series as JSON, in a
 * buffer of the arena: 0, or -ENOENT when the timeline is off, -ENOMEM. */
int hp_timeline_render(struct hp_arena *a, bool json, char **out, size_t *len);
/* At exit: a last point, then NAME.timeline.html and NAME.timeline.json
 * beside the profile path; the path of each file written into html and
 * json (size len), "" for one not written. 0 or the last -errno. */
int hp_timeline_write(const char *profile, char *html, char *json, size_t len);
/* A CPU profile (record/cpu.c) as Go writes one: sample types samples/count
 * and cpu/nanoseconds, period type cpu/nanoseconds, period 1e9/hz. comment:
 * NULL or one line for the profile's comments. */
int hp_cpu_encode(struct hp_cpu_profile *p, struct hp_symbolizer *sym, const char *comment,
                  uint8_t **out, size_t *outlen);
/* The line hp_cpu_encode is given for p (drops, [other], SIGPROF taken by
 * the program, the fallback timer), into buf; NULL when there is nothing
 * to say. */
const char *hp_cpu_comment(const struct hp_cpu_profile *p, char *buf, size_t len);

/* ---- leak summary (report/leaks.c) ---- */
/* Returns the number of stacks that fail the CI gate (after suppressions):
 * with verdicts, those with lost memory (or, with HEAPPROF_LEAKS_EXIT_ANY,
 * any never freed); without, every stack never freed. */
int hp_leaks_report(struct hp_snapshot *s, struct hp_symbolizer *sym);

#endif
