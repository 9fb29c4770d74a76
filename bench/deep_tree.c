/* A deep, varied workload for exact-mode profilers: binary trees
 * built through mutually recursive builders, so that every node is allocated
 * from a call stack of its own, most of them 20 to 30 frames deep.
 *
 * usage: deep_tree ROUNDS [DEPTH]
 * Each round builds a full binary tree of DEPTH levels (default 17: 131,071
 * nodes), walks it, and frees it. Five builders call one another: build_a
 * makes a node and builds its left child with build_b and its right child
 * with build_c, build_b goes on with build_c and build_d, and so on around
 * the five; every third level the call passes through relay(). A node's
 * stack is therefore its path from the root (each call site is its own
 * return address): every allocation of a round comes from a stack of its own
 * (an exact profile of one round at DEPTH 17: 393,213 allocations from
 * 393,213 distinct stacks), and 99.6% of them are 20 to 30 frames deep:
 * _start, __libc_start_main, __libc_start_call_main, main, run_round, up to
 * 17 builders and 5 relays, make_node (and scratch) and the site.
 *
 * Per node, three allocations from 50 sites in all (SITE() below; which site
 * depends on the node's level and builder):
 * - the node itself, 32..512 bytes (one of 30 sites), kept until the round's
 *   free;
 * - its payload, 16..512 bytes (one of 12 sites), kept likewise;
 * - a scratch buffer, 16..2048 bytes (one of 8 sites), freed at once.
 * Sizes come from a xorshift generator with a fixed seed that runs on from
 * round to round: every round has the same stacks and different sizes. A
 * round's peak is the whole tree, about 70 MB of RSS at DEPTH 17.
 *
 * Built with -O2 -fno-optimize-sibling-calls and without frame pointers
 * (bench/meson.build); every builder and site is noinline, so the recursion
 * stays real and every site keeps its own frame. Prints bench_report's line
 * (report.h: the loop's wall and CPU seconds, ops = allocations, bytes, peak
 * RSS before exit) and a checksum.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"

#define NOINLINE __attribute__((noinline))

enum { NODE_SITES = 30, PAYLOAD_SITES = 12, SCRATCH_SITES = 8, KINDS = 5 };

struct node {
    struct node *left, *right;
    unsigned char *payload;
    uint32_t size, payload_size;
    unsigned char data[];
};

struct ctx {
    int depth;
    uint64_t rng;
    unsigned long long allocs, bytes, check;
};

static uint64_t next_rand(struct ctx *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* A uniform size in [lo, hi]. */
static size_t pick(struct ctx *c, size_t lo, size_t hi)
{
    return lo + (size_t)(next_rand(c) % (hi - lo + 1));
}

/* The allocation sites: 50 distinct functions, each its own call to malloc.
 * Each stamps its number into the block, which also keeps the compiler from
 * folding identical functions into one. */
typedef unsigned char *(*site_fn)(size_t n);
#define SITE(k)                                                                                    \
    NOINLINE static unsigned char *site_##k(size_t n)                                              \
    {                                                                                              \
        unsigned char *p = malloc(n);                                                              \
        if (!p) {                                                                                  \
            fprintf(stderr, "deep_tree: malloc(%zu) failed\n", n);                                 \
            exit(1);                                                                               \
        }                                                                                          \
        p[0] = (unsigned char)(k);                                                                 \
        return p;                                                                                  \
    }                                                                                              \
    extern int deep_tree_sites /* a declaration, so that SITE(k); ends with a semicolon */
// clang-format off
SITE(0); SITE(1); SITE(2); SITE(3); SITE(4); SITE(5); SITE(6); SITE(7); SITE(8); SITE(9);
SITE(10); SITE(11); SITE(12); SITE(13); SITE(14); SITE(15); SITE(16); SITE(17); SITE(18); SITE(19);
SITE(20); SITE(21); SITE(22); SITE(23); SITE(24); SITE(25); SITE(26); SITE(27); SITE(28); SITE(29);
SITE(30); SITE(31); SITE(32); SITE(33); SITE(34); SITE(35); SITE(36); SITE(37); SITE(38); SITE(39);
SITE(40); SITE(41); SITE(42); SITE(43); SITE(44); SITE(45); SITE(46); SITE(47); SITE(48); SITE(49);
// clang-format on

static site_fn const node_sites[NODE_SITES] = {
    site_0,  site_1,  site_2,  site_3,  site_4,  site_5,  site_6,  site_7,  site_8,  site_9,
    site_10, site_11, site_12, site_13, site_14, site_15, site_16, site_17, site_18, site_19,
    site_20, site_21, site_22, site_23, site_24, site_25, site_26, site_27, site_28, site_29,
};
static site_fn const payload_sites[PAYLOAD_SITES] = {
    site_30, site_31, site_32, site_33, site_34, site_35,
    site_36, site_37, site_38, site_39, site_40, site_41,
};
static site_fn const scratch_sites[SCRATCH_SITES] = {
    site_42, site_43, site_44, site_45, site_46, site_47, site_48, site_49,
};

