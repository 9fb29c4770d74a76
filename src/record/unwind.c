/* The fast unwinder: stack capture on the sampled path without libunwind.
 *
 * libunwind's unw_backtrace costs a sampled allocation more than the rest of
 * its path together. Most frames of a real program obey one of a few rules
 * (the CFA is rsp or rbp plus a constant, the return address sits just
 * below it, rbp is saved at a fixed offset from it or not touched), as the
 * Linux kernel's ORC tables and the framehop and nwind unwinders exploit. So
 * each module's .eh_frame (found through PT_GNU_EH_FRAME and the sorted
 * table of .eh_frame_hdr) is run once, lazily, at the first capture that
 * needs it, into rows of 8 bytes: an address and a packed rule that holds
 * until the next row. A capture then reads two words per frame, looking the
 * rule up in a small per-thread cache of return addresses, or by binary
 * search in the module's rows.
 *
 * It does exactly what libunwind's fast trace (x86_64/Gtrace.c) does for
 * such "standard" frames, and nothing else: wherever a frame's rule is one
 * it does not follow (an expression, a register kept in another register,
 * a signal frame, an address no FDE covers, a module without
 * .eh_frame_hdr), the whole capture goes to libunwind, and the reason is
 * counted. So its stacks are libunwind's, frame for frame, which
 * HEAPPROF_UNWIND=check verifies on every capture (tests/unwind/).
 *
 * It must never fault: every read of the stack is checked against the
 * mapping that holds the thread's stack (record/threads.c finds it once per
 * thread), and
 * every read of .eh_frame against the segment that holds it. A stack that
 * is not the thread's own (a signal stack, a coroutine's) goes to libunwind.
 *
 * Modules come from dl_iterate_phdr into an immutable sorted set, replaced
 * whole when a return address falls in no known module and the loader
 * says something was loaded, and after every dlclose. Captures do not lock:
 * a thread marks itself active for the length of a capture, and a replaced
 * set, or a module's rows, are freed only when no thread is active. Around
 * the real dlclose every capture goes to libunwind, so rows of a module
 * that is going, or gone, are never read for code loaded in its place.
 * (glibc's own unloads, of NSS or iconv modules, are not seen until the
 * next rescan: a module loaded at the very address one of those left, in
 * between, would be read with the old rows. The stack reads stay bounded.)
 *
 * Memory: heapprof's own (hp_alloc), at most a quarter of
 * HEAPPROF_MAX_MEMORY for the tables and the per-thread caches together; a
 * module that does not fit is left to libunwind (one line says so).
 */
#define _GNU_SOURCE
#include "record.h"

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

int hp_unwind_mode = HP_UNWIND_LIBUNWIND; /* until hp_unwind_init */

/* ---- rules, packed ----
 *
 * bits 0-1: what the frame is: FAIL (libunwind must do it; bits 2-5 say
 * why), CFA = rsp + N, CFA = rbp + N, or END (the outermost frame: its
 * return address, or rbp, is undefined, and libunwind stops there too).
 * For RSP and RBP: bit 2, rbp is saved; bits 3-10, where (CFA + 8 * int8);
 * bits 11-31, N (bytes, below 2 MiB). */
enum { K_FAIL, K_RSP, K_RBP, K_END };

static inline uint32_t fail_info(int reason)
{
    return K_FAIL | (uint32_t)reason << 2;
}

struct row {
    uint32_t pc; /* offset from the module's load bias */
    uint32_t info;
};

struct mod {
    uintptr_t lo, hi; /* its executable segments */
    uintptr_t bias;
    const ElfW(Phdr) * phdr;
    int phnum;
    uintptr_t hdr; /* .eh_frame_hdr, 0: none */
    size_t hdr_len;
    struct row *rows; /* published once built (release), then never changed */
    uint32_t nrows;
    int state; /* NOT_BUILT, BUILT, NONE */
    size_t bytes;
    struct mod *retired_next;
};
enum { NOT_BUILT, BUILT, NONE };

struct set {
    uint32_t gen;
    int n;
    unsigned long long adds, subs; /* the loader's counts when it was made */
    struct set *retired_next;
    size_t size;
    struct mod *mods[]; /* sorted by lo */
};

/* ---- per-thread state ---- */
/* A return address, its rule unpacked, and the return address found above
 * it last time. A frame's cost is a chain of dependent loads: the slot,
 * then the return address it locates, then that address's slot. Stacks
 * repeat, so the slot also predicts its caller: the next slot is loaded
 * from the prediction while the return address is still on its way, and
 * only a wrong guess waits for it (and corrects the slot). */
enum { CACHE_BITS = 9, CACHE = 1 << CACHE_BITS };
struct slot {
    uintptr_t pc;
    uintptr_t next; /* the return address above it, last time */
    int32_t cfa;    /* offset from rsp or rbp */
    int16_t rbp;    /* where rbp is saved, from the CFA; 0: not saved */
    uint8_t kind;   /* K_RSP, K_RBP, K_END, or K_FAIL */
    uint8_t why;    /* K_FAIL's reason */
    uint64_t pad;
};
/* The steps of a thread's last walk, to skip the frames the next one
 * shares with it. Step k starts from the registers st[k] (ip, sp, bp),
 * reads the return address st[k + 1].ip at st[k + 1].sp - 8 and, where the
 * rule restores rbp, st[k + 1].bp at st[k].bpat (0: none read). A walk is
 * a function of its starting registers and of the words it reads: one that
 * reaches a state of the last walk, from which every word the last walk
 * read still holds the same value, would find the same frames, and takes
 * them. In a deep recursion most of the stack stays from one allocation
 * to the next (deep_tree: 25 of 32 frames; python3: 13 of 20), and
 * checking a frame is a load and a comparison at a known address, where
 * walking it is a chain of dependent loads, with a mispredicted branch in
 * 4 frames of 10 on deep_tree. */
enum { MEMO = HP_MAX_FRAMES + 16 };
struct memo {
    int n;                     /* its frames: ip[0 .. n); 0: nothing to reuse */
    uint32_t gen;              /* the set whose rules it followed */
    uintptr_t hi;              /* the top of the stack it walked */
    uintptr_t end_at, end_val; /* its last read (a return address below 0x4000), or 0 */
    struct step {
        uintptr_t ip, sp, bp, bpat;
    } st[MEMO];
};

