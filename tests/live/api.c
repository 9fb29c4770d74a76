/* The public API (include/heapprof.h), linked: heapprof_enabled,
 * heapprof_rate, heapprof_dump (relative path), heapprof_snapshot and
 * heapprof_dump_peak. Prints one line per call with its result; the test
 * (test_live.py api) checks the lines and the files. With HEAPPROF unset
 * every call must report that profiling is off. */
#include "heapprof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *kept[16];

__attribute__((noinline)) static void api_site(void)
{
    for (int i = 0; i < 16; i++) {
        kept[i] = malloc(4096);
        memset(kept[i], i, 4096);
    }
}

int main(void)
{
    api_site();
    printf("enabled %d\n", heapprof_enabled());
    printf("rate %ld\n", heapprof_rate());
    printf("dump %d\n", heapprof_dump("api-dump.pb.gz"));
    printf("dump-empty %d\n", heapprof_dump(""));
    printf("snapshot %d\n", heapprof_snapshot());
    printf("snapshot %d\n", heapprof_snapshot());
    printf("peak %d\n", heapprof_dump_peak("api-peak.pb.gz"));
    printf("ENOTSUP %d EINVAL %d ENOENT %d\n", -ENOTSUP, -EINVAL, -ENOENT);
    for (int i = 0; i < 16; i++)
        free(kept[i]);
    return 0;
}
