/* rb_plugin: a library the robustness tests dlopen and dlclose
 * (robust.py, checks dlopen-* and stress).
 *
 *   plugin_leak   4 x malloc(700) and returns them in an array of its own
 *                 (malloc(32)); the caller never frees any of it, so all five
 *                 blocks are leaks whose stacks end in this library, which the
 *                 caller dlcloses before exit.
 *   plugin_churn  allocates and frees; leaves nothing behind.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

void **plugin_leak(void);
unsigned plugin_churn(unsigned n);

__attribute__((noinline)) void **plugin_leak(void)
{
    void **blocks = malloc(4 * sizeof *blocks);
    if (!blocks)
        return NULL;
    for (int i = 0; i < 4; i++) {
        blocks[i] = malloc(700);
        if (blocks[i])
            memset(blocks[i], i, 700);
    }
    return blocks;
}

__attribute__((noinline)) unsigned plugin_churn(unsigned n)
{
    unsigned sum = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned char *p = malloc(32 + i % 512);
        if (!p)
            continue;
        memset(p, (int)i, 32);
        sum += p[31];
        unsigned char *q = realloc(p, 1024);
        if (q)
            p = q;
        free(p);
    }
    return sum;
}
