/* The public header compiles on its own, first, in C (and, as
 * header_alone.cpp, in C++), and its declarations link. */
#include "heapprof.h"

int main(void)
{
    /* Not run for its result: taking the addresses makes them link. */
    int (*dump)(const char *) = heapprof_dump;
    int (*snap)(void) = heapprof_snapshot;
    int (*peak)(const char *) = heapprof_dump_peak;
    bool (*on)(void) = heapprof_enabled;
    long (*rate)(void) = heapprof_rate;
    return !(dump && snap && peak && on && rate && HEAPPROF_VERSION_MAJOR >= 0);
}
