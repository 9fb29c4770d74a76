// The heap-over-time test's C++ program: grow_vector() pushes onto a
// std::vector<long> and grow_names() inserts std::string values into a
// std::map, for SECONDS (default 1.5), so that every allocation is made
// inside the standard library's templates (std::vector's growth,
// std::string's constructor, the allocator's allocate). The timeline must
// name the program's functions that called them, not the templates.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#define SITE __attribute__((noinline))

static std::vector<long> numbers;
static std::map<int, std::string> names;

SITE static void grow_vector(int i)
{
    for (int k = 0; k < 64; k++)
        numbers.push_back(i * 64 + k);
}

SITE static void grow_names(int i)
{
    names[i] = std::string(1000 + i % 7, 'n');
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? std::atof(argv[1]) : 1.5;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0;; i++) {
        grow_vector(i);
        grow_names(i);
        std::this_thread::sleep_for(std::chrono::microseconds(500));
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= seconds)
            break;
    }
    std::printf("grower_cxx: done\n");
    return 0;
}
