"""A Python program that allocates the way Python programs do: the "real
program" workload bench/run.py runs under python3 with and without a heap
profiler.

usage: python3 bench/py_workload.py N

It builds a dictionary of N string keys to lists of strings, an index of
words to counts, joins and splits text, sorts, and drops it all again, so
the interpreter's allocator sees many small objects (pymalloc's arenas) and
a steady stream of larger blocks (dict and list growth, long strings) from
malloc. Prints a checksum so the work cannot be skipped.
"""
import sys


def main():
    n = int(sys.argv[1])
    table = {}
    for i in range(n):
        key = "key-%d-%s" % (i, "x" * (i % 17))
        table[key] = [str(i * j) for j in range(i % 9 + 1)]
    counts = {}
    for key, values in table.items():
        text = " ".join(values) + " " + key
        for word in text.split():
            counts[word] = counts.get(word, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    chunks = []
    for start in range(0, len(ordered), 1000):
        part = ordered[start:start + 1000]
        chunks.append(",".join("%s=%d" % kv for kv in part))
    blob = "\n".join(chunks)
    checksum = sum(len(v) for v in table.values()) + len(blob) + len(counts)
    del table, counts, ordered, chunks, blob
    print("checksum=%d" % checksum)


main()