struct uw_thread {
    int active; /* inside a capture: the set it read, and its rows, stay */
    bool in_use;
    uint32_t gen;                      /* the set its cache was filled from */
    uint64_t count[HP_UW_REASONS + 1]; /* [HP_UW_REASONS]: fast */
    struct uw_thread *next_all;        /* every block ever made; never unlinked */
    struct uw_thread *next_free;
    struct slot *cache; /* CACHE slots */
    /* Three: memo[last] the last walk's, memo[last ^ 1] this one's, and
     * memo[2] a scratch record for a capture that interrupted another. */
    struct memo *memo;
    int last;
};

static struct set *cur_set;
static struct uw_thread *all_threads;
static struct uw_thread *free_threads;
static int threads_lock; /* spin: the free list (a leaf) */
static int mods_lock;    /* spin: rescans, table builds, retiring (see docs/locks.md) */
static int closing;      /* dlcloses under way */
static int opened;       /* a dlopen since the last rescan */
static uint32_t next_gen = 1;
static struct set *retired_sets;
static struct mod *retired_mods;
static size_t uw_bytes; /* tables and caches, under the share */
static bool said_full;
static uint64_t exited[HP_UW_REASONS + 1]; /* counts of threads gone */
static uint64_t compared, mismatches;
static pthread_key_t key;
static bool key_made;
static HP_TLS struct uw_thread *me;
static HP_TLS bool exiting; /* past this thread's key destructor */

static void spin_take(int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(l, __ATOMIC_RELAXED))
            sched_yield();
}

static bool spin_try(int *l)
{
    return !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE);
}

static void spin_drop(int *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static size_t share_bytes;

static size_t share(void)
{
    return share_bytes;
}

/* Memory within the share; NULL (and one line, once) past it. */
static void *uw_alloc(size_t size)
{
    if (__atomic_load_n(&uw_bytes, __ATOMIC_RELAXED) + size > share()) {
        if (!__atomic_exchange_n(&said_full, true, __ATOMIC_RELAXED))
            hp_log("heapprof: the fast unwinder's tables reached %zu KiB (a quarter of "
                   "HEAPPROF_MAX_MEMORY); libunwind unwinds the modules left",
                   share() >> 10);
        return NULL;
    }
    void *p = hp_alloc(size);
    if (p)
        __atomic_fetch_add(&uw_bytes, size, __ATOMIC_RELAXED);
    return p;
}

static void uw_free(void *p, size_t size)
{
    if (!p)
        return;
    hp_free(p, size);
    __atomic_fetch_sub(&uw_bytes, size, __ATOMIC_RELAXED);
}

/* ---- threads ---- */

static void count_local(struct uw_thread *t, int i)
{
    /* Only this thread writes its counts; readers (hp_unwind_stats) add
     * them up without a lock: a plain increment, no locked instruction. */
    __atomic_store_n(&t->count[i], t->count[i] + 1, __ATOMIC_RELAXED);
}

static void thread_gone(void *v)
{
    struct uw_thread *t = v;
    if (!t)
        return;
    exiting = true;
    me = NULL;
    for (int i = 0; i <= HP_UW_REASONS; i++) {
        __atomic_fetch_add(&exited[i], t->count[i], __ATOMIC_RELAXED);
        __atomic_store_n(&t->count[i], 0, __ATOMIC_RELAXED);
    }
    spin_take(&threads_lock);
    t->in_use = false;
    t->next_free = free_threads;
    free_threads = t;
    spin_drop(&threads_lock);
}

static struct uw_thread *thread_block(void)
{
    if (HP_LIKELY(me != NULL))
        return me;
    if (exiting || !key_made)
        return NULL;
    spin_take(&threads_lock);
    struct uw_thread *t = free_threads;
    if (t) {
        free_threads = t->next_free;
        t->in_use = true;
    }
    spin_drop(&threads_lock);
    if (t) /* another thread's stack: nothing to reuse */
        t->memo[0].n = t->memo[1].n = t->memo[2].n = 0;
    if (!t) {
        t = uw_alloc(sizeof *t);
        struct slot *c = t ? uw_alloc(CACHE * sizeof *c) : NULL;
        struct memo *mm = c ? uw_alloc(3 * sizeof *mm) : NULL;
        if (!mm) {
            uw_free(c, CACHE * sizeof *c);
            uw_free(t, sizeof *t);
            return NULL;
        }
        t->cache = c;
        t->memo = mm;
        mm[0].n = mm[1].n = mm[2].n = 0;
        t->in_use = true;
        struct uw_thread *head = __atomic_load_n(&all_threads, __ATOMIC_RELAXED);
        do
            t->next_all = head;
        while (!__atomic_compare_exchange_n(&all_threads, &head, t, false, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED));
    }
    me = t;
    pthread_setspecific(key, t);
    return t;
}

void hp_unwind_init(const char *m, size_t share)
{
    share_bytes = share;
    if (!m || !*m || !strcmp(m, "fast"))
        hp_unwind_mode = HP_UNWIND_FAST;
    else if (!strcmp(m, "libunwind"))
        hp_unwind_mode = HP_UNWIND_LIBUNWIND;
    else if (!strcmp(m, "check"))
        hp_unwind_mode = HP_UNWIND_CHECK;
    else
        hp_log("heapprof: HEAPPROF_UNWIND=\"%.32s\" is not fast, libunwind or check; using fast",
               m);
    if (!key_made && hp_unwind_mode != HP_UNWIND_LIBUNWIND)
        key_made = pthread_key_create(&key, thread_gone) == 0;
}

/* ---- .eh_frame ---- */

/* A bounded reader: any read past end marks it bad and reads zeros. */
struct cur {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t rd(struct cur *c, size_t n)
{
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, c->p, n); /* little-endian */
    c->p += n;
    return v;
}

static uint64_t uleb(struct cur *c)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint64_t b = rd(c, 1);
        v |= (b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->bad = true;
    return 0;
}

static int64_t sleb(struct cur *c)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint64_t b = rd(c, 1);
        v |= (b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (shift + 7 < 64 && (b & 0x40))
                v |= ~(uint64_t)0 << (shift + 7);
            return (int64_t)v;
        }
    }
    c->bad = true;
    return 0;
}

/* A pointer in one of the DW_EH_PE encodings: absolute, pc-relative or
 * relative to datarel; indirect ones and the others are refused (bad). */
