/* rb_late: a shared library whose destructor runs after heapprof's exit dump,
 * for the robustness tests (robust.py, check exit-late).
 *
 * When libheapprof.so is preloaded and a program links this library, the
 * loader runs this library's destructor after heapprof's (it was
 * initialised before heapprof). Allocations and frees made then, including
 * frees of blocks heapprof sampled, must not crash or hang. The destructor
 * says on stderr whether the profile already existed when it ran (the path
 * is in RB_PROFILE), so the test knows its premise held.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rb_late.h"

enum { KEPT = 4 };
static void *kept[KEPT];

static void *must(void *p)
{
    if (!p) {
        fputs("rb_late: out of memory\n", stderr);
        _exit(99);
    }
    return p;
}

__attribute__((noinline)) void late_keep(void)
{
    for (int i = 0; i < KEPT; i++) {
        kept[i] = must(malloc(512));
        memset(kept[i], 6, 512);
    }
}

__attribute__((destructor)) static void late_destructor(void)
{
    const char *profile = getenv("RB_PROFILE");
    bool after = profile && access(profile, F_OK) == 0;
    /* Frees of blocks allocated (and, in exact mode, sampled) before the dump. */
    for (int i = 0; i < KEPT; i++) {
        free(kept[i]);
        kept[i] = NULL;
    }
    /* New work after the dump: allocations, a realloc chain, frees. */
    for (int i = 0; i < 200; i++) {
        char *p = must(malloc(64 + (size_t)i));
        memset(p, 7, 64);
        char *q = must(realloc(p, 4096));
        free(q);
    }
    char *s = must(strdup("late"));
    free(s);
    dprintf(STDERR_FILENO, "rb_late: destructor ran %s the dump\n", after ? "after" : "before");
}
