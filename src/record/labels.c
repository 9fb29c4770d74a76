/* Who allocated it: the thread's name and the labels the program pushed,
 * as one interned label set per distinct combination, part of a bucket's
 * key (table.c).
 *
 * Each thread keeps the labels it pushed (heapprof_label_push, pop) and
 * the number of the label set they make with its name. The sampled path
 * asks for that number (hp_labels_current): while the thread pushed or
 * popped nothing and no thread was renamed, that is two comparisons. A
 * rename is noticed through a process-wide count that heapprof's
 * pthread_setname_np and prctl(PR_SET_NAME) bump; the thread then reads its
 * name again (one prctl), at its next sample only. A name changed by
 * writing /proc/self/task/TID/comm is not noticed until another rename.
 *
 * Label sets are never freed: a set is a few strings, and there are as many
 * as distinct (thread name, labels) combinations were sampled. They count
 * against a budget of their own, an eighth of HEAPPROF_MAX_MEMORY and at
 * most 65535 sets; past it, allocations carry their thread name only, or
 * no label at all, and the table says so once on stderr.
 */
#define _GNU_SOURCE
#include "record.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>

enum { MAX_SETS = 65535, SET_INDEX_BITS = 17 };

struct pushed {
    char key[HEAPPROF_LABEL_KEY_MAX + 1];
    char value[HEAPPROF_LABEL_VALUE_MAX + 1];
};

/* Per thread; the pushed labels live in the profiler's memory, made at the
 * first push. */
struct label_thread {
    struct pushed *stack; /* HEAPPROF_LABELS_MAX entries */
    int depth;            /* pushes not yet popped, failed ones included */
    int held;             /* of those, the ones kept in stack */
    bool dirty;           /* pushed or popped since set was found */
    bool named;           /* name read at generation name_gen */
    uint32_t name_gen;
    uint32_t set;
    char name[16];
};
static HP_TLS struct label_thread lt;

static uint32_t rename_gen;
static pthread_mutex_t sets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hp_labelset *sets[MAX_SETS + 1]; /* by number; 0: no labels */
static uint32_t nsets = 1;
static uint32_t set_index[1u << SET_INDEX_BITS]; /* open addressing, by hash */
static size_t sets_bytes;
static bool sets_full;

void hp_labels_renamed(void)
{
    __atomic_add_fetch(&rename_gen, 1, __ATOMIC_RELEASE);
}

const struct hp_labelset *hp_labelset_at(uint32_t id)
{
    return id && id < MAX_SETS + 1 ? __atomic_load_n(&sets[id], __ATOMIC_ACQUIRE) : NULL;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull; /* a separator */
}

static bool same_set(const struct hp_labelset *a, const char *thread, const char *const *kv, int n)
{
    if (a->n != n || strcmp(a->thread ? a->thread : "", thread ? thread : ""))
        return false;
    for (int i = 0; i < 2 * n; i++)
        if (strcmp(a->kv[i], kv[i]))
            return false;
    return true;
}

/* The number of the set (thread, kv[0..2n)), made if new; 0 when the
 * budget is spent. Under sets_lock. */
static uint32_t intern(const char *thread, const char *const *kv, int n)
{
    uint64_t h = hash_str(0xcbf29ce484222325ull, thread ? thread : "");
    for (int i = 0; i < 2 * n; i++)
        h = hash_str(h, kv[i]);
    uint32_t mask = (1u << SET_INDEX_BITS) - 1;
    uint32_t i = (uint32_t)(h ^ (h >> 32)) & mask;
    for (; set_index[i]; i = (i + 1) & mask)
        if (same_set(sets[set_index[i]], thread, kv, n))
            return set_index[i];
    size_t len = sizeof(struct hp_labelset) + (size_t)(2 * n) * sizeof(char *);
    len += thread ? strlen(thread) + 1 : 0;
    for (int k = 0; k < 2 * n; k++)
        len += strlen(kv[k]) + 1;
    if (nsets > MAX_SETS || sets_bytes + len > hp_cfg.max_memory / 8)
        return 0;
    struct hp_labelset *s = hp_alloc(len);
    if (!s)
        return 0;
    sets_bytes += len;
    char *p = (char *)(s->kv + 2 * n);
    s->n = n;
    if (thread) {
        s->thread = strcpy(p, thread);
        p += strlen(thread) + 1;
    }
    for (int k = 0; k < 2 * n; k++) {
        s->kv[k] = strcpy(p, kv[k]);
        p += strlen(kv[k]) + 1;
    }
    uint32_t id = nsets++;
    s->id = id;
    /* Release: a reader of the number sees the set whole. */
    __atomic_store_n(&sets[id], s, __ATOMIC_RELEASE);
    set_index[i] = id;
    return id;
}