static uint64_t rd_enc(struct cur *c, uint8_t enc, uintptr_t datarel, bool value_only)
{
    if (enc == 0xff) /* omitted */
        return 0;
    uintptr_t at = (uintptr_t)c->p;
    uint64_t v;
    switch (enc & 0x0f) {
    case 0x00:
    case 0x04:
        v = rd(c, 8);
        break;
    case 0x01:
        v = uleb(c);
        break;
    case 0x02:
        v = rd(c, 2);
        break;
    case 0x03:
        v = rd(c, 4);
        break;
    case 0x09:
        v = (uint64_t)sleb(c);
        break;
    case 0x0a:
        v = (uint64_t)(int64_t)(int16_t)rd(c, 2);
        break;
    case 0x0b:
        v = (uint64_t)(int64_t)(int32_t)rd(c, 4);
        break;
    case 0x0c:
        v = rd(c, 8);
        break;
    default:
        c->bad = true;
        return 0;
    }
    if (value_only)
        return v;
    if (enc & 0x80) {
        c->bad = true;
        return 0;
    }
    switch (enc & 0x70) {
    case 0x00:
        return v;
    case 0x10:
        return at + v;
    case 0x30:
        return datarel + v;
    default:
        c->bad = true;
        return 0;
    }
}

struct cie {
    const uint8_t *at;
    uint64_t caf;
    int64_t daf;
    uint8_t fde_enc;
    bool z, signal;
    const uint8_t *ins, *ins_end;
};

/* DWARF's register numbers on x86-64. */
enum { R_RBP = 6, R_RSP = 7, R_RA = 16 };

enum { SAME, UNDEF, OFFSET, OTHER };
struct rule {
    uint8_t how;
    int64_t off;
};
struct state {
    uint8_t cfa_reg;
    bool cfa_expr;
    bool other_bad; /* an expression rule for some other register */
    int64_t cfa_off;
    struct rule rbp, rsp, ra;
};

static struct rule *rule_of(struct state *s, uint64_t reg)
{
    return reg == R_RBP ? &s->rbp : reg == R_RSP ? &s->rsp : reg == R_RA ? &s->ra : NULL;
}

/* The row for a state: what libunwind's tdep_stash_frame calls a standard
 * frame, or its last frame, or FAIL. */
static uint32_t info_of(const struct state *s, bool signal)
{
    if (signal)
        return fail_info(HP_UW_SIGNAL);
    if (s->other_bad || s->cfa_expr || (s->cfa_reg != R_RSP && s->cfa_reg != R_RBP))
        return fail_info(HP_UW_RULE);
    if (s->ra.how == UNDEF || s->rbp.how == UNDEF)
        return K_END;
    if (s->ra.how != OFFSET || s->ra.off != -8 || s->rsp.how != SAME)
        return fail_info(HP_UW_RULE);
    if (s->cfa_off < 8 || s->cfa_off >= (1 << 21))
        return fail_info(HP_UW_RULE);
    uint32_t info = (s->cfa_reg == R_RSP ? K_RSP : K_RBP) | (uint32_t)s->cfa_off << 11;
    if (s->rbp.how == OFFSET) {
        if (s->rbp.off % 8 || s->rbp.off < -1024 || s->rbp.off > 1016 || s->rbp.off == 0)
            return fail_info(HP_UW_RULE);
        info |= 4u | ((uint32_t)(uint8_t)(int8_t)(s->rbp.off / 8)) << 3;
    } else if (s->rbp.how != SAME) {
        return fail_info(HP_UW_RULE);
    }
    return info;
}

/* Rows being written: counted (out NULL) or stored, sorted by address. */
struct rows {
    struct row *out;
    uint32_t n, cap;
};

static void put_row(struct rows *r, uint64_t pc, uint32_t info)
{
    if (!r->out) {
        r->n++;
        return;
    }
    if (r->n && r->out[r->n - 1].pc == pc) {
        r->n--; /* a later rule at the same address wins */
    }
    if (r->n && r->out[r->n - 1].info == info)
        return;
    if (r->n < r->cap)
        r->out[r->n++] = (struct row){(uint32_t)pc, info};
}

/* A new FDE from pc on: rows of earlier, overlapping ones are cut, as
 * libunwind looks only at the last FDE that starts at or below an address. */
static void cut_rows(struct rows *r, uint64_t pc)
{
    if (r->out)
        while (r->n && r->out[r->n - 1].pc >= pc)
            r->n--;
}

static bool parse_cie(const uint8_t *at, const uint8_t *seg_lo, const uint8_t *seg_hi,
                      struct cie *out)
{
    struct cur c = {at, seg_hi, false};
    uint64_t len = rd(&c, 4);
    if (len == 0xffffffff)
        len = rd(&c, 8);
    if (c.bad || len > (uint64_t)(seg_hi - c.p) || at < seg_lo)
        return false;
    c.end = c.p + len;
    if (rd(&c, 4) != 0) /* a CIE's id */
        return false;
    uint8_t version = (uint8_t)rd(&c, 1);
    if (version != 1 && version != 3 && version != 4)
        return false;
    const char *aug = (const char *)c.p;
    size_t alen = 0;
    while (c.p + alen < c.end && aug[alen])
        alen++;
    if (c.p + alen >= c.end)
        return false;
    c.p += alen + 1;
    if (version == 4) {
        if (rd(&c, 1) != 8 || rd(&c, 1) != 0) /* address size, segment size */
            return false;
    }
    memset(out, 0, sizeof *out);
    out->at = at;
    out->caf = uleb(&c);
    out->daf = sleb(&c);
    uint64_t ra = version == 1 ? rd(&c, 1) : uleb(&c);
    if (ra != R_RA)
        return false;
    out->fde_enc = 0; /* absolute, 8 bytes */
    if (aug[0] == 'z') {
        out->z = true;
        uint64_t alen2 = uleb(&c);
        if (c.bad || alen2 > (uint64_t)(c.end - c.p))
            return false;
        struct cur a = {c.p, c.p + alen2, false};
        for (size_t i = 1; i < alen; i++) {
            switch (aug[i]) {
            case 'L':
                rd(&a, 1);
                break;
            case 'P': {
                uint8_t enc = (uint8_t)rd(&a, 1);
                rd_enc(&a, enc & 0x7f, 0, true); /* skipped, not followed */
                break;
            }
            case 'R':
                out->fde_enc = (uint8_t)rd(&a, 1);
                break;
            case 'S':
                out->signal = true;
                break;
            default:
                i = alen; /* unknown: the rest of the data is skipped by its length */
            }
        }
        if (a.bad)
            return false;
        c.p += alen2;
    } else if (aug[0]) {
        return false; /* "eh" and the like */
    }
    if (c.bad)
        return false;
    out->ins = c.p;
    out->ins_end = c.end;
    return true;
}

