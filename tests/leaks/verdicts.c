/* verdicts: a program whose live objects at exit have known verdicts, per
 * call site, for the leak check (report/reach.c). Usage:
 *
 *   verdicts [N]   the cases below, and N (default 0) more objects from each
 *                  of many_lost and many_kept (sampled-mode statistics)
 *   verdicts none  only reachable memory: the CI gate must not fire
 *
 * Site                  objects  bytes   verdict at exit
 *   lost_overwritten       1      100     definitely lost (its only pointer overwritten)
 *   list_head              1       40     definitely lost (nothing points to it)
 *   list_node              5      200     indirectly lost (only the lost head leads to them)
 *   cycle_node             2      120     lost cycle: one definitely, one indirectly
 *   kept_global            1       72     reachable (a global points to it)
 *   chain_holder           1       24     reachable (a global)
 *   chain_target           1       88     reachable (only the heap object chain_holder)
 *   kept_interior          1      128     reachable (only a pointer 40 bytes inside it)
 *   kept_tls               1      112     reachable (a __thread variable of main)
 *   kept_thread_stack      1      152     reachable (a local of a thread blocked at exit)
 *   kept_mmap              1      144     reachable (stored in an anonymous mmap region)
 *   many_lost              N      100 N   definitely lost
 *   many_kept              N      100 N   reachable (a global array of pointers)
 *
 * Pointers go through globals and escape() so the compiler keeps every store
 * the verdicts depend on; the lost ones are made lost by overwriting the
 * global that held them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SITE __attribute__((noinline))

static inline void escape(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

struct node {
    struct node *next;
    char pad[32];
};

void *volatile hold; /* overwritten: what it held is lost */
void *kept;          /* kept_global */
void **chain;        /* chain_holder -> chain_target */
char *interior;      /* 40 bytes into kept_interior's object */
__thread void *tls_kept;
void **mm_region;
void **many; /* many_kept */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int started;

SITE void *lost_overwritten(void)
{
    return malloc(100);
}

SITE struct node *list_head(void)
{
    return malloc(sizeof(struct node));
}

SITE struct node *list_node(void)
{
    return malloc(sizeof(struct node));
}

SITE struct node *cycle_node(void)
{
    struct node *n = malloc(60);
    memset(n, 0, 60);
    return n;
}

SITE void *kept_global(void)
{
    return malloc(72);
}

SITE void *chain_holder(void)
{
    return malloc(24);
}

SITE void *chain_target(void)
{
    return malloc(88);
}

SITE void *kept_interior(void)
{
    return malloc(128);
}

SITE void *kept_tls(void)
{
    return malloc(112);
}

SITE void *kept_thread_stack(void)
{
    return malloc(152);
}

SITE void *kept_mmap(void)
{
    return malloc(144);
}

SITE void *many_lost(void)
{
    return malloc(100);
}

SITE void *many_kept(void)
{
    return malloc(100);
}

static void *blocked(void *arg)
{
    void *volatile mine = kept_thread_stack();
    escape(mine);
    pthread_mutex_lock(&mu);
    started = 1;
    pthread_cond_broadcast(&cv);
    for (;;)
        pthread_cond_wait(&cv, &mu); /* until the process exits */
    return arg;
}

static void make_lost(void)
{
    hold = lost_overwritten();
    memset(hold, 1, 100);
    hold = NULL;

    struct node *head = list_head();
    head->next = NULL;
    for (int i = 0; i < 5; i++) {
        struct node *n = list_node();
        n->next = head->next;
        head->next = n;
    }
    hold = head;
    escape(head);
    hold = NULL;

    struct node *c[2];
    for (int i = 0; i < 2; i++)
        c[i] = cycle_node();
    c[0]->next = c[1];
    c[1]->next = c[0];
    hold = c[0];
    escape(c[0]);
    hold = NULL;
}

static void make_kept(void)
{
    kept = kept_global();
    chain = chain_holder();
    chain[0] = chain_target();
    interior = (char *)kept_interior() + 40;
    tls_kept = kept_tls();
    mm_region = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mm_region == MAP_FAILED)
        exit(97);
    mm_region[5] = kept_mmap();
    escape(&tls_kept);
    escape(&interior);
}

static void make_many(long n)
{
    many = calloc((size_t)n + 1, sizeof *many);
    for (long i = 0; i < n; i++) {
        hold = many_lost();
        memset(hold, 2, 100);
        many[i] = many_kept();
        memset(many[i], 3, 100);
    }
    hold = NULL;
}

int main(int argc, char **argv)
{
    long n = 0;
    int none = argc > 1 && !strcmp(argv[1], "none");
    if (argc > 1 && !none)
        n = atol(argv[1]);
    pthread_t t;
    if (pthread_create(&t, NULL, blocked, NULL) != 0)
        return 96;
    pthread_mutex_lock(&mu);
    while (!started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (!none)
        make_lost();
    make_kept();
    make_many(n);
    printf("verdicts: done\n");
    return 0;
}
