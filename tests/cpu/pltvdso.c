/* pltvdso: CPU time in code that has no symbol of its own, for the CPU
 * profile test cpu-symbols (tests/cpu/test_cpu.py): PLT stubs and the vDSO.
 *
 * Three loops, each for SECONDS of the process's CPU time (so the split does
 * not depend on the machine's load), each in a function of its own:
 *   rand_loop   rand() in a tight loop: its calls go through rand@plt
 *   labs_loop   labs(), so cheap that its PLT stub holds a good share of
 *               the loop's time (about a tenth): labs@plt is sure to be
 *               sampled
 *   clock_loop  clock_gettime(CLOCK_MONOTONIC): the C library's wrapper,
 *               then the vDSO's __vdso_clock_gettime, where most of the time
 *               goes
 * Built with -fno-builtin, so that labs stays a call.
 *
 * usage: pltvdso [SECONDS]   (1 by default)
 * Output: "pltvdso: done".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile long sink;

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

__attribute__((noinline)) static void rand_loop(double s)
{
    double end = cpu_s() + s;
    do {
        for (int i = 0; i < 20000; i++)
            sink += rand();
    } while (cpu_s() < end);
}

__attribute__((noinline)) static void labs_loop(double s)
{
    double end = cpu_s() + s;
    volatile long x = -5;
    do {
        for (int i = 0; i < 100000; i++)
            sink += labs(x);
    } while (cpu_s() < end);
}

__attribute__((noinline)) static void clock_loop(double s)
{
    double end = cpu_s() + s;
    struct timespec t;
    do {
        for (int i = 0; i < 1000; i++) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            sink += t.tv_nsec;
        }
    } while (cpu_s() < end);
}

int main(int argc, char **argv)
{
    double s = argc > 1 ? atof(argv[1]) : 1.0;
    rand_loop(s);
    labs_loop(s);
    clock_loop(s);
    puts("pltvdso: done");
    return 0;
}
