/* The protobuf wire format without a schema (varints, keys,
 * length-delimited fields), as Go's runtime/pprof keeps it in protobuf.go
 * apart from the builder that names the fields (here report/pprof.c); and
 * the gzip framing pprof expects of a profile file, compressed as it is
 * written (on a thread of its own for a large one, and for a large pprof
 * profile by libdeflate where it is installed), into the dump's arena.
 */
#include "wire.h"
#include "hp.h"
#include "iface.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <zlib.h>
#ifdef HP_HAVE_LIBDEFLATE
#include <dlfcn.h>
#include <libdeflate.h>
#endif

/* The stream compresses on a thread of its own once a profile is big
 * enough to pay for one (THREAD_AFTER stage buffers), while the writer
 * packs the next buffer: in exact mode a profile is tens of megabytes
 * before compression (deep_tree 2: 27.5 MB, half a million samples), and
 * zlib's fastest level took as long as packing them. With two CPUs the two
 * halves overlap; with one, nothing is lost but a thread's start. Not from
 * a signal handler (an exit dump the program's SIGTERM ran), where starting
 * a thread is not safe: there, and if the thread cannot start, the writer
 * compresses each buffer itself, as before.
 *
 * The compressed bytes go to chunks of heapprof's own memory (hp_alloc,
 * which any thread may call), not to the arena, which the writer allocates
 * from meanwhile; hp_wire_close joins them into the arena. */
enum { STAGE = 64 << 10, THREAD_AFTER = 4, OUT_CHUNK = 1 << 20 };

struct out_chunk {
    struct out_chunk *next;
    size_t len;
    uint8_t data[OUT_CHUNK - 2 * sizeof(size_t)];
};

/* A large profile is compressed by libdeflate where it is installed:
 * each buffer of 64 KiB becomes a gzip member of its own, and a profile
 * the members one after another, as gzip(1) and Go's gzip reader (which
 * pprof uses) read them. On the exact-mode profile of deep_tree (27.5 MB
 * before compression; bench/compress.py) zlib's fastest level took 193 ms
 * and wrote 5.65 MB; libdeflate's, in members of 64 KiB, 90 ms and 5.12
 * MB. The compressing thread was the exit dump's slower half.
 *
 * libdeflate is loaded at the first large profile (where a thread may be
 * started, hence not in a signal handler), not linked: a small profile,
 * and a machine without it, use zlib as before. No lock: a fork in the
 * middle of the loading would leave one held in the child. */
#ifdef HP_HAVE_LIBDEFLATE
static struct {
    __typeof__(libdeflate_alloc_compressor) *alloc;
    __typeof__(libdeflate_gzip_compress_bound) *bound;
    __typeof__(libdeflate_gzip_compress) *gzip;
    __typeof__(libdeflate_free_compressor) *free;
} ld;
enum { LD_UNTRIED, LD_LOADING, LD_LOADED, LD_MISSING };
static int ld_state;

