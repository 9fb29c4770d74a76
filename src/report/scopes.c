/* The function scopes of a compilation unit, indexed once: see scopes.h.
 *
 * A unit's index is its subprograms and inlined calls that have code, in
 * the tree's preorder, each with its address ranges, the nearest such
 * ancestor, and where its descendants end. Lexical blocks and the other
 * DIEs are walked through, not kept: a block's calls belong to the
 * function around it. An address is found by walking down from the
 * unit's top-level functions: among the siblings, the one whose ranges
 * hold it (the others are skipped whole), then among its children, until
 * none does. Siblings' code does not overlap, so that path is the one
 * dwarf_getscopes_die gives, less its lexical blocks and the unit, which
 * the caller skips anyway.
 */
#define _GNU_SOURCE
#include "scopes.h"
#include "iface.h"

#include "dw.h"

#include <stdint.h>
#include <string.h>

enum { NONE = UINT32_MAX, MAX_DEPTH = 256 };

struct node {
    Dwarf_Die die;
    uint32_t parent; /* the nearest kept ancestor, NONE at the top */
    uint32_t end;    /* one past its last kept descendant */
    uint32_t r0, nr; /* its ranges: ranges[r0 .. r0 + nr) */
};
struct range {
    Dwarf_Addr lo, hi;
};

struct unit {
    UT_hash_handle hh;
    void *key; /* the unit DIE's address in its section */
    bool usable;
    struct node *nodes;
    struct range *ranges;
    uint32_t nnodes, nranges;
};

enum { FIRST_CAP = 16 };

/* A DIE being visited at one depth of a walk (build). */
struct frame {
    Dwarf_Die die;
    uint32_t owner; /* the nearest kept ancestor */
    uint32_t self;  /* its own index, or NONE */
};

struct hp_scopes {
    struct hp_arena *a;
    struct unit *units;
    struct frame *fr; /* MAX_DEPTH of them, made at the first walk, for every walk */
};

struct hp_scopes *hp_scopes_begin(struct hp_arena *a)
{
    struct hp_scopes *x = hp_arena_alloc(a, sizeof *x);
    if (x)
        x->a = a;
    return x;
}

void hp_scopes_end(struct hp_scopes *x)
{
    if (x)
        HASH_CLEAR(hh, x->units); /* the entries are the arena's */
}

/* Grows an arena array by doubling; the old copy stays in the arena until
 * the dump ends. */
static bool grow(struct hp_arena *a, void **arr, uint32_t n, uint32_t *cap, size_t size)
{
    if (n < *cap)
        return true;
    if (*cap >= UINT32_MAX / 4)
        return false;
    uint32_t nc = *cap ? *cap * 2 : FIRST_CAP;
    void *na = hp_arena_alloc(a, (size_t)nc * size);
    if (!na)
        return false;
    if (n)
        memcpy(na, *arr, (size_t)n * size);
    *arr = na;
    *cap = nc;
    return true;
}

/* Keeps die if it is a function with code: its index, or NONE. */
static uint32_t keep(struct hp_arena *a, struct unit *u, uint32_t *ncap, uint32_t *rcap,
                     Dwarf_Die *die, uint32_t parent, bool *ok)
{
    uint32_t r0 = u->nranges;
    Dwarf_Addr base, lo, hi;
    ptrdiff_t off = 0;
    while ((off = dwarf_ranges(die, off, &base, &lo, &hi)) > 0) {
        if (lo >= hi)
            continue;
        if (!grow(a, (void **)&u->ranges, u->nranges, rcap, sizeof *u->ranges)) {
            *ok = false;
            return NONE;
        }
        u->ranges[u->nranges++] = (struct range){lo, hi};
    }
    if (off < 0 || u->nranges == r0)
        return NONE; /* no code (a declaration, an abstract instance) */
    if (!grow(a, (void **)&u->nodes, u->nnodes, ncap, sizeof *u->nodes)) {
        *ok = false;
        return NONE;
    }
    uint32_t me = u->nnodes++;
    u->nodes[me] = (struct node){
        .die = *die, .parent = parent, .end = me + 1, .r0 = r0, .nr = u->nranges - r0};
    return me;
}

/* One walk over the unit's tree, without recursion: fr[d] is the DIE
 * being visited at depth d, with the kept ancestor its children get and
 * its own index if it was kept. */
static bool build(struct hp_scopes *x, struct unit *u, Dwarf_Die *cu)
{
    struct hp_arena *a = x->a;
    if (!x->fr && !(x->fr = hp_arena_alloc(a, MAX_DEPTH * sizeof *x->fr)))
        return false;
    struct frame *fr = x->fr;
    uint32_t ncap = 0, rcap = 0;
    bool ok = true;
    Dwarf_Die child;
    int r = dwarf_child(cu, &child);
    if (r != 0)
        return r > 0; /* no children: nothing to find, but not an error */
    int d = 0;
    fr[0] = (struct frame){.die = child, .owner = NONE, .self = NONE};
    for (;;) {
        struct frame *f = &fr[d];
        int tag = dwarf_tag(&f->die);
        if (tag == DW_TAG_imported_unit || tag == DW_TAG_partial_unit)
            return false; /* its functions are elsewhere: libdw follows them */
        f->self = tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine
                      ? keep(a, u, &ncap, &rcap, &f->die, f->owner, &ok)
                      : NONE;
        if (!ok)
            return false;
        if (dwarf_haschildren(&f->die) > 0 && dwarf_child(&f->die, &child) == 0) {
            if (d + 1 >= MAX_DEPTH)
                return false;
            fr[d + 1] = (struct frame){
                .die = child, .owner = f->self != NONE ? f->self : f->owner, .self = NONE};
            d++;
            continue;
        }
        /* The next sibling, here or at the first ancestor that has one;
         * every DIE left behind closes its kept descendants. */
        for (;;) {
            f = &fr[d];
            if (f->self != NONE)
                u->nodes[f->self].end = u->nnodes;
            Dwarf_Die next;
            r = dwarf_siblingof(&f->die, &next);
            if (r < 0)
                return false;
            if (r == 0) {
                *f = (struct frame){.die = next, .owner = f->owner, .self = NONE};
                break;
            }
            if (d == 0)
                return true;
            d--;
        }
    }
}

static bool holds(const struct unit *u, const struct node *n, Dwarf_Addr addr)
{
    for (uint32_t i = 0; i < n->nr; i++)
        if (addr >= u->ranges[n->r0 + i].lo && addr < u->ranges[n->r0 + i].hi)
            return true;
    return false;
}

int hp_scopes_at(struct hp_scopes *x, Dwarf_Die *cu, Dwarf_Addr addr, Dwarf_Die *out, int max)
{
    if (!x || !cu->addr)
        return -1;
    struct unit *u;
    void *key = cu->addr;
    HASH_FIND_PTR(x->units, &key, u);
    if (!u) {
        u = hp_arena_alloc(x->a, sizeof *u);
        if (!u)
            return -1;
        u->key = key;
        u->usable = build(x, u, cu);
        HASH_ADD_PTR(x->units, key, u);
        if (!u->hh.tbl)
            return -1; /* not kept: the next lookup builds it again */
    }
    if (!u->usable)
        return -1;
    uint32_t in = NONE, i = 0, end = u->nnodes;
    while (i < end) {
        if (holds(u, &u->nodes[i], addr)) {
            in = i;
            end = u->nodes[i].end;
            i++;
        } else
            i = u->nodes[i].end;
    }
    int n = 0;
    for (; in != NONE && n < max; in = u->nodes[in].parent)
        out[n++] = u->nodes[in].die;
    return n;
}
