/* What the machine charges for memory and the kernel, the costs a short
 * process and heapprof's tables pay: a page fault on first write, a page
 * mapped in advance (MAP_POPULATE), and a trivial system call.
 *
 * usage: pagefault [PAGES]   (default 1000)
 * Prints one line: fault_us=... populate_us=... syscall_us=... (medians of
 * five rounds, microseconds per page or per call).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long pages = argc > 1 ? atol(argv[1]) : 1000;
    if (pages < 1) {
        fprintf(stderr, "usage: %s [PAGES]\n", argv[0]);
        return 2;
    }
    size_t len = (size_t)pages * 4096;
    enum { ROUNDS = 5 };
    double fault[ROUNDS], populate[ROUNDS], call[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 1;
        double t = now_us();
        for (size_t i = 0; i < len; i += 4096)
            p[i] = 1;
        fault[r] = (now_us() - t) / (double)pages;
        munmap(p, len);
        t = now_us();
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1,
                 0);
        populate[r] = (now_us() - t) / (double)pages;
        if (p == MAP_FAILED)
            return 1;
        munmap(p, len);
        t = now_us();
        for (int i = 0; i < 1000; i++)
            syscall(SYS_getppid);
        call[r] = (now_us() - t) / 1000;
    }
    qsort(fault, ROUNDS, sizeof *fault, cmp);
    qsort(populate, ROUNDS, sizeof *populate, cmp);
    qsort(call, ROUNDS, sizeof *call, cmp);
    printf("fault_us=%.2f populate_us=%.2f syscall_us=%.2f\n", fault[ROUNDS / 2],
           populate[ROUNDS / 2], call[ROUNDS / 2]);
    return 0;
}
