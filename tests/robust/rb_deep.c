/* rb_deep: a plugin that rb_heads dlopens with RTLD_DEEPBIND, so that its
 * free is the allocator's own, looked up before heapprof's. */
#include <stdlib.h>

void rb_deep_free(void *p);
void *rb_deep_realloc(void *p, size_t size);

void rb_deep_free(void *p)
{
    free(p);
}

void *rb_deep_realloc(void *p, size_t size)
{
    return realloc(p, size);
}
