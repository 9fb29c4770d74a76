// rb_statics: C++ static destructors that free and allocate at exit, for the
// robustness tests (tests/robust/robust.py, check exit-statics).
//
// heapprof dumps after the program's static destructors have run, so what
// they free is not in use in the profile:
//   statics_fill   fills a global std::vector<std::string> and a
//                  function-local static std::map<int, std::string> (long
//                  strings, so each owns a heap block); all of it is freed by
//                  the static destructors: in use 0 in exact mode
// The destructor of a global object also allocates and frees while the
// program is being torn down. Prints a checksum; exits 0.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace
{

std::map<int, std::string> &cache()
{
    static std::map<int, std::string> m;
    return m;
}

struct Teardown {
    ~Teardown()
    {
        // Work done while static objects are destroyed.
        std::string s(500, 't');
        std::vector<std::unique_ptr<int>> v;
        for (int i = 0; i < 50; i++)
            v.push_back(std::make_unique<int>(i));
        std::printf("teardown %zu %zu\n", s.size(), v.size());
    }
};

// Constructed before names, so destroyed after it: the last of the statics.
Teardown teardown;
std::vector<std::string> names;

} // namespace

__attribute__((noinline)) static unsigned long statics_fill()
{
    unsigned long sum = 0;
    for (int i = 0; i < 20; i++) {
        names.emplace_back(100 + i, static_cast<char>('a' + i % 26));
        cache()[i] = std::string(200, static_cast<char>('A' + i % 26));
        sum += names.back().size() + cache()[i].size();
    }
    return sum;
}

int main()
{
    std::printf("sum %lu\n", statics_fill());
    return 0;
}
