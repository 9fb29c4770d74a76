/* small: a program whose allocations are known to the byte, for the leak
 * summary's "no leaks" line at a sampling rate (tests/leaks/test_leaks.py,
 * check small-sample): how many bytes it rests on.
 *
 * Usage: small LOST FREED THREADS SIZE
 *   The main thread allocates LOST blocks of SIZE bytes and loses them, and
 *   FREED blocks it frees at once; THREADS threads each allocate and free
 *   FREED blocks of SIZE bytes: the first half of them exit before main
 *   does, the others are still running (blocked) when the program exits.
 *   In all (LOST + FREED * (1 + THREADS)) * SIZE bytes, and the little
 *   that thread creation and stdio allocate (the test takes the total from
 *   an exact-mode run). Prints `small: done` at the end.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long freed, size;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int finished;

static void churn(void)
{
    for (long i = 0; i < freed; i++) {
        char *p = malloc((size_t)size);
        if (!p)
            exit(97);
        memset(p, 1, (size_t)size);
        free(p);
    }
}

/* Allocates, says it is done, and (keep != NULL) stays until the end. */
static void *worker(void *keep)
{
    churn();
    pthread_mutex_lock(&mu);
    finished++;
    pthread_cond_broadcast(&cv);
    while (keep)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    long lost = atol(argv[1]), threads = atol(argv[3]);
    freed = atol(argv[2]);
    size = atol(argv[4]);
    for (long i = 0; i < lost; i++) {
        char *p = malloc((size_t)size);
        if (!p)
            return 97;
        memset(p, 2, (size_t)size);
    }
    churn();
    pthread_t t[64];
    if (threads > 64)
        return 2;
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, i < threads / 2 ? NULL : (void *)1) != 0)
            return 96;
    for (long i = 0; i < threads / 2; i++)
        pthread_join(t[i], NULL);
    pthread_mutex_lock(&mu);
    while (finished < threads)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    printf("small: done\n");
    return 0;
}
