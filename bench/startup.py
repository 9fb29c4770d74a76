#!/usr/bin/env python3
"""What heapprof costs a process start: a shell loop running a
short program N times (default 300 x /bin/true), with the library preloaded
and HEAPPROF unset, with HEAPPROF set, under the forwarding-only floor
(bench/libhpfloor.so), and alone. Configurations alternate within each
round (the starting one rotated), and each figure is the median over the
rounds of the loop's wall time; ratios are to the floor and to the program
alone in the same rounds.

usage: python3 bench/startup.py --build BUILD [--runs 7] [--n 300] [--prog /bin/true]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--prog", default="/bin/true")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    lib = os.path.join(b, "src", "libheapprof.so")
    floor = os.path.join(b, "bench", "libhpfloor.so")
    for p in (lib, floor):
        if not os.path.exists(p):
            sys.exit(f"startup.py: {p} is not built (ninja -C {a.build})")
    out = tempfile.mkdtemp(prefix="heapprof-startup-")
    loop = f'i=0; while [ $i -lt {a.n} ]; do {a.prog}; i=$((i+1)); done'
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAPPROF")}
    base.pop("LD_PRELOAD", None)
    configs = {
        "alone": {},
        "floor": {"LD_PRELOAD": floor},
        "heapprof, HEAPPROF unset": {"LD_PRELOAD": lib},
        "heapprof, HEAPPROF set": {"LD_PRELOAD": lib,
                                   "HEAPPROF": os.path.join(out, "p.pb.gz"),
                                   "HEAPPROF_LEAKS": "off"},
    }
    names = list(configs)
    times = {k: [] for k in names}
    for r in range(a.runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            env = dict(base, **configs[k])
            # The shell itself runs unpreloaded; each iteration's program
            # inherits the environment.
            t0 = time.perf_counter()
            subprocess.run(["env", "-u", "LD_PRELOAD", "sh", "-c",
                            f'export LD_PRELOAD="{env.get("LD_PRELOAD", "")}"; '
                            f'[ -n "$LD_PRELOAD" ] || unset LD_PRELOAD; {loop}'],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.n} x {a.prog}, medians of {a.runs} alternating rounds "
          f"({os.cpu_count()} CPUs)\n")
    print("| configuration | loop, wall | per process | vs alone | vs floor |")
    print("|---|---:|---:|---:|---:|")
    for k in names:
        print(f"| {k} | {med[k]:.3f} s | {1000 * med[k] / a.n:.3f} ms | "
              f"{med[k] / med['alone']:.3f}x | {med[k] / med['floor']:.3f}x |")
    for k in names:
        print(f"{k}: " + ", ".join(f"{t:.3f}" for t in times[k]))


if __name__ == "__main__":
    main()
