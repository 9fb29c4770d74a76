#!/usr/bin/env python3
"""The lock hook's cost with the mutex and block profiles off: an
uncontended pthread_mutex_lock/unlock pair (bench/lock_bench.c) on 1 and 2
threads, each thread with its own mutex, run

  alone         the program, nothing preloaded
  floor         LD_PRELOAD=bench/libhpfloor.so (forwards pthread_mutex_lock)
  heapprof-off  LD_PRELOAD=libheapprof.so, profiling off (no HEAPPROF)
  heapprof-on   LD_PRELOAD=libheapprof.so HEAPPROF_HTTP=127.0.0.1:0:
                heap profiling and the endpoint on, mutex and block off

in alternating rounds (the starting configuration rotated each round).
Prints the median CPU ns per pair of each, and its median per-round
difference from `alone`.

  python3 bench/locks.py --build build [--rounds 9] [--iterations 20000000]
"""
import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(exe, threads, n, env_extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HEAPPROF") and k != "LD_PRELOAD"}
    env.update(env_extra)
    out = subprocess.run([exe, str(threads), str(n)], env=env, capture_output=True, text=True,
                         check=True).stdout
    vals = dict(line.split() for line in out.splitlines())
    return float(vals["cpu_ns_per_pair"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--iterations", type=int, default=20000000)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    exe = os.path.join(b, "bench", "lock_bench")
    lib = os.path.join(b, "src", "libheapprof.so")
    configs = [
        ("alone", {}),
        ("floor", {"LD_PRELOAD": os.path.join(b, "bench", "libhpfloor.so")}),
        ("heapprof-off", {"LD_PRELOAD": lib}),
        ("heapprof-on", {"LD_PRELOAD": lib, "HEAPPROF_HTTP": "127.0.0.1:0",
                         "HEAPPROF_LEAKS": "off"}),
    ]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"library at {commit}; {os.cpu_count()} CPUs; {a.rounds} rounds of "
          f"{a.iterations} pairs per thread")
    for threads in (1, 2):
        res = {name: [] for name, _ in configs}
        for r in range(a.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for name, env in order:
                res[name].append(run(exe, threads, a.iterations, env))
        print(f"\n{threads} thread{'s' if threads > 1 else ''}: CPU ns per lock/unlock pair")
        print(f"  {'config':<13} {'median':>7} {'over alone (median per round)':>31}")
        for name, _ in configs:
            diffs = [x - y for x, y in zip(res[name], res["alone"])]
            print(f"  {name:<13} {statistics.median(res[name]):7.2f} "
                  f"{statistics.median(diffs):+31.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