/* A scratch buffer used and freed at once: churn that never reaches the
 * peak. */
NOINLINE static uint64_t scratch(struct ctx *c, int level, int kind)
{
    size_t n = pick(c, 16, 2048);
    unsigned char *s = scratch_sites[(level * 3 + kind) % SCRATCH_SITES](n);
    c->allocs++;
    c->bytes += n;
    memset(s + 1, level, n < 64 ? n - 1 : 63);
    uint64_t h = s[0] + s[n < 64 ? n - 1 : 63] + n;
    free(s);
    return h;
}

/* The node and its payload, from sites picked by level and builder. */
NOINLINE static struct node *make_node(struct ctx *c, int level, int kind)
{
    size_t size = pick(c, sizeof(struct node), 512);
    struct node *n = (struct node *)node_sites[(level * KINDS + kind) % NODE_SITES](size);
    n->left = n->right = NULL;
    n->size = (uint32_t)size;
    size_t psize = pick(c, 16, 512);
    n->payload = payload_sites[(level + kind * 5) % PAYLOAD_SITES](psize);
    n->payload_size = (uint32_t)psize;
    n->payload[psize - 1] = (unsigned char)kind;
    if (size > sizeof(struct node))
        n->data[size - sizeof(struct node) - 1] = (unsigned char)level;
    c->allocs += 2;
    c->bytes += size + psize;
    c->check += scratch(c, level, kind);
    return n;
}

typedef struct node *(*builder_fn)(struct ctx *c, int level);

/* One more frame on the way down; the work after the call keeps it a real
 * call. */
NOINLINE static struct node *relay(struct ctx *c, int level, builder_fn next)
{
    struct node *n = next(c, level);
    __asm__ volatile("" : "+r"(n));
    return n;
}

static struct node *build_a(struct ctx *c, int level);
static struct node *build_b(struct ctx *c, int level);
static struct node *build_c(struct ctx *c, int level);
static struct node *build_d(struct ctx *c, int level);
static struct node *build_e(struct ctx *c, int level);

/* A builder: this node, then the left subtree through LEFT and the right
 * through RIGHT; every third level through relay(). */
#define BUILDER(name, kind, LEFT, RIGHT)                                                           \
    NOINLINE static struct node *name(struct ctx *c, int level)                                    \
    {                                                                                              \
        struct node *n = make_node(c, level, kind);                                                \
        if (level + 1 < c->depth) {                                                                \
            if (level % 3 == 2) {                                                                  \
                n->left = relay(c, level + 1, LEFT);                                               \
                n->right = relay(c, level + 1, RIGHT);                                             \
            } else {                                                                               \
                n->left = LEFT(c, level + 1);                                                      \
                n->right = RIGHT(c, level + 1);                                                    \
            }                                                                                      \
        }                                                                                          \
        __asm__ volatile("" : "+r"(n));                                                            \
        return n;                                                                                  \
    }
BUILDER(build_a, 0, build_b, build_c)
BUILDER(build_b, 1, build_c, build_d)
BUILDER(build_c, 2, build_d, build_e)
BUILDER(build_d, 3, build_e, build_a)
BUILDER(build_e, 4, build_a, build_b)

/* Reads every node and payload; allocates nothing. */
NOINLINE static uint64_t walk(const struct node *n)
{
    if (!n)
        return 0;
    uint64_t h = n->size * 31u + n->payload[0] + n->payload[n->payload_size - 1];
    return h + walk(n->left) * 3 + walk(n->right);
}

NOINLINE static void free_tree(struct node *n)
{
    if (!n)
        return;
    free_tree(n->left);
    free_tree(n->right);
    free(n->payload);
    free(n);
}

NOINLINE static void run_round(struct ctx *c)
{
    struct node *root = build_a(c, 0);
    c->check += walk(root);
    free_tree(root);
}

int main(int argc, char **argv)
{
    int rounds = argc >= 2 ? atoi(argv[1]) : 0;
    int depth = argc >= 3 ? atoi(argv[2]) : 17;
    if (argc < 2 || argc > 3 || rounds < 1 || depth < 1 || depth > 24) {
        fprintf(stderr, "usage: %s ROUNDS [DEPTH (1..24, default 17)]\n", argv[0]);
        return 2;
    }
    struct ctx c = {.depth = depth, .rng = 0x2545f4914f6cdd1dull};
    struct bench_clock t0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
    for (int r = 0; r < rounds; r++)
        run_round(&c);
    struct bench_clock t1 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
    bench_report(t1.wall - t0.wall, t1.cpu - t0.cpu, (long)c.allocs, c.bytes);
    printf("rounds=%d depth=%d nodes_per_round=%ld checksum=%llu\n", rounds, depth,
           (1L << depth) - 1, c.check);
    return 0;
}
