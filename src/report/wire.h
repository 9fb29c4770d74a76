/* The protobuf wire format, without a schema, and the gzip stream a pprof
 * profile is written into (report/wire.c). What the fields mean is the
 * profile builder's (report/pprof.c).
 */
#ifndef HP_REPORT_WIRE_H
#define HP_REPORT_WIRE_H

#include "hp.h"

/* Wire types: the low 3 bits of a field's key. */
enum hp_wire_type { HP_WIRE_VARINT = 0, HP_WIRE_I64 = 1, HP_WIRE_LEN = 2, HP_WIRE_I32 = 5 };
enum { HP_WIRE_VARINT_MAX = 10 }; /* bytes of the longest varint */

/* v as a varint into out (room for HP_WIRE_VARINT_MAX bytes): its length.
 * Inline: an exact-mode profile writes tens of millions of them. */
static inline size_t hp_wire_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v > 0x7f) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}
/* A field's key (number and wire type) the same way. */
static inline size_t hp_wire_key(uint8_t *out, unsigned field, enum hp_wire_type type)
{
    return hp_wire_varint(out, ((uint64_t)field << 3) | (uint64_t)type);
}

/* A gzip stream into a buffer of the arena, written as it goes: a message
 * may hold its fields in any order, and a repeated field's elements need
 * not be adjacent, so a profile is written piece by piece and never held
 * whole before compression. */
struct hp_wire;
/* NULL without memory. */
struct hp_wire *hp_wire_open(struct hp_arena *a);
/* Lets the stream be written as gzip members one after another, by
 * libdeflate, where that is faster (a large stream, libdeflate installed):
 * for pprof profiles, which Go's gzip reader reads whole; not for what a
 * browser decompresses (Content-Encoding), where a second member may be
 * ignored. */
void hp_wire_members(struct hp_wire *w);
/* Bytes already in the wire format (fields of the top message). */
void hp_wire_raw(struct hp_wire *w, const void *data, size_t len);
/* A length-delimited field: its key, its length as a varint, its bytes. */
void hp_wire_field(struct hp_wire *w, unsigned field, const void *data, size_t len);
/* 0, or the -errno that stopped the stream (the rest is not written). */
int hp_wire_error(const struct hp_wire *w);
/* Ends the gzip stream: the compressed bytes (in the arena) into out and
 * outlen, even on error. 0 or -errno. */
int hp_wire_close(struct hp_wire *w, uint8_t **out, size_t *outlen);

#endif
