/* A library dlopen'ed by `edges dlopen-ctor`: its constructor allocates an
 * object and drops it. memcheck and LSan: definitely lost (1909 bytes, from
 * lost_in_lib_ctor). */
#include <stdlib.h>
#include <string.h>

void *volatile edges_ctor_hold;

__attribute__((noinline)) void *lost_in_lib_ctor(void)
{
    return malloc(1909);
}

__attribute__((constructor)) static void lib_ctor(void)
{
    edges_ctor_hold = lost_in_lib_ctor();
    memset(edges_ctor_hold, 22, 1909);
    edges_ctor_hold = NULL;
}
