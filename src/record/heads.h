/* The header of a sampled block (interpose/alloc.c, which describes it):
 * the tests that free() and the leak check use. */
#ifndef HP_HEADS_H
#define HP_HEADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { HEAD = 16, HEAD_PAD = 2 * HEAD };
/* Keys with high bits no pointer has. */
#define HEAD_KEY 0xd6e8feb86659fd93ull
#define HEAD_CHECK_KEY 0xa3b195354a39b70full

static inline uint64_t word_before(const void *p, size_t back)
{
    uint64_t w;
    memcpy(&w, (const char *)p - back, sizeof w);
    return w;
}

/* The fast test: p is at least 16 bytes into its page, and the word before
 * it is its key. */
static inline bool head_maybe(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return (a & 0xff0) && word_before(p, 8) == (a ^ HEAD_KEY);
}

static inline uint64_t head_check(const void *p, size_t off)
{
    return (((uintptr_t)p ^ HEAD_CHECK_KEY) & ~(uint64_t)0xf) | off / HEAD;
}

/* After head_maybe: p's offset in its block (16 or 32), or 0 if the match
 * was not a header. */
static inline size_t head_off(const void *p)
{
    uint64_t w = word_before(p, 16);
    size_t off = (size_t)(w & 0xf) * HEAD;
    return (off == HEAD || off == HEAD_PAD) && w == head_check(p, off) ? off : 0;
}

/* p's offset in its block if it carries a header, else 0. */
static inline size_t head_of(const void *p)
{
    return head_maybe(p) ? head_off(p) : 0;
}

#endif
