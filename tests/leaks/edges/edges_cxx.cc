// edges_cxx: pointers held only in C++ containers with static storage.
//
//   edges_cxx vector     lost_in_static_vector (3020 B): its only pointer is
//                        in a namespace-scope std::vector<void *>, whose
//                        destructor frees the vector's buffer at exit, before
//                        any leak check runs.
//                        memcheck: definitely lost / LSan: direct leak /
//                        tested: definitely lost.
//   edges_cxx singleton  kept_in_leaky_singleton (3121 B): the same in a
//                        std::vector made with new and never deleted (held by
//                        a function-local static pointer).
//                        memcheck: still reachable / LSan: not reported
//                        (reachable) / tested: still reachable.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

std::vector<void *> static_vector;

static std::vector<void *> &singleton()
{
    static std::vector<void *> *v = new std::vector<void *>;
    return *v;
}

__attribute__((noinline)) void *lost_in_static_vector()
{
    return malloc(3020);
}

__attribute__((noinline)) void *kept_in_leaky_singleton()
{
    return malloc(3121);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "vector") && strcmp(argv[1], "singleton"))) {
        fprintf(stderr, "usage: edges_cxx vector|singleton\n");
        return 2;
    }
    if (!strcmp(argv[1], "vector")) {
        static_vector.push_back(lost_in_static_vector());
        memset(static_vector[0], 1, 3020);
    } else {
        singleton().push_back(kept_in_leaky_singleton());
        memset(singleton()[0], 2, 3121);
    }
    printf("edges_cxx: %s\n", argv[1]);
    return 0;
}