/* Runs a CFA program from *s: with rows NULL only to set the initial state
 * (the CIE's); else writing a row at each advance, for pc in [lo, hi). */
static bool run_cfa(struct cur *c, const struct cie *cie, struct state *s,
                    const struct state *initial, struct rows *rows, uint64_t bias, uint64_t lo,
                    uint64_t hi)
{
    enum { STACK = 8 };
    struct state saved[STACK];
    int depth = 0;
    uint64_t loc = lo;
    while (c->p < c->end && !c->bad) {
        uint8_t op = (uint8_t)rd(c, 1);
        uint64_t reg = 0, delta = 0;
        int64_t off = 0;
        bool advance = false;
        switch (op >> 6) {
        case 1:
            delta = (op & 0x3f) * cie->caf;
            advance = true;
            break;
        case 2: {
            struct rule *r = rule_of(s, op & 0x3f);
            off = (int64_t)uleb(c) * cie->daf;
            if (r)
                *r = (struct rule){OFFSET, off};
            continue;
        }
        case 3: {
            struct rule *r = rule_of(s, op & 0x3f);
            if (r && initial)
                *r = *rule_of((struct state *)initial, op & 0x3f);
            continue;
        }
        }
        if (!advance) {
            switch (op) {
            case 0x00: /* nop */
                break;
            case 0x01: { /* set_loc */
                uint64_t to = rd_enc(c, cie->fde_enc, 0, false);
                if (to < loc)
                    return false;
                delta = to - loc;
                advance = true;
                break;
            }
            case 0x02:
                delta = rd(c, 1) * cie->caf;
                advance = true;
                break;
            case 0x03:
                delta = rd(c, 2) * cie->caf;
                advance = true;
                break;
            case 0x04:
                delta = rd(c, 4) * cie->caf;
                advance = true;
                break;
            case 0x05:   /* offset_extended */
            case 0x14:   /* val_offset */
            case 0x2f: { /* GNU_negative_offset_extended */
                reg = uleb(c);
                off = (int64_t)uleb(c) * cie->daf;
                struct rule *r = rule_of(s, reg);
                if (r)
                    *r = (struct rule){op == 0x14 ? OTHER : OFFSET, op == 0x2f ? -off : off};
                break;
            }
            case 0x11:   /* offset_extended_sf */
            case 0x15: { /* val_offset_sf */
                reg = uleb(c);
                off = sleb(c) * cie->daf;
                struct rule *r = rule_of(s, reg);
                if (r)
                    *r = (struct rule){op == 0x15 ? OTHER : OFFSET, off};
                break;
            }
            case 0x06: { /* restore_extended */
                reg = uleb(c);
                struct rule *r = rule_of(s, reg);
                if (r && initial)
                    *r = *rule_of((struct state *)initial, reg);
                break;
            }
            case 0x07:   /* undefined */
            case 0x08: { /* same_value */
                reg = uleb(c);
                struct rule *r = rule_of(s, reg);
                if (r)
                    *r = (struct rule){op == 0x07 ? UNDEF : SAME, 0};
                break;
            }
            case 0x09: { /* register */
                reg = uleb(c);
                uleb(c);
                struct rule *r = rule_of(s, reg);
                if (r)
                    *r = (struct rule){OTHER, 0};
                break;
            }
            case 0x0a: /* remember_state */
                if (depth == STACK)
                    return false;
                saved[depth++] = *s;
                break;
            case 0x0b: /* restore_state */
                if (depth == 0)
                    return false;
                *s = saved[--depth];
                break;
            case 0x0c: /* def_cfa */
                s->cfa_reg = (uint8_t)(reg = uleb(c));
                if (reg > 255)
                    s->cfa_reg = 255;
                s->cfa_off = (int64_t)uleb(c);
                s->cfa_expr = false;
                break;
            case 0x12: /* def_cfa_sf */
                s->cfa_reg = (uint8_t)(reg = uleb(c));
                if (reg > 255)
                    s->cfa_reg = 255;
                s->cfa_off = sleb(c) * cie->daf;
                s->cfa_expr = false;
                break;
            case 0x0d: /* def_cfa_register */
                s->cfa_reg = (uint8_t)(reg = uleb(c));
                if (reg > 255)
                    s->cfa_reg = 255;
                break;
            case 0x0e: /* def_cfa_offset */
                s->cfa_off = (int64_t)uleb(c);
                break;
            case 0x13: /* def_cfa_offset_sf */
                s->cfa_off = sleb(c) * cie->daf;
                break;
            case 0x0f: { /* def_cfa_expression */
                uint64_t n = uleb(c);
                if (n > (uint64_t)(c->end - c->p))
                    return false;
                c->p += n;
                s->cfa_expr = true;
                break;
            }
            case 0x10:   /* expression */
            case 0x16: { /* val_expression */
                reg = uleb(c);
                uint64_t n = uleb(c);
                if (n > (uint64_t)(c->end - c->p))
                    return false;
                c->p += n;
                struct rule *r = rule_of(s, reg);
                if (r)
                    *r = (struct rule){OTHER, 0};
                else
                    s->other_bad = true;
                break;
            }
            case 0x2e: /* GNU_args_size */
                uleb(c);
                break;
            default:
                return false;
            }
        }
        if (advance && rows) {
            uint64_t to = loc + delta;
            if (to > loc && loc < hi)
                put_row(rows, loc - bias, info_of(s, cie->signal));
            loc = to;
            if (loc >= hi)
                return !c->bad;
        }
    }
    if (c->bad)
        return false;
    if (rows && loc < hi)
        put_row(rows, loc - bias, info_of(s, cie->signal));
    return true;
}

/* Every FDE of the module, in address order from .eh_frame_hdr's table,
 * into rows. */
