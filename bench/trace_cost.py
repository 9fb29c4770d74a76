#!/usr/bin/env python3
"""What an execution trace costs a running program: the same fixed work
with heapprof on (HEAPPROF set, the default rate) and with a trace of the
whole run on top (HEAPPROF_TRACE, HEAPPROF_TRACE_SECONDS=0: CPU samples at
1 kHz on every thread, label scopes, blocking calls, sampled allocations,
and the JSON written at exit), configurations alternating run by run;
medians of the CPU time of the whole process tree and of wall time.

  python3 bench/trace_cost.py --build build-rel [--runs 7]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time


def run(argv, env):
    t0 = time.monotonic()
    before = os.times()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = os.times()
    return (after.children_user + after.children_system - before.children_user -
            before.children_system), time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    work = {
        "cpuburn -t 2 -w 400 (CPU)": [os.path.join(b, "examples", "cpuburn"), "-t", "2", "-w", "400"],
        "malloc_bench mixed 2 20000000 (allocations)": [os.path.join(b, "bench", "malloc_bench"),
                                                       "mixed", "2", "20000000"],
    }
    tmp = tempfile.mkdtemp(prefix="hp-trace-cost-")
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAPPROF") and k != "LD_PRELOAD"}
    lib = os.path.join(b, "src", "libheapprof.so")
    cfgs = {
        "alone": {},
        "heapprof": {"LD_PRELOAD": lib, "HEAPPROF": os.path.join(tmp, "p.pb.gz"),
                     "HEAPPROF_LEAKS": "off"},
        "heapprof + trace": {"LD_PRELOAD": lib, "HEAPPROF": os.path.join(tmp, "p.pb.gz"),
                             "HEAPPROF_LEAKS": "off", "HEAPPROF_TRACE": os.path.join(tmp, "t.json"),
                             "HEAPPROF_TRACE_SECONDS": "0"},
    }
    res = {(w, c): [] for w in work for c in cfgs}
    for _ in range(a.runs):
        for w, argv in work.items():
            for c, extra in cfgs.items():
                res[(w, c)].append(run(argv, dict(base, **extra)))
    print("| workload | " + " | ".join(cfgs) + " | trace over heapprof |")
    print("|---" * (len(cfgs) + 2) + "|")
    for w in work:
        cells, med = [], {}
        for c in cfgs:
            cpu = statistics.median(r[0] for r in res[(w, c)])
            wall = statistics.median(r[1] for r in res[(w, c)])
            med[c] = cpu
            cells.append(f"{cpu:.3f} s CPU, {wall:.3f} s wall")
        over = med["heapprof + trace"] / med["heapprof"] - 1
        print(f"| {w} | " + " | ".join(cells) + f" | {100 * over:+.1f}% CPU |")
    print(f"\nMedians of {a.runs} alternating runs; CPU time of the process tree.")


if __name__ == "__main__":
    main()