/* Whether libdeflate is there; while another thread loads it, not yet. */
static bool ld_load(void)
{
    int st = LD_UNTRIED;
    if (__atomic_compare_exchange_n(&ld_state, &st, LD_LOADING, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_ACQUIRE)) {
        void *h = hp_dl_open("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
        if (h) {
            ld.alloc = (__typeof__(ld.alloc))dlsym(h, "libdeflate_alloc_compressor");
            ld.bound = (__typeof__(ld.bound))dlsym(h, "libdeflate_gzip_compress_bound");
            ld.gzip = (__typeof__(ld.gzip))dlsym(h, "libdeflate_gzip_compress");
            ld.free = (__typeof__(ld.free))dlsym(h, "libdeflate_free_compressor");
        }
        st = h && ld.alloc && ld.bound && ld.gzip && ld.free ? LD_LOADED : LD_MISSING;
        __atomic_store_n(&ld_state, st, __ATOMIC_RELEASE);
    }
    return st == LD_LOADED;
}
#endif

struct hp_wire {
    z_stream z;
    void *ld;      /* libdeflate's compressor, for a stream of members */
    bool ld_tried; /* whether this stream chose between the two */
    bool members;  /* hp_wire_members: it may */
    struct hp_arena *a;
    int err;                        /* the writer's */
    int zerr;                       /* the compressor's: read after a handover */
    bool zstarted;                  /* deflateInit2 done (start_stream) */
    struct out_chunk *first, *last; /* compressed, in order */
    uint8_t *stage;                 /* being filled: stages[cur] */
    size_t staged;
    int cur;
    unsigned filled; /* stage buffers handed over so far */
    /* The compressing thread and its one job. */
    int thread; /* 0: none yet, 1: running, -1: none (compress here) */
    bool stopped;
    pthread_mutex_t m;
    pthread_cond_t cv;
    const uint8_t *job;
    size_t job_len;
    bool job_set, job_finish;
    uint8_t stages[2][STAGE];
};

struct hp_wire *hp_wire_open(struct hp_arena *a)
{
    struct hp_wire *w = hp_arena_alloc(a, sizeof *w);
    if (!w)
        return NULL;
    w->a = a;
    w->stage = w->stages[0];
    return w;
}

void hp_wire_members(struct hp_wire *w)
{
    w->members = true;
}

/* The stream is started at the first buffer's hand-over, when the size is
 * known to be below one buffer or not. windowBits 15 + 16: a gzip wrapper,
 * as pprof expects. Fastest level, as Go's runtime/pprof writes profiles:
 * the dump runs inside the program. A profile that fits in one buffer gets
 * zlib's smallest tables (memLevel 1): the default's 64 KiB hash table is
 * cleared at the start, 16 page faults, which cost a short process more
 * than compressing its profile does. */
static bool start_stream(struct hp_wire *w, bool small)
{
    if (w->zstarted)
        return true;
    if (deflateInit2(&w->z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, small ? 1 : 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return false;
    w->zstarted = true;
    return true;
}

/* A new chunk at the end of the compressed bytes, or false (and zerr). */
static bool add_chunk(struct hp_wire *w)
{
    if (w->last && !w->ld)
        w->last->len = sizeof w->last->data;
    struct out_chunk *c = hp_alloc(sizeof *c);
    if (!c) {
        w->zerr = -ENOMEM;
        return false;
    }
    c->len = 0;
    c->next = NULL;
    if (w->last)
        w->last->next = c;
    else
        w->first = c;
    w->last = c;
    return true;
}

#ifdef HP_HAVE_LIBDEFLATE
/* data as one gzip member, by libdeflate. */
static void deflate_member(struct hp_wire *w, const uint8_t *data, size_t len)
{
    if (!len)
        return;
    size_t bound = ld.bound(w->ld, len);
    if ((!w->last || sizeof w->last->data - w->last->len < bound) && !add_chunk(w))
        return;
    size_t n = ld.gzip(w->ld, data, len, w->last->data + w->last->len,
                       sizeof w->last->data - w->last->len);
    if (!n)
        w->zerr = -EIO;
    w->last->len += n;
}
#endif

/* Deflates data; with finish, ends the stream. Run by one thread at a
 * time: the compressor's, or the writer's when there is none. */
static void deflate_some(struct hp_wire *w, const uint8_t *data, size_t len, bool finish)
{
    if (w->zerr)
        return;
#ifdef HP_HAVE_LIBDEFLATE
    if (w->ld) {
        deflate_member(w, data, len);
        return;
    }
#endif
    if (!start_stream(w, finish && len < STAGE)) {
        w->zerr = -ENOMEM;
        return;
    }
    w->z.next_in = (uint8_t *)data;
    w->z.avail_in = (uInt)len;
    for (;;) {
        if (!w->last || w->z.avail_out == 0) {
            if (!add_chunk(w))
                return;
            w->z.next_out = w->last->data;
            w->z.avail_out = (uInt)sizeof w->last->data;
        }
        int r = deflate(&w->z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (r == Z_STREAM_END)
            break;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            w->zerr = -EIO;
            return;
        }
        if (!finish && w->z.avail_in == 0 && w->z.avail_out != 0)
            break;
    }
    w->last->len = sizeof w->last->data - w->z.avail_out;
}

static void *compressor(void *arg)
{
    struct hp_wire *w = arg;
    hp_busy_begin(); /* zlib allocates nothing after deflateInit; in case */
    hp_mutex_lock(&w->m);
    for (;;) {
        while (!w->job_set)
            hp_cond_wait(&w->cv, &w->m);
        const uint8_t *data = w->job;
        size_t len = w->job_len;
        bool finish = w->job_finish;
        pthread_mutex_unlock(&w->m);
        deflate_some(w, data, len, finish);
        hp_mutex_lock(&w->m);
        w->job_set = false;
        if (finish)
            break;
        pthread_cond_broadcast(&w->cv);
    }
    /* The last touch of w: the writer may release it once it sees this. */
    w->stopped = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->m);
    return NULL;
}

static bool may_start_thread(void)
{
    const struct hp_exit_roots *r = hp_exit_roots();
    return !(r && r->npoints > 0 && r->interrupted[0]);
}

static void start_thread(struct hp_wire *w)
{
    w->thread = -1;
    if (!may_start_thread() || pthread_mutex_init(&w->m, NULL) != 0)
        return;
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->m);
        return;
    }
    if (hp_thread_spawn_with(compressor, w, "heapprof-gzip") != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->m);
        return;
    }
    w->thread = 1;
}