static bool walk_fdes(const struct mod *m, struct rows *rows)
{
    struct cur h = {(const uint8_t *)m->hdr, (const uint8_t *)m->hdr + m->hdr_len, false};
    if (rd(&h, 1) != 1)
        return false;
    uint8_t ptr_enc = (uint8_t)rd(&h, 1), count_enc = (uint8_t)rd(&h, 1);
    uint8_t table_enc = (uint8_t)rd(&h, 1);
    uint64_t eh_frame = rd_enc(&h, ptr_enc, m->hdr, false);
    uint64_t count = rd_enc(&h, count_enc, m->hdr, false);
    if (h.bad || table_enc != 0x3b || count > (uint64_t)(h.end - h.p) / 8)
        return false;
    /* .eh_frame's bounds: the loaded segment that holds it. */
    const uint8_t *seg_lo = NULL, *seg_hi = NULL;
    for (int i = 0; i < m->phnum; i++) {
        const ElfW(Phdr) *ph = &m->phdr[i];
        uintptr_t lo = m->bias + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && eh_frame >= lo && eh_frame < lo + ph->p_filesz) {
            seg_lo = (const uint8_t *)lo;
            seg_hi = (const uint8_t *)(lo + ph->p_filesz);
        }
    }
    if (!seg_lo)
        return false;
    const int32_t *table = (const int32_t *)h.p;
    struct cie cie = {0};
    struct state initial;
    for (uint64_t i = 0; i < count; i++) {
        int32_t e[2];
        memcpy(e, &table[2 * i], sizeof e);
        const uint8_t *fde = (const uint8_t *)(m->hdr + (intptr_t)e[1]);
        if (fde < seg_lo || fde >= seg_hi)
            return false;
        struct cur c = {fde, seg_hi, false};
        uint64_t len = rd(&c, 4);
        if (len == 0xffffffff)
            len = rd(&c, 8);
        if (c.bad || len > (uint64_t)(seg_hi - c.p) || len < 4)
            return false;
        c.end = c.p + len;
        const uint8_t *idp = c.p;
        uint32_t cie_off = (uint32_t)rd(&c, 4);
        if (cie_off == 0 || cie_off > (uintptr_t)(idp - seg_lo))
            return false; /* a CIE where an FDE was promised, or out of bounds */
        const uint8_t *cie_at = idp - cie_off;
        if (cie.at != cie_at) {
            if (!parse_cie(cie_at, seg_lo, seg_hi, &cie))
                return false;
            memset(&initial, 0, sizeof initial);
            initial.cfa_reg = 255;
            struct cur ci = {cie.ins, cie.ins_end, false};
            if (!run_cfa(&ci, &cie, &initial, NULL, NULL, 0, 0, 0)) {
                cie.at = NULL;
                return false;
            }
        }
        uint64_t start = rd_enc(&c, cie.fde_enc, 0, false);
        uint64_t range = rd_enc(&c, cie.fde_enc, 0, true);
        if (cie.z) {
            uint64_t alen = uleb(&c);
            if (alen > (uint64_t)(c.end - c.p))
                return false;
            c.p += alen;
        }
        if (c.bad)
            return false;
        /* An FDE outside what 32-bit offsets reach is left out: its
         * addresses then fall after the previous FDE's end, and fail. */
        if (start < m->bias || start - m->bias + range > UINT32_MAX)
            continue;
        cut_rows(rows, start - m->bias);
        struct state s = initial;
        if (!run_cfa(&c, &cie, &s, &initial, rows, m->bias, start, start + range)) {
            cut_rows(rows, start - m->bias);
            put_row(rows, start - m->bias, fail_info(HP_UW_RULE));
        }
        put_row(rows, start + range - m->bias, fail_info(HP_UW_ROW));
    }
    return true;
}

/* Under mods_lock, with no dlclose under way (hp_unwind_closing waits for
 * the lock): the module's .eh_frame stays mapped while it is read. Counted
 * first, then written. */
static void build(struct mod *m)
{
    struct rows count = {0};
    size_t bytes = 0;
    struct rows fill = {0};
    if (m->hdr && walk_fdes(m, &count) && count.n) {
        bytes = (size_t)count.n * sizeof(struct row);
        fill = (struct rows){uw_alloc(bytes), 0, count.n};
    }
    if (!fill.out || !walk_fdes(m, &fill)) {
        uw_free(fill.out, bytes);
        m->state = NONE;
        return;
    }
    m->nrows = fill.n;
    m->bytes = bytes;
    __atomic_store_n(&m->rows, fill.out, __ATOMIC_RELEASE);
    m->state = BUILT;
}

/* ---- modules ---- */

struct scan {
    struct mod *found; /* filled in when not NULL */
    int n, cap;
    unsigned long long adds, subs;
};

static int scan_one(struct dl_phdr_info *info, size_t size, void *data)
{
    struct scan *s = data;
    if (s->n == 0 && size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        s->adds = info->dlpi_adds;
        s->subs = info->dlpi_subs;
    }
    if (s->cap < 0)
        return 1; /* only the counts were wanted */
    struct mod m = {.bias = info->dlpi_addr, .phdr = info->dlpi_phdr, .phnum = info->dlpi_phnum};
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && ph->p_memsz) {
            if (!m.lo || lo < m.lo)
                m.lo = lo;
            if (lo + ph->p_memsz > m.hi)
                m.hi = lo + ph->p_memsz;
        } else if (ph->p_type == PT_GNU_EH_FRAME) {
            m.hdr = lo;
            m.hdr_len = ph->p_memsz;
        }
    }
    if (!m.hi)
        return 0;
    if (s->found && s->n < s->cap)
        s->found[s->n] = m;
    s->n++;
    return 0;
}

static bool same_mod(const struct mod *a, const struct mod *b)
{
    return a->bias == b->bias && a->phdr == b->phdr && a->phnum == b->phnum && a->lo == b->lo &&
           a->hi == b->hi && a->hdr == b->hdr;
}

static void retire_set(struct set *s)
{
    if (s) {
        s->retired_next = retired_sets;
        retired_sets = s;
    }
}

/* Frees what was retired, if no thread is inside a capture now. After the
 * barrier, a thread that marked itself active is seen so, or it reads the
 * new set (record/asym.c). Without the barrier nothing is freed until the
 * next try. Under mods_lock. */
static void reclaim(void)
{
    if (!retired_sets && !retired_mods)
        return;
    if (!hp_asym_heavy())
        return;
    for (struct uw_thread *t = __atomic_load_n(&all_threads, __ATOMIC_ACQUIRE); t; t = t->next_all)
        if (__atomic_load_n(&t->active, __ATOMIC_SEQ_CST))
            return;
    while (retired_sets) {
        struct set *s = retired_sets;
        retired_sets = s->retired_next;
        uw_free(s, s->size);
    }
    while (retired_mods) {
        struct mod *m = retired_mods;
        retired_mods = m->retired_next;
        uw_free(m->rows, m->bytes);
        uw_free(m, sizeof *m);
    }
}

