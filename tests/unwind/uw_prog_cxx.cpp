// Stacks of a C++ program for the fast unwinder (src/record/unwind.c),
// for tests/unwind/test_unwind.py (exact mode, HEAPPROF_UNWIND=check):
// allocations from the standard library's containers and strings (frames
// in libstdc++), virtual calls, std::function and lambdas, templates
// recursing, and exceptions thrown and caught (the exception object is
// allocated where it is thrown). Built at -O0 and -O2, with and without
// frame pointers. It prints a checksum only.
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct Shape {
    virtual ~Shape() = default;
    virtual std::vector<int> points(int n) const = 0;
};

struct Line : Shape {
    std::vector<int> points(int n) const override
    {
        std::vector<int> v;
        for (int i = 0; i < n; i++)
            v.push_back(i);
        return v;
    }
};

struct Grid : Shape {
    std::vector<int> points(int n) const override
    {
        std::vector<int> v(static_cast<size_t>(n) * 2, 1);
        return v;
    }
};

template <int N> struct Depth {
    static long run(const std::function<long(int)> &f)
    {
        return Depth<N - 1>::run(f) + f(N);
    }
};
template <> struct Depth<0> {
    static long run(const std::function<long(int)> &f)
    {
        return f(0);
    }
};

__attribute__((noinline)) static long thrower(int i)
{
    if (i % 3 == 0)
        throw std::runtime_error("odd one " + std::to_string(i));
    return i;
}

int main()
{
    long sum = 0;
    std::vector<std::unique_ptr<Shape>> shapes;
    for (int i = 0; i < 50; i++) {
        if (i % 2)
            shapes.push_back(std::make_unique<Line>());
        else
            shapes.push_back(std::make_unique<Grid>());
    }
    for (int round = 0; round < 20; round++) {
        std::map<std::string, std::vector<int>> m;
        for (size_t i = 0; i < shapes.size(); i++)
            m["key" + std::to_string(i * 31 + round)] = shapes[i]->points(static_cast<int>(i) + 10);
        for (auto &kv : m)
            sum += static_cast<long>(kv.second.size());
        sum += Depth<20>::run([&](int n) {
            std::string s(static_cast<size_t>(n) + 40, 'x');
            return static_cast<long>(s.size());
        });
        for (int i = 0; i < 10; i++) {
            try {
                sum += thrower(i);
            } catch (const std::exception &e) {
                sum += static_cast<long>(std::string(e.what()).size());
            }
        }
    }
    std::printf("uw_prog_cxx: %ld\n", sum);
    return 0;
}
