/* Inlined calls, built optimized with debug info (-O2 -g): the profile
 * must show each allocation's inlined frames, innermost first, with the
 * lines of their calls, as the DWARF says and addr2line -i reads it.
 *
 * grab() is inlined into pair(), pair() twice into site() (two concrete
 * copies, at the lines marked CALL_A and CALL_B), each call inside a block
 * with a variable of its own (a lexical scope between the frames). A
 * third copy of grab(), in rare(), sits on a path that calls a cold
 * function: GCC moves that path to .text.unlikely (rare.cold), so that
 * rare() has code in two places (DW_AT_ranges) and the inlined call lies
 * in the second.
 *
 * Truth, the lines marked in the source (GRAB, PAIR, CALL_A, CALL_B,
 * CALL_R): site() allocates 24 blocks of 40 bytes through CALL_A and 24 of
 * 72 through CALL_B; rare() 3 blocks of 520 through CALL_R. Every block is
 * kept (in use at exit). Prints "rb_inline: 51 blocks kept, " and a sum of
 * their first bytes; exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *kept[64];
static int nkept;
static volatile int sink, rare_on;

__attribute__((cold, noinline)) static void note_rare(int n)
{
    sink += n;
}

static inline __attribute__((always_inline)) void grab(size_t n)
{
    char *p = malloc(n); /* GRAB */
    memset(p, (int)n, n);
    kept[nkept++] = p;
}

static inline __attribute__((always_inline)) void pair(size_t n, int reps)
{
    for (int i = 0; i < reps; i++) {
        volatile int step = i;
        grab(n + (size_t)(step & 0)); /* PAIR */
    }
}

__attribute__((noinline)) static void site(int reps)
{
    {
        volatile int a = reps;
        pair(40, a); /* CALL_A */
    }
    {
        volatile int b = reps;
        pair(72, b); /* CALL_B */
    }
}

__attribute__((noinline)) static void rare(int n)
{
    for (int i = 0; i < n; i++) {
        sink += i;
        if (__builtin_expect(rare_on, 0)) {
            note_rare(i);
            grab(520); /* CALL_R */
        }
    }
}

int main(void)
{
    rare_on = 1;
    site(24);
    rare(3);
    /* Read every block, so that the stores to kept[] stay. */
    long sum = 0;
    for (int i = 0; i < nkept; i++)
        sum += ((unsigned char *)kept[i])[0];
    printf("rb_inline: %d blocks kept, %ld\n", nkept, sum);
    return 0;
}