/* A new set from the loader's list: modules already known keep their rows.
 * Inside the loader guard, under mods_lock. */
static void rescan(void)
{
    struct scan s = {0};
    hp_dl_iterate_phdr(scan_one, &s);
    int cap = s.n + 8;
    struct mod *found = hp_alloc((size_t)cap * sizeof *found);
    if (!found)
        return;
    s = (struct scan){found, 0, cap, 0, 0};
    hp_dl_iterate_phdr(scan_one, &s);
    int n = s.n < cap ? s.n : cap;
    size_t size = sizeof(struct set) + (size_t)n * sizeof(struct mod *);
    struct set *ns = uw_alloc(size);
    struct set *old = cur_set;
    if (!ns) {
        hp_free(found, (size_t)cap * sizeof *found);
        return;
    }
    ns->size = size;
    ns->adds = s.adds;
    ns->subs = s.subs;
    ns->gen = next_gen++;
    for (int i = 0; i < n; i++) {
        struct mod *m = NULL;
        for (int j = 0; old && j < old->n && !m; j++)
            if (old->mods[j] && same_mod(old->mods[j], &found[i]))
                m = old->mods[j];
        if (!m) {
            m = uw_alloc(sizeof *m);
            if (!m)
                continue;
            *m = found[i];
            m->state = NOT_BUILT;
        }
        ns->mods[ns->n++] = m;
    }
    hp_free(found, (size_t)cap * sizeof *found);
    /* By address: an insertion sort (a few hundred modules at most; qsort
     * may allocate). */
    for (int i = 1; i < ns->n; i++) {
        struct mod *m = ns->mods[i];
        int j = i;
        for (; j > 0 && ns->mods[j - 1]->lo > m->lo; j--)
            ns->mods[j] = ns->mods[j - 1];
        ns->mods[j] = m;
    }
    /* Modules of the old set not in the new one are gone. */
    for (int j = 0; old && j < old->n; j++) {
        bool kept = false;
        for (int i = 0; i < ns->n && !kept; i++)
            kept = ns->mods[i] == old->mods[j];
        if (!kept) {
            old->mods[j]->retired_next = retired_mods;
            retired_mods = old->mods[j];
        }
    }
    __atomic_store_n(&cur_set, ns, __ATOMIC_SEQ_CST);
    retire_set(old);
    reclaim();
}

/* Whether the loader's lists changed since the set was made. */
static bool loader_changed(const struct set *set)
{
    struct scan s = {NULL, 0, -1, 0, 0};
    hp_dl_iterate_phdr(scan_one, &s);
    return !set || s.adds != set->adds || s.subs != set->subs;
}

/* On the sampled path: never waits for the lock. */
static void try_rescan(bool only_if_changed)
{
    hp_loader_enter();
    if (spin_try(&mods_lock)) {
        struct set *set = __atomic_load_n(&cur_set, __ATOMIC_ACQUIRE);
        if (!__atomic_load_n(&closing, __ATOMIC_ACQUIRE) &&
            (!set || !only_if_changed || loader_changed(set)))
            rescan();
        spin_drop(&mods_lock);
    }
    hp_loader_leave();
}

void hp_unwind_opened(void)
{
    __atomic_store_n(&opened, 1, __ATOMIC_RELEASE);
}

void hp_unwind_closing(void)
{
    /* Under the lock: a table being built reads the module's .eh_frame,
     * which the real dlclose may unmap. */
    spin_take(&mods_lock);
    __atomic_fetch_add(&closing, 1, __ATOMIC_SEQ_CST);
    spin_drop(&mods_lock);
}

void hp_unwind_closed(void)
{
    /* Inside dlclose's loader guard already; rows of a module that went
     * are retired before any capture may read the set again. */
    if (__atomic_load_n(&cur_set, __ATOMIC_ACQUIRE)) {
        hp_loader_enter();
        spin_take(&mods_lock);
        rescan();
        spin_drop(&mods_lock);
        hp_loader_leave();
    }
    __atomic_fetch_sub(&closing, 1, __ATOMIC_SEQ_CST);
}

void hp_unwind_child(void)
{
    /* Only this thread lives on: the others' blocks are free again. */
    mods_lock = 0;
    threads_lock = 0;
    closing = 0;
    for (struct uw_thread *t = all_threads; t; t = t->next_all) {
        if (t == me)
            continue;
        t->active = 0;
        if (t->in_use) {
            t->in_use = false;
            for (int i = 0; i <= HP_UW_REASONS; i++) {
                exited[i] += t->count[i];
                t->count[i] = 0;
            }
            t->next_free = free_threads;
            free_threads = t;
        }
    }
}

/* ---- the walk ---- */

