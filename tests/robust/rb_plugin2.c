/* rb_plugin2: a second library for the dlopen tests (robust.py, check
 * dlopen-reuse). rb_dlopen loads it after dlclosing rb_plugin, so the loader
 * tends to map it where rb_plugin was: the same addresses then mean other
 * code, and each leak must keep the name of the function that made it.
 *
 *   other_leak   3 x malloc(900), returned in an array of its own
 *                (malloc(24)); never freed by the caller.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

void **other_leak(void);

/* Padding, so that other_leak does not start where plugin_leak did. */
__attribute__((noinline, used)) static int pad(int x)
{
    int y = 0;
    for (int i = 0; i < x; i++)
        y += i * x ^ (y >> 3);
    return y;
}

__attribute__((noinline)) void **other_leak(void)
{
    void **blocks = malloc(3 * sizeof(void *));
    if (!blocks)
        return NULL;
    for (int i = 0; i < 3; i++) {
        blocks[i] = malloc(900);
        if (blocks[i])
            memset(blocks[i], pad(i), 900);
    }
    return blocks;
}
