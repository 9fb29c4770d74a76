#!/usr/bin/env python3
"""What heapprof costs a short process, start and exit: a shell loop running a
program that allocates little N times (default 100 x `malloc_bench fixed 2
1000`: two threads, 2,000 allocations of 32 bytes), alone, under the
forwarding-only floor (bench/libhpfloor.so), with heapprof preloaded and
HEAPPROF unset, and with HEAPPROF set at the default settings (the leak check
on; and, as a second figure, off). With --pipeline, the same for a shell
pipeline run under heapprof as `heapprof sh -c '...'` runs it: the shell and
every program it starts profiled, each writing its own profile.

Configurations alternate within each round (the starting one rotated); each
figure is the median over the rounds of the loop's wall time and of its
processes' CPU time (user + system, from the children's rusage), per process
and over the floor in the same rounds. --base BUILD adds heapprof from
another build (the library before a change) with HEAPPROF set, so that
before and after are measured in the same run.

usage: python3 bench/short.py --build BUILD [--runs 9] [--n 100]
           [--prog 'PROGRAM ARGS'] [--pipeline] [--base BUILD]
"""

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import commit_of

PIPELINE = "seq 2000 | sort -r | uniq | wc -l"


def cpu_of_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--prog", default=None,
                    help="the program and its arguments (default: BUILD's "
                         "bench/malloc_bench fixed 2 1000)")
    ap.add_argument("--pipeline", action="store_true",
                    help=f"also time `sh -c '{PIPELINE}'` under each configuration")
    ap.add_argument("--base", default=None,
                    help="another build whose library is measured beside (HEAPPROF set)")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    lib = os.path.join(b, "src", "libheapprof.so")
    floor = os.path.join(b, "bench", "libhpfloor.so")
    prog = a.prog or os.path.join(b, "bench", "malloc_bench") + " fixed 2 1000"
    need = [lib, floor]
    base_lib = None
    if a.base:
        base_lib = os.path.join(os.path.abspath(a.base), "src", "libheapprof.so")
        need.append(base_lib)
    for p in need:
        if not os.path.exists(p):
            sys.exit(f"short.py: {p} is not built")
    out = tempfile.mkdtemp(prefix="heapprof-short-")
    prof = os.path.join(out, "p.pb.gz")
    env0 = {k: v for k, v in os.environ.items() if not k.startswith("HEAPPROF")}
    env0.pop("LD_PRELOAD", None)
    env0["MALLOC_PERTURB_"] = "0"
    configs = {
        "alone": {},
        "floor": {"LD_PRELOAD": floor},
        "heapprof, HEAPPROF unset": {"LD_PRELOAD": lib},
        "heapprof, HEAPPROF set": {"LD_PRELOAD": lib, "HEAPPROF": prof},
        "heapprof, HEAPPROF set, leaks off": {"LD_PRELOAD": lib, "HEAPPROF": prof,
                                              "HEAPPROF_LEAKS": "off"},
    }
    if base_lib:
        configs["base, HEAPPROF set"] = {"LD_PRELOAD": base_lib, "HEAPPROF": prof}
    workloads = [("program", prog, a.n)]
    if a.pipeline:
        # The shell preloaded as `heapprof sh -c` would: it and the five
        # programs it starts (a subshell, seq, sort, uniq, wc) each write.
        workloads.append(("pipeline", "sh -c " + shlex.quote(PIPELINE), max(a.n // 4, 10)))
    names = list(configs)
    wall = {(w, k): [] for w, _, _ in workloads for k in names}
    cpu = {(w, k): [] for w, _, _ in workloads for k in names}
    for r in range(a.runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for w, cmd, n in workloads:
            loop = f"i=0; while [ $i -lt {n} ]; do {cmd} >/dev/null 2>&1; i=$((i+1)); done"
            for k in order:
                env = dict(env0, **configs[k])
                pre = env.pop("LD_PRELOAD", "")
                # The looping shell runs unpreloaded; each program gets the
                # library through the environment the loop exports.
                script = (f"export LD_PRELOAD={shlex.quote(pre)}; " if pre else "") + loop
                c0 = cpu_of_children()
                t0 = time.perf_counter()
                subprocess.run(["sh", "-c", script], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                wall[(w, k)].append((time.perf_counter() - t0) / n)
                cpu[(w, k)].append((cpu_of_children() - c0) / n)
                if os.path.isdir(out):
                    for f in os.listdir(out):
                        os.unlink(os.path.join(out, f))
    commit, _ = commit_of(b)
    print(f"library at {commit}; {os.cpu_count()} CPUs; medians of {a.runs} "
          f"alternating rounds\n")
    for w, cmd, n in workloads:
        print(f"{w}: {n} x `{cmd}`\n")
        print("| configuration | wall per run | over floor | CPU per run "
              "| over floor |")
        print("|---|---:|---:|---:|---:|")
        mw = {k: statistics.median(wall[(w, k)]) for k in names}
        mc = {k: statistics.median(cpu[(w, k)]) for k in names}
        # Over the floor: the median of the per-round differences, so that
        # a round the machine slowed counts for all configurations alike.
        for k in names:
            dw = statistics.median(x - f for x, f in zip(wall[(w, k)], wall[(w, "floor")]))
            dc = statistics.median(x - f for x, f in zip(cpu[(w, k)], cpu[(w, "floor")]))
            print(f"| {k} | {1000 * mw[k]:.3f} ms | {1000 * dw:+.3f} ms | "
                  f"{1000 * mc[k]:.3f} ms | {1000 * dc:+.3f} ms |")
        print()
        for k in names:
            print(f"{w}, {k}, wall ms: " + ", ".join(f"{1000 * t:.3f}" for t in wall[(w, k)]))
        print()
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
