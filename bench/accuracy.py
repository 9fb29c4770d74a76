#!/usr/bin/env python3
"""Accuracy benchmark: how close heapprof's sampled estimates come to the
truth, per allocation site, at several sampling rates.

Runs tests/stats/sites.c (built as BUILD/tests/stats/stats-sites) under
LD_PRELOAD=libheapprof.so once per seed and rate, reads each site's
cumulative value from `heapprof-decode --functions=cum`, and prints per rate
and site: the true total, the mean estimate over the seeds, its mean error,
the standard deviation the estimator should have (the formula below, computed
by the program from its own allocations), and the standard deviation observed
across the seeds.

    Var = sum over the site's allocations of w^2 (1-p)/p,
    p = 1 - exp(-s/R), w = s for bytes, 1 for objects

`bias z` is the mean error over its standard error (expected sd/sqrt(seeds)):
beyond +-4 a site is systematically high or low. For object counts a second
error column gives the estimate before heapprof truncates each (stack, size)
bucket to an integer (see tests/stats/statslib.py).

Usage: python3 bench/accuracy.py --build BUILD_DIR [--seeds N]
           [--rates 524288,65536,4096] [--values alloc_space,alloc_objects]
"""

import argparse
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path[:0] = [os.path.join(HERE, "..", "tests"), os.path.join(HERE, "..", "tests", "stats")]

import helpers  # noqa: E402
import statslib  # noqa: E402
from statslib import VALUES  # noqa: E402


def num(x):
    """Whole numbers from 100 up, one decimal below (object counts)."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}"


def table(runs, value):
    k = VALUES.index(value)
    n = len(runs)
    objects = not statslib.IS_BYTES[k]
    head = (f"{'site':21}{'true':>12}{'mean est':>14}{'err %':>9}"
            + f"{'exp sd':>12}{'exp sd %':>10}{'obs sd':>12}{'obs/exp':>9}{'bias z':>8}")
    lines = [head]
    for site, st in runs[0].truth.items():
        t = st.truth[k]
        if t == 0:
            continue
        est = [r.reported[site][k] for r in runs]
        mean = statistics.fmean(est)
        sd = st.sd(k)
        obs = statistics.stdev(est) if n > 1 else 0.0
        err = 100 * (mean - t) / t
        exact = sd * 10 < 1e-9 * t + 1e-6
        line = f"{site:21}{t:>12}{num(mean):>14}{err:>+9.3f}"
        line += f"{num(sd):>12}{100 * sd / t:>10.3f}{num(obs):>12}"
        if exact:
            line += f"{'-':>9}{'-':>8}"
        else:
            line += f"{obs / sd:>9.3f}{(mean - t) / (sd / math.sqrt(n)):>+8.2f}"
        lines.append(line)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--seeds", type=int, default=50, help="runs per rate (default 50)")
    ap.add_argument("--rates", default="524288,65536,4096",
                    help="comma-separated HEAPPROF_RATE values")
    ap.add_argument("--values", default="alloc_space",
                    help="comma-separated sample types to tabulate: " + ", ".join(VALUES))
    ap.add_argument("--jobs", type=int, default=0, help="parallel runs (default: CPUs)")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    exe = os.path.join(build, "tests", "stats", "stats-sites")
    lib = os.path.join(build, "src", "libheapprof.so")
    dec = os.path.join(build, "tools", "heapprof-decode")
    for path in (exe, lib, dec):
        if not os.path.exists(path):
            sys.exit(f"accuracy.py: {path} not found: build first (ninja -C {args.build})")
    os.environ["HEAPPROF_LIB"] = lib
    os.environ["HEAPPROF_DECODE"] = dec
    rates = [int(r) for r in args.rates.split(",") if r]
    values = [v for v in args.values.split(",") if v]
    for v in values:
        if v not in VALUES:
            sys.exit(f"accuracy.py: unknown value {v!r}; one of {', '.join(VALUES)}")
    if args.seeds < 2:
        sys.exit("accuracy.py: --seeds must be at least 2")

    tmp = helpers.tempdir()
    start = time.monotonic()
    print(f"heapprof accuracy: {args.seeds} seeds per rate (HEAPPROF_SEED=1..{args.seeds}); "
          "values are cumulative per site, as `heapprof-decode --functions=cum` reports them")
    for rate in rates:
        try:
            runs = statslib.run_many(exe, tmp, rate, list(range(1, args.seeds + 1)),
                                     jobs=args.jobs or None)
        except helpers.Failure as e:
            sys.exit(f"accuracy.py: {e}")
        for v in values:
            print(f"\nrate {rate}, {v}:")
            print(table(runs, v))
    print(f"\n({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
