/* A plugin for uw_prog.c, loaded and unloaded again and again: it
 * allocates itself and calls back into the program, which allocates, so
 * stacks cross from the program into the plugin and back. */
#include <stdlib.h>

void uw_plugin_run(void (*cb)(int), int n);

static void *volatile sink;

__attribute__((noinline)) static void inner(void (*cb)(int), int n)
{
    void *p = malloc((size_t)n); /* a local: threads share sink */
    sink = p;
    free(p);
    cb(n);
}

void uw_plugin_run(void (*cb)(int), int n)
{
    for (int i = 0; i < n; i++)
        inner(cb, 8 + i);
}
