/* rb_alloc: the malloc family's failure cases, and a small well-behaved
 * program, for the robustness tests (tests/robust/robust.py, checks
 * alloc-failures, bad-*, unwritable-*, full-disk-*, symlink, setuid).
 *
 * Usage:
 *   rb_alloc failures  calls each entry point in ways that must fail (sizes
 *                      that overflow or cannot be had, bad alignments) and a
 *                      few edge cases that must not; prints one line per call
 *                      with the result and errno. The output must be the same
 *                      with and without heapprof.
 *   rb_alloc hello [C] allocates a little, leaks one block, prints `hello`
 *                      and the effective uid, exits with C (default 0).
 *                      Built as rb_alloc_linked (RB_LINKED), it also prints
 *                      `heapprof on|off` from heapprof_enabled().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef RB_LINKED
#include "heapprof.h"
#endif

/* Volatile so that the compiler neither folds the calls nor warns about
 * sizes it can see are too large: the calls must reach the allocator. */
static volatile size_t huge = SIZE_MAX;
static volatile size_t half = SIZE_MAX / 2 + 1;
static volatile size_t bad_align = 3;
static volatile size_t zero = 0;

static void *leaked;

/* Called through volatile pointers so that gcc's use-after-free analysis,
 * which assumes success, does not object to reading the block after a
 * realloc that is meant to fail. The calls still reach the interposed
 * functions. */
static void *(*volatile realloc_fn)(void *, size_t) = realloc;
static void *(*volatile reallocarray_fn)(void *, size_t, size_t) = reallocarray;

static const char *err_name(int e)
{
    switch (e) {
    case 0:
        return "0";
    case ENOMEM:
        return "ENOMEM";
    case EINVAL:
        return "EINVAL";
    default:
        return strerrorname_np(e) ? strerrorname_np(e) : "other";
    }
}

/* errno is set to a marker first, so "unchanged" shows as such. */
static void report_ptr(const char *what, void *p, int e)
{
    printf("%-36s %s errno=%s\n", what, p ? "ptr" : "NULL",
           e == EILSEQ ? "unchanged" : err_name(e));
}

#define CALL_PTR(what, expr)                                                                       \
    do {                                                                                           \
        errno = EILSEQ;                                                                            \
        void *r_ = (expr);                                                                         \
        int e_ = errno;                                                                            \
        report_ptr(what, r_, e_);                                                                  \
        free(r_);                                                                                  \
    } while (0)

static int failures(void)
{
    CALL_PTR("malloc(SIZE_MAX)", malloc(huge));
    CALL_PTR("malloc(SIZE_MAX/2+1)", malloc(half));
    CALL_PTR("calloc(SIZE_MAX/2+1, 2)", calloc(half, 2));
    CALL_PTR("calloc(2, SIZE_MAX/2+1)", calloc(2, half));
    CALL_PTR("calloc(1, SIZE_MAX)", calloc(1, huge));
    CALL_PTR("aligned_alloc(64, SIZE_MAX)", aligned_alloc(64, huge));
    CALL_PTR("aligned_alloc(3, 16)", aligned_alloc(bad_align, 16));
    CALL_PTR("memalign(64, SIZE_MAX)", memalign(64, huge));
    CALL_PTR("memalign(3, 16)", memalign(bad_align, 16));
    CALL_PTR("valloc(SIZE_MAX)", valloc(huge));
    CALL_PTR("pvalloc(SIZE_MAX)", pvalloc(huge));
    CALL_PTR("malloc(0)", malloc(zero));
    CALL_PTR("calloc(0, 0)", calloc(zero, zero));
    CALL_PTR("realloc(NULL, 0)", realloc(NULL, zero));
    CALL_PTR("reallocarray(NULL, SIZE_MAX/2+1, 2)", reallocarray(NULL, half, 2));

    /* A failed realloc leaves the block as it was. */
    char *p = malloc(100);
    if (!p)
        return 99;
    memset(p, 'x', 100);
    errno = EILSEQ;
    void *q = realloc_fn(p, huge);
    int e = errno;
    report_ptr("realloc(p, SIZE_MAX)", q, e);
    printf("%-36s %s\n", "  block intact", p[0] == 'x' && p[99] == 'x' ? "yes" : "no");
    errno = EILSEQ;
    q = reallocarray_fn(p, half, 2);
    e = errno;
    report_ptr("reallocarray(p, SIZE_MAX/2+1, 2)", q, e);
    printf("%-36s %s\n", "  block intact", p[0] == 'x' && p[99] == 'x' ? "yes" : "no");
    errno = EILSEQ;
    q = realloc_fn(p, zero); /* glibc frees p and returns NULL */
    e = errno;
    report_ptr("realloc(p, 0)", q, e);
    free(q);

    /* posix_memalign returns its error and leaves *out alone. */
    static const struct {
        const char *what;
        size_t align, size;
    } pm[] = {
        {"posix_memalign(3, 16)", 3, 16},
        {"posix_memalign(0, 16)", 0, 16},
        {"posix_memalign(4, 16)", 4, 16},
        {"posix_memalign(24, 16)", 24, 16},
        {"posix_memalign(64, SIZE_MAX)", 64, SIZE_MAX},
        {"posix_memalign(64, 0)", 64, 0},
        {"posix_memalign(4096, 100)", 4096, 100},
    };
    for (size_t i = 0; i < sizeof pm / sizeof pm[0]; i++) {
        void *out = &leaked; /* a marker value */
        errno = EILSEQ;
        int r = posix_memalign(&out, pm[i].align, pm[i].size == SIZE_MAX ? huge : pm[i].size);
        e = errno;
        printf("%-36s return=%s out=%s errno=%s\n", pm[i].what, err_name(r),
               out == &leaked ? "unchanged"
               : out          ? "ptr"
                              : "NULL",
               e == EILSEQ ? "unchanged" : err_name(e));
        if (r == 0)
            free(out);
    }
    /* Success must leave errno alone, sampled or not (every call is sampled
     * in exact mode), and so must free (POSIX 2024; glibc does). */
    errno = EILSEQ;
    p = malloc(1000);
    e = errno;
    report_ptr("malloc(1000)", p, e);
    errno = EILSEQ;
    free(p);
    printf("%-36s errno=%s\n", "free(p)", errno == EILSEQ ? "unchanged" : err_name(errno));
    errno = EILSEQ;
    p = calloc(10, 100);
    e = errno;
    report_ptr("calloc(10, 100)", p, e);
    errno = EILSEQ;
    q = realloc_fn(p, 5000);
    e = errno;
    report_ptr("realloc(p, 5000)", q, e);
    free(q ? q : p);
    printf("%-36s %zu\n", "malloc_usable_size(NULL)", malloc_usable_size(NULL));
    free(NULL);
    puts("free(NULL)                           ok");
    return 0;
}

static int hello(int code)
{
    char *name = strdup("hello");
    if (!name)
        return 99;
    for (int i = 0; i < 100; i++) {
        void *p = malloc(64 + (size_t)i);
        if (!p)
            return 99;
        memset(p, i, 64);
        free(p);
    }
    leaked = malloc(123);
    printf("%s euid %ld\n", name, (long)geteuid());
#ifdef RB_LINKED
    printf("heapprof %s\n", heapprof_enabled() ? "on" : "off");
#endif
    free(name);
    return code;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "failures"))
        return failures();
    if ((argc == 2 || argc == 3) && !strcmp(argv[1], "hello"))
        return hello(argc == 3 ? atoi(argv[2]) : 0);
    fputs("usage: rb_alloc failures | hello [CODE]\n", stderr);
    return 2;
}