/* Hands the staged bytes over (or compresses them here), and stages into
 * the other buffer. */
static void hand_over(struct hp_wire *w, bool finish)
{
#ifdef HP_HAVE_LIBDEFLATE
    /* At the first buffer, before anything is compressed: a stream that
     * does not end there is a large profile's. */
    if (!w->ld_tried) {
        w->ld_tried = true;
        if (w->members && !finish && may_start_thread() && ld_load())
            w->ld = ld.alloc(1);
    }
#endif
    if (w->thread == 0 && ++w->filled >= THREAD_AFTER && !finish)
        start_thread(w);
    if (w->thread != 1) {
        deflate_some(w, w->stage, w->staged, finish);
        w->staged = 0;
        return;
    }
    hp_mutex_lock(&w->m);
    while (w->job_set)
        hp_cond_wait(&w->cv, &w->m);
    w->job = w->stage;
    w->job_len = w->staged;
    w->job_finish = finish;
    w->job_set = true;
    pthread_cond_broadcast(&w->cv);
    if (finish)
        while (!w->stopped)
            hp_cond_wait(&w->cv, &w->m);
    pthread_mutex_unlock(&w->m);
    w->cur ^= 1;
    w->stage = w->stages[w->cur];
    w->staged = 0;
}

void hp_wire_raw(struct hp_wire *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len && !w->err) {
        size_t n = STAGE - w->staged;
        if (n > len)
            n = len;
        memcpy(w->stage + w->staged, p, n);
        w->staged += n;
        p += n;
        len -= n;
        if (w->staged == STAGE)
            hand_over(w, false);
    }
}

void hp_wire_field(struct hp_wire *w, unsigned field, const void *data, size_t len)
{
    uint8_t head[2 * HP_WIRE_VARINT_MAX];
    size_t n = hp_wire_key(head, field, HP_WIRE_LEN);
    n += hp_wire_varint(head + n, len);
    hp_wire_raw(w, head, n);
    hp_wire_raw(w, data, len);
}

int hp_wire_error(const struct hp_wire *w)
{
    /* The compressor's error is seen a buffer late at most: a profile is
     * only cut short by it, never made wrong. */
    return w->err ? w->err : __atomic_load_n(&w->zerr, __ATOMIC_RELAXED);
}

int hp_wire_close(struct hp_wire *w, uint8_t **out, size_t *outlen)
{
    /* Always ends the stream, so that a running compressor stops. */
    hand_over(w, true);
    if (w->thread == 1) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->m);
    }
    if (w->zstarted)
        deflateEnd(&w->z);
#ifdef HP_HAVE_LIBDEFLATE
    if (w->ld)
        ld.free(w->ld);
#endif
    size_t total = 0;
    for (struct out_chunk *c = w->first; c; c = c->next)
        total += c->len;
    uint8_t *buf = hp_arena_alloc(w->a, total ? total : 1);
    size_t at = 0;
    for (struct out_chunk *c = w->first, *next; c; c = next) {
        next = c->next;
        if (buf)
            memcpy(buf + at, c->data, c->len);
        at += c->len;
        hp_free(c, sizeof *c);
    }
    *out = buf;
    *outlen = buf ? total : 0;
    if (w->err)
        return w->err;
    if (w->zerr)
        return w->zerr;
    return buf ? 0 : -ENOMEM;
}
