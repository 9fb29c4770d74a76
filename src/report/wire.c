/* The protobuf wire format without a schema (varints, keys,
 * length-delimited fields), as Go's runtime/pprof keeps it in protobuf.go
 * apart from the builder that names the fields (here report/pprof.c); and
 * the gzip framing pprof expects of a profile file, compressed as it is
 * written, into the dump's arena.
 */
#include "wire.h"
#include "hp.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

size_t hp_wire_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

size_t hp_wire_key(uint8_t *out, unsigned field, enum hp_wire_type type)
{
    return hp_wire_varint(out, ((uint64_t)field << 3) | (uint64_t)type);
}

struct hp_wire {
    z_stream z;
    struct hp_arena *a;
    uint8_t *buf;
    size_t cap;
    size_t staged;
    int err;
    uint8_t stage[64 << 10]; /* bytes not yet deflated */
};

struct hp_wire *hp_wire_open(struct hp_arena *a)
{
    struct hp_wire *w = hp_arena_alloc(a, sizeof *w);
    if (!w)
        return NULL;
    w->a = a;
    /* windowBits 15 + 16: a gzip wrapper, as pprof expects. Fastest level,
     * as Go's runtime/pprof writes profiles: the dump runs inside the
     * program. */
    if (deflateInit2(&w->z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    w->cap = 256 << 10;
    w->buf = hp_arena_alloc(a, w->cap);
    if (!w->buf) {
        deflateEnd(&w->z);
        return NULL;
    }
    w->z.next_out = w->buf;
    w->z.avail_out = (uInt)w->cap;
    return w;
}

/* Deflates the staged bytes; with finish, ends the stream. */
static void drain(struct hp_wire *w, bool finish)
{
    w->z.next_in = w->stage;
    w->z.avail_in = (uInt)w->staged;
    for (;;) {
        if (w->z.avail_out == 0) {
            /* Double the output buffer; the old one stays in the arena until
             * the dump ends (at most as much again). */
            size_t used = w->cap;
            uint8_t *nb = hp_arena_alloc(w->a, w->cap * 2);
            if (!nb) {
                w->err = -ENOMEM;
                return;
            }
            memcpy(nb, w->buf, used);
            w->buf = nb;
            w->cap *= 2;
            w->z.next_out = nb + used;
            w->z.avail_out = (uInt)(w->cap - used);
        }
        int r = deflate(&w->z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (r == Z_STREAM_END)
            break;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            w->err = -EIO;
            return;
        }
        if (!finish && w->z.avail_in == 0 && w->z.avail_out != 0)
            break;
    }
    w->staged = 0;
}

void hp_wire_raw(struct hp_wire *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len && !w->err) {
        size_t n = sizeof w->stage - w->staged;
        if (n > len)
            n = len;
        memcpy(w->stage + w->staged, p, n);
        w->staged += n;
        p += n;
        len -= n;
        if (w->staged == sizeof w->stage)
            drain(w, false);
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
    return w->err;
}

int hp_wire_close(struct hp_wire *w, uint8_t **out, size_t *outlen)
{
    if (!w->err)
        drain(w, true);
    *outlen = w->cap - w->z.avail_out;
    *out = w->buf;
    deflateEnd(&w->z);
    return w->err;
}
