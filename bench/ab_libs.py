#!/usr/bin/env python3
"""Two builds of libheapprof.so on the hot paths, in the same run: the
malloc/free microbenchmark (bench/malloc_bench) alone, under the forwarding
floor (bench/libhpfloor.so) and under each library at the default rate,
configurations alternating run by run; medians of the CPU time of the
benchmark's own loop, and each median's ratio to the program alone.

  python3 bench/ab_libs.py --build build-rel --before OTHER/build-rel [--runs 7]
  python3 bench/ab_libs.py --build build-rel --over /usr/lib/x86_64-linux-gnu/libmimalloc.so.2

With --over LIB every configuration, "alone" included, runs over that
allocator (preloaded after the library measured), as run.py's "over
mimalloc" rows do; without --before only this tree's library is measured.

For a change that must leave the hot paths as fast as they were (a
restructuring): build the old commit in a worktree (git worktree add
../before COMMIT; meson setup ../before/build-rel -Dbuildtype=release
-Dbenchmarks=true; ninja -C ../before/build-rel) and compare.
"""
import argparse
import os
import re
import statistics
import subprocess

CASES = [("fixed", "1", "15000000"), ("fixed", "2", "15000000"), ("mixed", "2", "8000000"),
         ("window", "2", "5000000")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="release build of this tree")
    ap.add_argument("--before", help="release build to compare with")
    ap.add_argument("--over", help="an allocator to preload under every configuration")
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "malloc_bench")
    libs = {"alone": None, "floor": os.path.join(a.build, "bench", "libhpfloor.so")}
    if a.before:
        libs["before"] = os.path.join(a.before, "src", "libheapprof.so")
    libs["after" if a.before else "heapprof"] = os.path.join(a.build, "src", "libheapprof.so")
    res = {k: {c: [] for c in CASES} for k in libs}
    for _ in range(a.runs):
        for case in CASES:
            for name, lib in libs.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith("HEAPPROF")}
                env.pop("LD_PRELOAD", None)
                preload = [os.path.abspath(lib)] if lib else []
                if a.over:
                    preload.append(a.over)
                if preload:
                    env["LD_PRELOAD"] = " ".join(preload)
                if name in ("before", "after", "heapprof"):
                    env.update(HEAPPROF="/tmp/ab_libs.pb.gz", HEAPPROF_LEAKS="off")
                p = subprocess.run([exe, *case], env=env, capture_output=True, text=True,
                                   check=True)
                res[name][case].append(float(re.search(r"cpu_seconds=([0-9.]+)",
                                                       p.stdout).group(1)))
    print("| malloc_bench | " + " | ".join(libs) + " |")
    print("|---" * (len(libs) + 1) + "|")
    for case in CASES:
        base = statistics.median(res["alone"][case])
        cells = []
        for n in libs:
            m = statistics.median(res[n][case])
            cells.append(f"{m:.4f} s ({m / base:.3f}x)")
        print(f"| {' '.join(case)} | " + " | ".join(cells) + " |")
    over = f", every configuration over {a.over}" if a.over else ""
    print(f"\nMedians of {a.runs} runs, CPU time of the benchmark's loop{over}.")


if __name__ == "__main__":
    main()