/* The labels in force: for each key, its most recent push; in the order of
 * their first push, so a set does not depend on how it was shadowed. */
static int effective(const char **kv)
{
    int n = 0;
    for (int i = 0; i < lt.held; i++) {
        int j = 0;
        while (j < n && strcmp(kv[2 * j], lt.stack[i].key))
            j++;
        kv[2 * j] = lt.stack[i].key;
        kv[2 * j + 1] = lt.stack[i].value;
        if (j == n)
            n++;
    }
    return n;
}

uint32_t hp_labels_current(void)
{
    uint32_t gen = __atomic_load_n(&rename_gen, __ATOMIC_ACQUIRE);
    if (HP_LIKELY(!lt.dirty && lt.named && lt.name_gen == gen))
        return lt.set;
    if (!lt.named || lt.name_gen != gen) {
        char name[17] = "";
        if (!hp_real.prctl || hp_real.prctl(PR_GET_NAME, (unsigned long)name, 0, 0, 0) != 0)
            name[0] = 0;
        memcpy(lt.name, name, sizeof lt.name);
        lt.name[sizeof lt.name - 1] = 0;
        lt.name_gen = gen;
        lt.named = true;
    }
    const char *kv[2 * HEAPPROF_LABELS_MAX] = {NULL};
    int n = effective(kv);
    hp_mutex_lock(&sets_lock);
    uint32_t id = intern(lt.name[0] ? lt.name : NULL, kv, n);
    if (!id && n)
        id = intern(lt.name[0] ? lt.name : NULL, kv, 0); /* the name alone */
    if (!id && !sets_full) {
        sets_full = true;
        hp_log("heapprof: the label sets reached their budget (%zu bytes or %d sets); new "
               "combinations of thread name and labels are counted with fewer labels",
               hp_cfg.max_memory / 8, MAX_SETS);
    }
    pthread_mutex_unlock(&sets_lock);
    lt.set = id;
    lt.dirty = false;
    return id;
}

void hp_labels_lock(void)
{
    hp_mutex_lock(&sets_lock);
}

void hp_labels_unlock(void)
{
    pthread_mutex_unlock(&sets_lock);
}

void hp_labels_child(void)
{
    pthread_mutex_init(&sets_lock, NULL);
}

int hp_labels_push(const char *key, const char *value)
{
    /* Every push is counted, so that the matching pop is always right;
     * one that fails changes nothing else. */
    lt.depth++;
    if (!key || !value || !*key)
        return -EINVAL;
    if (strlen(key) > HEAPPROF_LABEL_KEY_MAX || strlen(value) > HEAPPROF_LABEL_VALUE_MAX)
        return -ENAMETOOLONG;
    if (lt.held != lt.depth - 1 || lt.held >= HEAPPROF_LABELS_MAX)
        return -ENOSPC; /* under a failed push, or too many */
    if (!lt.stack) {
        bool was = hp_busy_begin();
        lt.stack = hp_alloc(HEAPPROF_LABELS_MAX * sizeof *lt.stack);
        hp_busy_end(was);
        if (!lt.stack)
            return -ENOMEM;
    }
    strcpy(lt.stack[lt.held].key, key);
    strcpy(lt.stack[lt.held].value, value);
    lt.held++;
    lt.dirty = true;
    return 0;
}

void hp_labels_pop(void)
{
    if (lt.depth == 0)
        return;
    if (lt.held == lt.depth) {
        lt.held--;
        lt.dirty = true;
    }
    lt.depth--;
}
