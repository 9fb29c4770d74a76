/* stale: lost objects whose pointers are left, stale, on the stack that
 * exit() then runs on (issue 19, class 6). A program of its own so that main
 * is small and allocates itself, as the end of many programs does: the
 * frames malloc used lie where exit()'s will be, and some of exit()'s slots
 * (one of __run_exit_handlers', seen with gdb) are never written before the
 * leak check reads them.
 *
 *   stale last  lost_last (1606 B, inlined into main): allocated, filled,
 *               dropped, then main returns.
 *               memcheck: definitely lost / LSan: direct leak / tested:
 *               definitely lost.
 *   stale list  lost_list_node: a doubly-linked list of 100000 nodes of 32
 *               bytes, built by build_list just before main returns, then
 *               dropped.
 *               memcheck: 32 bytes in 1 block definitely lost, 3,199,968
 *               bytes in 99,999 blocks indirectly lost / LSan: not reported
 *               (a stale copy on the stack it scans: with use_stacks=0 it
 *               reports all 3,200,000 bytes, as indirect leaks, a lost cycle
 *               having no direct one in LSan) / tested: memcheck's, as the
 *               issue asks: the program dropped the list.
 *
 * Truth from valgrind memcheck 3.19 and gcc 12's LSan (tests/leaks/edges/
 * truth.py; TRUTH.md has the runs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile hold;

/* Inlined: the allocation's own frames are just below main's. The leak
 * summary still names it, as an inlined frame. */
static inline __attribute__((always_inline)) void *lost_last(void)
{
    return malloc(1606);
}

struct dnode {
    struct dnode *prev, *next;
    long pad[2];
};

__attribute__((noinline)) struct dnode *lost_list_node(void)
{
    return malloc(sizeof(struct dnode));
}

__attribute__((noinline)) struct dnode *build_list(long n)
{
    struct dnode *head = NULL, *tail = NULL;
    for (long i = 0; i < n; i++) {
        struct dnode *d = lost_list_node();
        d->prev = tail;
        d->next = NULL;
        d->pad[0] = d->pad[1] = i;
        if (tail)
            tail->next = d;
        else
            head = d;
        tail = d;
    }
    return head;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "last") && strcmp(argv[1], "list"))) {
        fprintf(stderr, "usage: stale last|list\n");
        return 2;
    }
    printf("stale: %s\n", argv[1]);
    if (!strcmp(argv[1], "last")) {
        hold = lost_last();
        memset(hold, 7, 1606);
    } else {
        hold = build_list(100000);
    }
    hold = NULL;
    return 0;
}
