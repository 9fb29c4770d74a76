// rb_newfail: C++ operator new and delete in every form, failures included,
// for the robustness tests (tests/robust/robust.py, check cxx-new).
//
// heapprof defines the replaceable operators itself (src/record/cxx.c) and hands a
// failed allocation to the next definition. The program's results must be
// the same with and without heapprof, over glibc, jemalloc or mimalloc:
//   - new and new[] of an impossible size throw std::bad_alloc;
//   - the nothrow forms return nullptr;
//   - a new_handler is called on failure, and may make the retry succeed;
//   - aligned new returns memory aligned as asked (up to 4096), and every
//     delete form (sized, aligned, nothrow) takes what its new gave.
// Prints one line per case; exits 0. In exact mode the profile shows
// new_sites as the site of 6 live objects of 4160 bytes (kept to the end).
#include <cstdint>
#include <cstdio>
#include <new>

static const std::size_t huge = SIZE_MAX / 4;
static int handler_calls;

static void handler_gives_up()
{
    handler_calls++;
    std::set_new_handler(nullptr); // the next failure throws
}

struct alignas(64) Line {
    char bytes[64];
};
struct alignas(4096) Page {
    char bytes[4096];
};

static void *volatile keep[6];

__attribute__((noinline)) static void new_sites()
{
    keep[0] = new char[1000];
    keep[1] = new Line[10];                               // 640 bytes, aligned new[]
    keep[2] = new (std::nothrow) char[200];               // nothrow
    keep[3] = new Page;                                   // 4096-aligned new
    keep[4] = ::operator new(100, std::align_val_t(256)); // aligned operator new
    keep[5] = new (std::nothrow) Line[3];                 // 192 bytes, aligned nothrow new[]
}

int main()
{
    try {
        char *p = new char[huge];
        std::printf("new[] huge: returned %p\n", (void *)p);
    } catch (const std::bad_alloc &) {
        std::printf("new[] huge: bad_alloc\n");
    }
    try {
        void *p = ::operator new(huge);
        std::printf("operator new huge: returned %p\n", p);
    } catch (const std::bad_alloc &) {
        std::printf("operator new huge: bad_alloc\n");
    }
    char *q = new (std::nothrow) char[huge];
    std::printf("nothrow new[] huge: %s\n", q ? "not null" : "null");
    void *r = ::operator new(huge, std::align_val_t(64), std::nothrow);
    std::printf("aligned nothrow new huge: %s\n", r ? "not null" : "null");

    std::set_new_handler(handler_gives_up);
    try {
        void *p = ::operator new(huge);
        std::printf("with handler: returned %p\n", p);
    } catch (const std::bad_alloc &) {
        std::printf("with handler: bad_alloc after %d handler call(s)\n", handler_calls);
    }

    // Every form that succeeds, and its matching delete.
    for (int i = 0; i < 50; i++) {
        int *a = new int(i);
        delete a;
        int *b = new int[i + 1];
        delete[] b;
        Line *c = new Line;
        bool ok = ((std::uintptr_t)c % 64) == 0;
        delete c;
        Page *d = new Page[2];
        ok = ok && ((std::uintptr_t)d % 4096) == 0;
        delete[] d;
        void *e = ::operator new(48, std::align_val_t(128));
        ok = ok && ((std::uintptr_t)e % 128) == 0;
        ::operator delete(e, 48, std::align_val_t(128));
        void *f = ::operator new(32, std::nothrow);
        ::operator delete(f, std::nothrow);
        void *g = ::operator new[](40);
        ::operator delete[](g, 40);
        if (!ok) {
            std::printf("misaligned at %d\n", i);
            return 1;
        }
    }
    std::printf("alignment and deletes: ok\n");
    new_sites();
    std::printf("done\n");
    return 0;
}
