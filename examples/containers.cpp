/* containers: a C++ program for heapprof's end-to-end tests. One function
 * leaks nodes allocated with new; the others allocate with new/delete,
 * new[]/delete[] and the standard containers and free everything. Frames must
 * come out of heapprof demangled (app::leak_nodes(int)).
 *
 * Usage: containers [exit N]   (exit N: finish with exit(N) instead of 0)
 *
 * Truth, per function, as heapprof counts requests (cumulative: every
 * allocation made while the function is on the stack). Columns:
 * alloc_objects alloc_space inuse_objects inuse_space.
 *
 *   app::leak_nodes     25  1600  25  1600   25 x new Node (64 bytes), leaked
 *   app::scratch         3   204   0     0   new char[100], new int[10],
 *                                            new Node; all deleted
 *   app::fill_vector     8  1020   0     0   100 push_back into vector<int>:
 *                                            capacity 1, 2, 4, ..., 128
 *   app::fill_map       20   960   0     0   20 inserts into map<int, long>:
 *                                            48-byte tree nodes
 *   app::build_string    3   213   0     0   100 push_back into std::string:
 *                                            capacity 30, 60, 120 (+1 each)
 *
 * The container rows follow libstdc++'s growth policy (doubling; a string
 * asks for capacity + 1) and node layout on x86-64.
 * Leaks: 1 stack (app::leak_nodes), 25 objects, 1600 bytes.
 * The tests keep this table too (tests/e2e.py): change both.
 */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#ifdef HEAPPROF_LINKED
#include "heapprof.h"
#endif

#define SITE __attribute__((noinline))

namespace app
{

struct Node {
    long key;
    Node *next;
    char payload[48];
};
static_assert(sizeof(Node) == 64, "the truth table assumes a 64-byte Node");

// Kept reachable on purpose: heapprof reports memory never freed, reachable
// or not.
Node *leaked_head;

static std::uint64_t checksum = 1469598103934665603ull;

static void mix(std::uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        checksum ^= (v >> (8 * i)) & 0xff;
        checksum *= 1099511628211ull;
    }
}

// Makes the compiler assume unknown code reads p, so new/delete pairs are not
// elided (C++14 allows removing them).
static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

SITE void leak_nodes(int n)
{
    for (int i = 0; i < n; i++) {
        Node *node = new Node;
        node->key = i;
        node->next = leaked_head;
        std::memset(node->payload, 'n', sizeof node->payload);
        escape(node);
        leaked_head = node;
        mix(static_cast<std::uint64_t>(i));
    }
}

SITE void scratch()
{
    char *text = new char[100];
    int *numbers = new int[10];
    Node *node = new Node;
    escape(text);
    escape(numbers);
    escape(node);
    std::memset(text, 's', 100);
    for (int i = 0; i < 10; i++)
        numbers[i] = i * i;
    node->key = numbers[9];
    mix(static_cast<std::uint64_t>(node->key + text[50]));
    delete node;
    delete[] numbers;
    delete[] text;
}

SITE void fill_vector()
{
    std::vector<int> v;
    for (int i = 0; i < 100; i++)
        v.push_back(i * 3);
    escape(v.data());
    std::uint64_t sum = 0;
    for (int x : v)
        sum += static_cast<std::uint64_t>(x);
    mix(sum);
}

SITE void fill_map()
{
    std::map<int, long> m;
    for (int i = 0; i < 20; i++)
        m[(i * 7) % 20] = i;
    std::uint64_t sum = 0;
    for (const auto &kv : m)
        sum = sum * 31 + static_cast<std::uint64_t>(kv.first * 100 + kv.second);
    mix(sum);
}

SITE void build_string()
{
    std::string s;
    for (int i = 0; i < 100; i++)
        s.push_back(static_cast<char>('a' + i % 26));
    escape(&s[0]);
    std::uint64_t sum = 0;
    for (char c : s)
        sum = sum * 131 + static_cast<unsigned char>(c);
    mix(sum + s.size());
}

} // namespace app

int main(int argc, char **argv)
{
    int status = -1;
    if (argc >= 3 && std::strcmp(argv[1], "exit") == 0)
        status = std::atoi(argv[2]);
#ifdef HEAPPROF_LINKED
    // The linked build calls the API so the link really needs the library;
    // nothing is printed from it, so both builds print the same.
    (void)heapprof_enabled();
#endif

    app::leak_nodes(25);
    app::scratch();
    app::fill_vector();
    app::fill_map();
    app::build_string();

    std::printf("containers: checksum %016llx\n", static_cast<unsigned long long>(app::checksum));
    std::fflush(stdout);
    if (status >= 0)
        std::exit(status);
    return 0;
}
