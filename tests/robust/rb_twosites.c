/* Two leaking call sites in one function, built without debug info (-g0):
 * once symbolized, both stacks read "two_sites in rb_twosites / main ...",
 * and the leak summary must still tell them apart (the call's offset in the
 * function). two_sites() leaks 8 blocks of 1000 bytes from its first call
 * and 4 blocks of 3000 bytes from its second; a third site, one_site(), leaks
 * one block of 1000 bytes and reads differently already. Exit status 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE __attribute__((noinline))

static void *kept[16];
static int nkept;

SITE static void two_sites(int i)
{
    char *a = malloc(1000);
    memset(a, 'a', 1000);
    kept[nkept++] = a;
    if (i % 2 == 0) {
        char *b = malloc(3000);
        memset(b, 'b', 3000);
        kept[nkept++] = b;
    }
}

SITE static void one_site(void)
{
    char *c = malloc(1000);
    memset(c, 'c', 1000);
    kept[nkept++] = c;
}

int main(void)
{
    for (int i = 0; i < 8; i++)
        two_sites(i);
    one_site();
    printf("rb_twosites: %d blocks kept\n", nkept);
    return 0;
}
