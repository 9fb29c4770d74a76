/* rb_bounded: programs that would make an unbounded stack table grow, for
 * the robustness tests (tests/robust/robust.py, checks bounded-sizes,
 * max-memory).
 *
 * Usage:
 *   rb_bounded sizes N    from one call site (sizes_site), N allocations of
 *                         sizes 1, 2, ..., N, each freed at once except the
 *                         last 10, which are kept to the end. A table keyed
 *                         by exact size would hold N buckets for this one
 *                         stack; keyed by size class, bit_length(N).
 *   rb_bounded stacks D [K]
 *                         a recursion D levels deep with two call sites per
 *                         level, so that its 2^D leaves each have a call
 *                         stack of their own; each leaf mallocs 16 to 64
 *                         bytes (in leaf_alloc) and frees it, except every
 *                         K-th leaf (default 4096), whose block is kept.
 *
 * Both print their own truth, one `NAME VALUE` line each: allocations, bytes,
 * kept (objects still allocated at exit) and kept_bytes. Output is written
 * with write(2), never stdio, so that the program makes no allocation of its
 * own outside the sites it counts after it has started (stdio's buffer would
 * otherwise be a new stack late in the run).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long long allocations, bytes, kept, kept_bytes;

static void say(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(1, buf, (size_t)n) != n)
        exit(3);
}

static void report(void)
{
    say("allocations %llu\nbytes %llu\nkept %llu\nkept_bytes %llu\n", allocations, bytes, kept,
        kept_bytes);
}

/* ---- sizes ---------------------------------------------------------------- */

/* The one site: every allocation of `sizes` has this stack. */
__attribute__((noinline)) static char *sizes_site(size_t n)
{
    char *p = malloc(n);
    if (!p) {
        say("FAIL malloc(%zu)\n", n);
        exit(1);
    }
    p[0] = 1;
    return p;
}

#define SIZES_KEPT 10
char *sizes_kept[SIZES_KEPT]; /* never freed: in use at exit */

__attribute__((noinline)) static void run_sizes(size_t n)
{
    size_t nkeep = 0;
    for (size_t s = 1; s <= n; s++) {
        char *p = sizes_site(s);
        allocations++;
        bytes += s;
        if (n - s < SIZES_KEPT) {
            sizes_kept[nkeep++] = p;
            kept++;
            kept_bytes += s;
        } else
            free(p);
    }
}

/* ---- stacks --------------------------------------------------------------- */

static unsigned long keep_every = 4096;
static void *kept_list; /* kept blocks, chained through their first word */
/* Written before and after each recursive call, differently on each side of
 * the branch, so that the compiler cannot merge the two calls: their return
 * addresses stay distinct, and so do the leaves' stacks. */
static volatile int side_a, side_b;

__attribute__((noinline)) static void leaf_alloc(unsigned long path)
{
    size_t size = 16 + (size_t)(path * 13 % 49); /* 16 to 64 */
    void **p = malloc(size);
    if (!p) {
        say("FAIL malloc(%zu)\n", size);
        exit(1);
    }
    allocations++;
    bytes += size;
    if (path % keep_every == 0) {
        *p = kept_list;
        kept_list = p;
        kept++;
        kept_bytes += size;
    } else
        free(p);
}

/* Level d chooses its call site by bit d-1 of path: the outermost level by
 * the highest bit, so that consecutive leaves share their outer frames. */
__attribute__((noinline)) static void step(int d, unsigned long path)
{
    if (d == 0) {
        leaf_alloc(path);
        return;
    }
    if ((path >> (d - 1)) & 1) {
        side_a = d;
        step(d - 1, path);
        side_a = -d;
    } else {
        side_b = d;
        step(d - 1, path);
        side_b = -d;
    }
}

__attribute__((noinline)) static void run_stacks(int depth)
{
    for (unsigned long path = 0; path < 1ul << depth; path++)
        step(depth, path);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "sizes")) {
        long n = atol(argv[2]);
        if (n < SIZES_KEPT) {
            say("N must be at least %d\n", SIZES_KEPT);
            return 2;
        }
        run_sizes((size_t)n);
        report();
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "stacks")) {
        int depth = atoi(argv[2]);
        if (argc >= 4)
            keep_every = strtoul(argv[3], NULL, 10);
        /* At most 64 frames are recorded: deeper stacks would be cut and
         * merge. */
        if (depth < 1 || depth > 40 || keep_every == 0) {
            say("usage: rb_bounded stacks DEPTH(1-40) [KEEP_EVERY(>0)]\n");
            return 2;
        }
        run_stacks(depth);
        report();
        return 0;
    }
    say("usage: rb_bounded sizes N | stacks DEPTH [KEEP_EVERY]\n");
    return 2;
}
