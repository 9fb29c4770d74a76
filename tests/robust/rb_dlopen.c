/* rb_dlopen: calls a function of a dlopen'ed library that leaks, then
 * dlcloses the library before exit, for the robustness tests (robust.py,
 * checks dlopen-keep and dlopen-close). The profile and the leak summary,
 * made at exit, must still name the library's function (plugin_leak).
 *
 * Usage: rb_dlopen PLUGIN close|keep [PLUGIN2]
 *   close    dlclose the library and check that it is gone (prints
 *            `unloaded yes`, or `unloaded no` if the loader kept it)
 *   keep     leave it loaded (the control case)
 *   PLUGIN2  (with close) then dlopen rb_plugin2, call its other_leak (3 x
 *            900 bytes and 24 bytes, leaked) and dlclose it too; prints
 *            `same base yes` when it was mapped where rb_plugin had been
 * Prints `leaked N blocks`; exits 0, or 1 if a library cannot be used. With
 * RB_CHDIR set, changes to that directory before returning from main.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reachable, never freed: heapprof reports the blocks as leaked. */
static void **kept, **kept2;

/* Calls FUNC of the library at PATH, returning the library's handle and,
 * through range, where its code was. */
static void *call(const char *path, const char *func, void ***out, uintptr_t range[2])
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "rb_dlopen: %s\n", dlerror());
        return NULL;
    }
    void **(*fn)(void);
    *(void **)&fn = dlsym(h, func);
    if (!fn) {
        fprintf(stderr, "rb_dlopen: %s\n", dlerror());
        return NULL;
    }
    Dl_info info;
    if (range && dladdr(*(void **)&fn, &info)) {
        range[0] = (uintptr_t)info.dli_fbase;
        range[1] = (uintptr_t) * (void **)&fn;
    }
    *out = fn();
    return h;
}

int main(int argc, char **argv)
{
    if ((argc != 3 && argc != 4) || (strcmp(argv[2], "close") && strcmp(argv[2], "keep")) ||
        (argc == 4 && strcmp(argv[2], "close"))) {
        fputs("usage: rb_dlopen PLUGIN close|keep [PLUGIN2]\n", stderr);
        return 2;
    }
    uintptr_t first[2] = {0, 0}, second[2] = {0, 0};
    void *h = call(argv[1], "plugin_leak", &kept, first);
    if (!h)
        return 1;
    printf("leaked %d blocks\n", kept ? 5 : 0);
    if (!strcmp(argv[2], "close")) {
        if (dlclose(h) != 0) {
            fprintf(stderr, "rb_dlopen: dlclose: %s\n", dlerror());
            return 1;
        }
        void *again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
        printf("unloaded %s\n", again ? "no" : "yes");
        if (again)
            dlclose(again);
    }
    if (argc == 4) {
        void *h2 = call(argv[3], "other_leak", &kept2, second);
        if (!h2)
            return 1;
        printf("leaked %d more blocks\n", kept2 ? 4 : 0);
        /* Loaded where the first one was: its old addresses now mean other
         * code. */
        printf("same base %s\n", first[0] == second[0] ? "yes" : "no");
        if (dlclose(h2) != 0) {
            fprintf(stderr, "rb_dlopen: dlclose: %s\n", dlerror());
            return 1;
        }
    }
    /* The program moves on before exit: a library loaded by a relative
     * name must still be found at the dump. */
    const char *dir = getenv("RB_CHDIR");
    if (dir && chdir(dir) != 0)
        return 1;
    return 0;
}