static struct mod *find_mod(const struct set *set, uintptr_t pc)
{
    int lo = 0, hi = set->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (set->mods[mid]->lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    struct mod *m = set->mods[lo - 1];
    return pc < m->hi ? m : NULL;
}

/* The rule for the frame that returns to ret, without the cache. */
static __attribute__((noinline)) uint32_t lookup_slow(const struct set *set, uintptr_t ret,
                                                      bool *cacheable)
{
    uintptr_t pc = ret - 1; /* the call, not what follows it */
    struct mod *m = find_mod(set, pc);
    *cacheable = false;
    if (!m)
        return fail_info(HP_UW_MODULE);
    struct row *rows = __atomic_load_n(&m->rows, __ATOMIC_ACQUIRE);
    if (!rows) {
        if (__atomic_load_n(&m->state, __ATOMIC_RELAXED) == NONE) {
            *cacheable = true;
            return fail_info(HP_UW_TABLE);
        }
        /* Built by the first capture that needs it; another thread
         * building meanwhile, or a dlclose, sends this one to libunwind. */
        if (!spin_try(&mods_lock))
            return fail_info(HP_UW_BUSY);
        if (__atomic_load_n(&closing, __ATOMIC_SEQ_CST) ||
            __atomic_load_n(&cur_set, __ATOMIC_ACQUIRE) != set) {
            spin_drop(&mods_lock);
            return fail_info(HP_UW_BUSY);
        }
        if (m->state == NOT_BUILT)
            build(m);
        spin_drop(&mods_lock);
        rows = __atomic_load_n(&m->rows, __ATOMIC_ACQUIRE);
        if (!rows) {
            *cacheable = true;
            return fail_info(HP_UW_TABLE);
        }
    }
    *cacheable = true;
    uint64_t off = pc - m->bias;
    uint32_t lo = 0, hi = m->nrows;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (rows[mid].pc <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? fail_info(HP_UW_ROW) : rows[lo - 1].info;
}

/* The registers of the caller, as they are at its call of this stub: the
 * return address, the stack pointer after the return, and rbp. */
struct regs {
    uintptr_t ip, sp, bp;
};
void hp_unwind_here(struct regs *out);
__asm__(".text\n"
        ".globl hp_unwind_here\n"
        ".hidden hp_unwind_here\n"
        ".type hp_unwind_here, @function\n"
        "hp_unwind_here:\n"
        ".cfi_startproc\n"
        "    movq (%rsp), %rax\n"
        "    movq %rax, 0(%rdi)\n"
        "    leaq 8(%rsp), %rax\n"
        "    movq %rax, 8(%rdi)\n"
        "    movq %rbp, 16(%rdi)\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size hp_unwind_here, .-hp_unwind_here\n");

/* The slot's byte offset: two shifts and an xor, not a multiply, as it
 * lies on the chain of dependent loads. */
static inline uintptr_t slot_at(uintptr_t pc)
{
    return ((pc ^ (pc >> CACHE_BITS)) & (CACHE - 1)) * sizeof(struct slot);
}

static void fill(struct slot *s, uintptr_t pc, uint32_t info)
{
    s->pc = pc;
    s->next = 0;
    s->kind = info & 3;
    s->why = (uint8_t)(info >> 2);
    s->cfa = (int32_t)(info >> 11);
    s->rbp = info & 4 ? (int16_t)((int8_t)(info >> 3) * 8) : 0;
}

/* The first step of m from which every word m read still holds the same
 * value (see struct memo): from a state of m at or above it, the walk
 * would find m's frames. Read from the top down, to the first word that
 * changed; m->n if the last read did. Every address was read by m's walk,
 * on this thread's stack below the same top: mapped still, whatever it
 * holds now (a block passed to another thread starts with no record). */
static int memo_floor(const struct memo *m, uintptr_t lo)
{
    if (m->end_at && *(const uintptr_t *)m->end_at != m->end_val)
        return m->n;
    int i = m->n - 1;
    uintptr_t at = m->st[i].bpat;
    if (at && at < lo)
        return m->n;
    for (i--; i >= 0; i--) {
        const struct step *up = &m->st[i + 1];
        if (*(const uintptr_t *)(up->sp - 8) != up->ip)
            break;
        at = m->st[i].bpat;
        if (at && (at < lo || *(const uintptr_t *)at != up->bp))
            break;
    }
    return i + 1;
}

static int walk(struct uw_thread *t, const struct set *set, void **ips, int max, uintptr_t lo,
                uintptr_t hi, bool nested)
{
    struct regs r;
    hp_unwind_here(&r);
    uintptr_t ip = r.ip, sp = r.sp, bp = r.bp;
    if (sp < lo || sp >= hi)
        return -HP_UW_STACK - 1;
    lo = sp;
    if (HP_UNLIKELY(t->gen != set->gen)) {
        memset(t->cache, 0, CACHE * sizeof(struct slot));
        t->gen = set->gen;
    }
    /* The last walk (none in a capture that interrupted another: a signal
     * handler's), and this one's record. */
    const struct memo *old = &t->memo[t->last];
    struct memo *m = nested ? &t->memo[2] : &t->memo[t->last ^ 1];
    int oj = 0, on = nested || old->gen != set->gen || old->hi != hi ? 0 : old->n;
    int floor = -1; /* memo_floor(old), once a state of old is reached */
    char *cache = (char *)t->cache;
    if (max > MEMO)
        max = MEMO; /* the record's room (stack.c asks for MEMO) */
    int n = 0;
    ips[n++] = (void *)ip;
    struct slot *s = (struct slot *)(cache + slot_at(ip));
    m->end_at = 0;
    while (n < max) {
        int k = n - 1;
        struct step *here = &m->st[k];
        *here = (struct step){ip, sp, bp, 0};
        /* A state of the last walk (its stack pointers grow, as these do)? */
        while (oj < on && old->st[oj].sp < sp)
            oj++;
        if (oj < on && old->st[oj].sp == sp && old->st[oj].ip == ip && old->st[oj].bp == bp) {
            int more = on - oj;
            if (floor < 0)
                floor = memo_floor(old, lo);
            if (oj >= floor && n - 1 + more <= max) {
                for (int i = 1; i < more; i++) {
                    here[i] = old->st[oj + i];
                    ips[k + i] = (void *)old->st[oj + i].ip;
                }
                m->end_at = old->end_at;
                m->end_val = old->end_val;
                n = k + more;
                goto done;
            }
        }
        if (HP_UNLIKELY(s->pc != ip)) {
            bool cacheable;
            uint32_t info = lookup_slow(set, ip, &cacheable);
            if (!cacheable)
                return -(int)(info >> 2) - 1;
            fill(s, ip, info);
        }
        if (HP_UNLIKELY(s->kind != K_RSP)) {
            if (s->kind == K_FAIL)
                return -(int)s->why - 1;
            if (s->kind == K_END)
                goto done;
        }
        uintptr_t cfa = (s->kind == K_RSP ? sp : bp) + (uintptr_t)(intptr_t)s->cfa;
        /* The return address at cfa - 8, rbp maybe below: all of it above
         * where this walk began and below the stack's top; and every frame
         * above the last, so the walk ends. */
        if (HP_UNLIKELY(cfa < sp + 8 || cfa > hi))
            return -HP_UW_BOUNDS - 1;
        uintptr_t ret = *(const uintptr_t *)(cfa - 8);
        if (s->rbp) {
            uintptr_t at = cfa + (uintptr_t)(intptr_t)s->rbp;
            if (HP_UNLIKELY(at < lo || at > hi - 8))
                return -HP_UW_BOUNDS - 1;
            bp = *(const uintptr_t *)at;
            here->bpat = at;
        }
        sp = cfa;
        if (HP_UNLIKELY(ret < 0x4000)) { /* libunwind stops there too */
            m->end_at = cfa - 8;
            m->end_val = ret;
            goto done;
        }
        ips[n++] = (void *)ret;
        /* The next slot from the prediction: the load need not wait for
         * ret unless the prediction was wrong. */
        uintptr_t next = s->next;
        struct slot *ns = (struct slot *)(cache + slot_at(next));
        if (HP_UNLIKELY(next != ret)) {
            s->next = ret;
            next = ret;
            ns = (struct slot *)(cache + slot_at(ret));
        }
        ip = next;
        s = ns;
    }
    return n; /* cut at max: not a whole walk, the last one stays */
done:
    if (!nested) {
        m->n = n;
        m->gen = set->gen;
        m->hi = hi;
        t->last ^= 1;
    }
    return n;
}

int hp_unwind_capture(void **ips, int max)
{
    uintptr_t lo, hi;
    /* The first time on a thread, glibc allocates (pthread_getattr_np, and
     * pthread_setspecific past 32 keys). */
    bool was = hp_busy_enter();
    struct uw_thread *t = thread_block();
    bool known = t && hp_threads_bounds(&lo, &hi);
    hp_busy_leave(was);
    if (!known) {
        hp_unwind_count(HP_UW_STACK);
        return -1;
    }
    /* The set is made at the first capture, and again after a dlopen, so
     * that a plugin's first stacks do not miss it. */
    if (HP_UNLIKELY(!__atomic_load_n(&cur_set, __ATOMIC_ACQUIRE) ||
                    __atomic_load_n(&opened, __ATOMIC_RELAXED))) {
        __atomic_store_n(&opened, 0, __ATOMIC_RELAXED);
        try_rescan(false);
    }
    /* Ordered for the compiler only: reclaim makes every CPU pass a
     * barrier before it reads the flags (record/asym.c). A signal handler's
     * capture between the load and the store puts the flag back as it
     * found it. */
    int was_active = __atomic_load_n(&t->active, __ATOMIC_RELAXED);
    __atomic_store_n(&t->active, 1, __ATOMIC_RELAXED);
    hp_asym_light();
    const struct set *set = __atomic_load_n(&cur_set, __ATOMIC_ACQUIRE);
    int n;
    if (!set || __atomic_load_n(&closing, __ATOMIC_RELAXED))
        n = -HP_UW_BUSY - 1;
    else
        n = walk(t, set, ips, max, lo, hi, was_active != 0);
    if (!was_active)
        __atomic_store_n(&t->active, 0, __ATOMIC_RELEASE);
    if (HP_LIKELY(n >= 0)) {
        count_local(t, HP_UW_REASONS);
        return n;
    }
    int reason = -n - 1;
    count_local(t, reason);
    if (reason == HP_UW_MODULE)
        try_rescan(true); /* something loaded since? the next capture has it */
    return -1;
}

void hp_unwind_count(int reason)
{
    struct uw_thread *t = thread_block();
    if (t)
        count_local(t, reason);
    else
        __atomic_fetch_add(&exited[reason], 1, __ATOMIC_RELAXED);
}

void hp_unwind_compared(void *const *fast, int nfast, void *const *slow, int nslow)
{
    __atomic_fetch_add(&compared, 1, __ATOMIC_RELAXED);
    int i = 0;
    while (i < nfast && i < nslow && fast[i] == slow[i])
        i++;
    if (i == nfast && i == nslow)
        return;
    uint64_t k = __atomic_fetch_add(&mismatches, 1, __ATOMIC_RELAXED);
    if (k < 5)
        hp_log("heapprof: unwinder check: stacks differ at frame %d of %d/%d: fast %p, "
               "libunwind %p",
               i, nfast, nslow, i < nfast ? fast[i] : NULL, i < nslow ? slow[i] : NULL);
}

/* ---- counts ---- */

static const char *const reason_names[HP_UW_REASONS] = {
    "foreign stack", "no module", "no table", "busy", "no FDE", "rule", "signal frame", "bounds",
};

const char *hp_unwind_reason(int reason)
{
    return reason >= 0 && reason < HP_UW_REASONS ? reason_names[reason] : "?";
}

void hp_unwind_stats(struct hp_unwind_stats *out)
{
    memset(out, 0, sizeof *out);
    out->mode = hp_unwind_mode;
    uint64_t c[HP_UW_REASONS + 1];
    for (int i = 0; i <= HP_UW_REASONS; i++)
        c[i] = __atomic_load_n(&exited[i], __ATOMIC_RELAXED);
    for (struct uw_thread *t = __atomic_load_n(&all_threads, __ATOMIC_ACQUIRE); t; t = t->next_all)
        for (int i = 0; i <= HP_UW_REASONS; i++)
            c[i] += __atomic_load_n(&t->count[i], __ATOMIC_RELAXED);
    out->fast = c[HP_UW_REASONS];
    memcpy(out->fallback, c, sizeof out->fallback);
    out->compared = __atomic_load_n(&compared, __ATOMIC_RELAXED);
    out->mismatches = __atomic_load_n(&mismatches, __ATOMIC_RELAXED);
    out->bytes = __atomic_load_n(&uw_bytes, __ATOMIC_RELAXED);
    /* The set may be retired meanwhile: read under the lock. */
    spin_take(&mods_lock);
    const struct set *set = cur_set;
    if (set) {
        out->modules = (uint32_t)set->n;
        for (int i = 0; i < set->n; i++)
            out->tables += set->mods[i]->state == BUILT;
    }
    spin_drop(&mods_lock);
}

void hp_unwind_exit_report(void)
{
    if (hp_unwind_mode != HP_UNWIND_CHECK)
        return;
    struct hp_unwind_stats s;
    hp_unwind_stats(&s);
    uint64_t fb = 0;
    for (int i = 0; i < HP_UW_REASONS; i++)
        fb += s.fallback[i];
    hp_log("heapprof: unwinder check: %llu captures, %llu fast, %llu compared, %llu mismatches; "
           "libunwind: %llu (foreign stack %llu, no module %llu, no table %llu, busy %llu, "
           "no FDE %llu, rule %llu, signal frame %llu, bounds %llu); %u of %u modules tabled, "
           "%zu KiB",
           (unsigned long long)(s.fast + fb), (unsigned long long)s.fast,
           (unsigned long long)s.compared, (unsigned long long)s.mismatches, (unsigned long long)fb,
           (unsigned long long)s.fallback[HP_UW_STACK],
           (unsigned long long)s.fallback[HP_UW_MODULE],
           (unsigned long long)s.fallback[HP_UW_TABLE], (unsigned long long)s.fallback[HP_UW_BUSY],
           (unsigned long long)s.fallback[HP_UW_ROW], (unsigned long long)s.fallback[HP_UW_RULE],
           (unsigned long long)s.fallback[HP_UW_SIGNAL],
           (unsigned long long)s.fallback[HP_UW_BOUNDS], s.tables, s.modules, s.bytes >> 10);
}
