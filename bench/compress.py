#!/usr/bin/env python3
"""How fast a profile compresses, the two ways heapprof can write it
(src/report/wire.c): zlib's fastest level in one gzip stream, and
libdeflate's fastest level in gzip members of 64 KiB one after another.

usage: python3 bench/compress.py PROFILE.pb.gz [--runs 5]

PROFILE is any profile heapprof wrote (it is decompressed first), e.g. the
exact-mode profile of deep_tree:
  LD_PRELOAD=build-rel/src/libheapprof.so HEAPPROF=/tmp/deep.pb.gz \\
      HEAPPROF_RATE=1 build-rel/bench/deep_tree 2
Prints, per way, the median time of --runs runs and the compressed size.
libdeflate is called through ctypes (libdeflate.so.0, Debian's
libdeflate0); without it only zlib is measured.
"""
import argparse
import ctypes
import ctypes.util
import gzip
import statistics
import sys
import time
import zlib

MEMBER = 64 << 10


def zlib_once(data):
    z = zlib.compressobj(1, zlib.DEFLATED, 31, 8)
    return len(z.compress(data) + z.flush())


def libdeflate():
    name = ctypes.util.find_library("deflate")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.libdeflate_alloc_compressor.restype = ctypes.c_void_p
    lib.libdeflate_alloc_compressor.argtypes = [ctypes.c_int]
    lib.libdeflate_gzip_compress_bound.restype = ctypes.c_size_t
    lib.libdeflate_gzip_compress_bound.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.libdeflate_gzip_compress.restype = ctypes.c_size_t
    lib.libdeflate_gzip_compress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                             ctypes.c_void_p, ctypes.c_size_t]
    return lib


def members_once(lib, comp, buf, n, out, room):
    total = 0
    base = ctypes.addressof(buf)
    for at in range(0, n, MEMBER):
        m = min(MEMBER, n - at)
        got = lib.libdeflate_gzip_compress(comp, base + at, m, out, room)
        if not got:
            sys.exit("compress.py: libdeflate_gzip_compress failed")
        total += got
    return total


def median_time(fn, runs):
    times, size = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with open(a.profile, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    print(f"{a.profile}: {len(data)} bytes before compression; medians of {a.runs} runs")
    t, size = median_time(lambda: zlib_once(data), a.runs)
    print(f"zlib level 1, one stream:            {t * 1e3:7.1f} ms, {size} bytes")
    lib = libdeflate()
    if not lib:
        print("libdeflate: not installed (Debian package libdeflate0)")
        return
    comp = lib.libdeflate_alloc_compressor(1)
    buf = ctypes.create_string_buffer(data, len(data))
    room = lib.libdeflate_gzip_compress_bound(comp, MEMBER)
    out = ctypes.create_string_buffer(room)
    t, size = median_time(lambda: members_once(lib, comp, buf, len(data), out, room), a.runs)
    print(f"libdeflate level 1, 64 KiB members: {t * 1e3:7.1f} ms, {size} bytes")


if __name__ == "__main__":
    main()
