/* rb_keydtor: threads whose thread-specific data destructors allocate, for
 * the robustness tests (robust.py, check thread-exit).
 *
 * Each of N threads (at most 3 at a time) sets a key whose destructor, run
 * as the thread exits (after heapprof may already have let go of the
 * thread's own state), allocates and frees 32 bytes PER times from
 * dtor_site. In exact mode the profile must count every one of them:
 * N * PER objects, N * PER * 32 bytes, none in use.
 *
 * Usage: rb_keydtor N PER; prints `dtor_site N*PER`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_key_t key;
static int per;

__attribute__((noinline)) static void dtor_site(void)
{
    void *volatile p = malloc(32);
    free(p);
}

static void dtor(void *v)
{
    (void)v;
    for (int i = 0; i < per; i++)
        dtor_site();
}

static void *body(void *arg)
{
    void *volatile q = malloc(100);
    free(q);
    pthread_setspecific(key, (void *)1);
    return arg;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int n = atoi(argv[1]);
    per = atoi(argv[2]);
    if (n <= 0 || per <= 0 || pthread_key_create(&key, dtor) != 0)
        return 2;
    pthread_t *t = calloc((size_t)n, sizeof *t);
    if (!t)
        return 1;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&t[i], NULL, body, NULL) != 0)
            return 1;
        if (i >= 3)
            pthread_join(t[i - 3], NULL);
    }
    for (int i = n - 3 < 0 ? 0 : n - 3; i < n; i++)
        pthread_join(t[i], NULL);
    free(t);
    printf("dtor_site %d\n", n * per);
    return 0;
}
