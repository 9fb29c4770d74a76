"""Shared code of heapprof's accuracy tests (tests/stats/test_accuracy.py) and
benchmark (bench/accuracy.py): running tests/stats/sites.c under the library,
reading its truth and heapprof's estimates, and the bounds that a correct
sampler keeps to.

The estimator. heapprof samples an allocation of s bytes with probability
p = 1 - exp(-s/R) (R = HEAPPROF_RATE), independently of every other
allocation, and a sampled one stands for 1/p allocations. For a site, the
estimate of a value is sum over its allocations of w*B/p, with B ~
Bernoulli(p) and w = s (bytes) or 1 (objects); over every allocation for
alloc_*, over those still live at exit for inuse_*. It is unbiased and

    Var = sum of w^2 (1-p)/p                                       (1)

which the test program computes next to the truth. Each term's deviation
w*B/p - w lies in [-w, w(1-p)/p], so the sum of the deviations obeys
Bennett's inequality: P(deviation >= t) <= exp(-(V/b^2) h(b t/V)),
h(u) = (1+u) ln(1+u) - u, with b the largest single upward step (jump_* in
the truth file) and, for the other side, b the largest w (max_size for bytes,
1 for objects). Unlike a bare k-sigma bound it holds for sites with few
samples, whose estimates are far from normal (skewed upwards); for sites with
many samples it tends to the normal tail exp(-t^2/2V).

What heapprof reports is not quite that sum: the profile holds integers, one
value per (stack, size class) bucket, and heapprof rounds each stack's total
to the nearest integer, sharing it among the stack's buckets (src/record/table.c),
so a site's reported value (what `heapprof-decode --functions=cum` prints,
what users see) is within one unit of the sampler's own estimate (1). A
bucket holds objects of different sizes and is unbiased per sample, so the
unrounded estimate cannot be recovered from the profile; the checks allow
the one unit.
"""

import concurrent.futures
import json
import math
import os
import re

import helpers
from helpers import check

VALUES = ("alloc_objects", "alloc_space", "inuse_objects", "inuse_space")
IS_BYTES = (False, True, False, True)
DEFAULT_RATE = helpers.DEFAULT_RATE

# One-sided failure probability allowed to each bound of a single run's
# estimate. A full run of the stats suite makes about 3.2e4 such one-sided
# checks, so by Bonferroni's inequality a correct sampler fails any with
# probability at most 3.2e-5. For a normal estimate the bound sits at about
# 6.4 standard deviations (Bennett's bound is not tight: the exact normal
# tail there is 8e-11).
ALPHA = 1e-9

# For checking by hand that the tests can fail: STATS_DISTORT=1.02 multiplies
# every estimate read (profile and leak summary) by 1.02.
DISTORT = float(os.environ.get("STATS_DISTORT", "1"))


class SiteTruth:
    """One site's line of the truth file: per value (in VALUES order) the
    true total, the estimator's variance (1), and the largest single
    upward (jump_up) and downward (jump_down) deviation."""

    def __init__(self, name, fields):
        ao, ab, io, ib = (int(x) for x in fields[0:4])
        vao, vab, vio, vib, jo, jb = (float(x) for x in fields[4:10])
        max_size = int(fields[10])
        self.name = name
        self.truth = [ao, ab, io, ib]
        self.var = [vao, vab, vio, vib]
        self.jump_up = [jo, jb, jo, jb]
        self.jump_down = [1.0, float(max_size), 1.0, float(max_size)]

    def sd(self, k):
        return math.sqrt(self.var[k])


def read_truth(path):
    """{site: SiteTruth} from the file stats-sites writes, in file order."""
    out = {}
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        check(header[:5] == ["site", "alloc_objects", "alloc_bytes", "inuse_objects",
                             "inuse_bytes"] and len(header) == 12,
              f"unexpected truth header in {path}: {header}")
        for line in f:
            fields = line.rstrip("\n").split("\t")
            check(len(fields) == 12, f"bad truth line in {path}: {line!r}")
            out[fields[0]] = SiteTruth(fields[0], fields[1:])
    check(out, f"no sites in {path}")
    return out


def unbias_scale(size, rate):
    """1/p(size) as the library computes it (src/record/sampler.c)."""
    if rate <= 1 or size == 0:
        return 1.0
    return 1.0 / -math.expm1(-size / rate)


class Run:
    """One run of stats-sites under heapprof: its truth and heapprof's
    estimates, per site and value.
      reported[site]   decoder's --functions=cum values
      buckets[site]    profile samples (buckets) with the site on the stack:
                       the reported values may be up to that many units low
      leaks[site]      [objects, bytes] from the leak summary (or None)
    """

    def __init__(self, rate, seed):
        self.rate = rate
        self.seed = seed
        self.truth = {}
        self.reported = {}
        self.buckets = {}
        self.leaks = None
        self.profile = None
        self.leak_text = None

    def describe(self):
        return f"rate {self.rate}, seed {self.seed}"


_JSON_SAMPLE = re.compile(r'^\{"values":\[([-0-9,]*)\],"labels":\{([^}]*)\},"stack":')
_JSON_BYTES = re.compile(r'(?:^|,)"bytes":(-?[0-9]+)(?:,|$)')
_JSON_FUNCTION = re.compile(r'"function":"((?:[^"\\]|\\.)*)"')
_JSON_PERIOD = re.compile(r'^"period":(-?[0-9]+),?$', re.M)


def _samples(path):
    """(period, [(values, bytes label or None, {function names})]) of a
    profile, from `heapprof-decode --json`. The decoder writes one sample per line; those
    lines are read with regular expressions, several times faster than
    json.loads on the whole document (profiles at R = 4096 hold ~10^4
    samples). If the layout ever changes, the whole document is parsed."""
    text = helpers.decode_ok(path, "--json")
    out = []
    for line in text.splitlines():
        m = _JSON_SAMPLE.match(line)
        if not m:
            continue
        b = _JSON_BYTES.search(m.group(2))
        names = {json.loads('"' + f + '"') if "\\" in f else f
                 for f in _JSON_FUNCTION.findall(line)}
        out.append(([int(v) for v in m.group(1).split(",")] if m.group(1) else [],
                    int(b.group(1)) if b else None, names))
    period = _JSON_PERIOD.search(text)
    if period and len(out) == text.count('{"values":'):
        return int(period.group(1)), out
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise helpers.Failure(f"heapprof-decode --json printed invalid JSON ({e})")
    return doc["period"], [(s["values"], s["labels"].get("bytes"),
                            {ln["function"] for loc in s["stack"] for ln in loc["lines"]})
                           for s in doc["samples"]]


def _site_sums(samples, sites, rate):
    """Per site: the reported values summed from the samples, and the number
    of samples (buckets)."""
    summed = {s: [0] * 4 for s in sites}
    buckets = {s: 0 for s in sites}
    for i, (values, size, names) in enumerate(samples):
        mine = [s for s in sites if s in names]
        if not mine:
            continue
        check(isinstance(size, int) and size > 0,
              f"sample {i} of a site has no positive bytes label: {values} {names}")
        check(len(values) == 4, f"sample {i} has {len(values)} values")
        for s in mine:
            buckets[s] += 1
            for k in range(4):
                summed[s][k] += values[k]
    return summed, buckets


def leaks_by_site(summary, sites):
    """{site: [objects, bytes]} summed over the leak summary's stacks that
    hold the site (each stack once)."""
    out = {s: [0, 0] for s in sites}
    for stack in summary["stacks"]:
        names = {fr["func"] for fr in stack["frames"]}
        for s in sites:
            if s in names:
                out[s][0] += stack["objects"]
                out[s][1] += stack["bytes"]
    return out


def _distort(values):
    return [v * DISTORT for v in values] if DISTORT != 1 else list(values)


def run_sites(exe, workdir, rate, seed, leaks=False):
    """Runs stats-sites under LD_PRELOAD=libheapprof.so at the rate and seed
    given and reads everything back."""
    tag = f"r{rate}-s{seed}"
    run = Run(rate, seed)
    run.profile = os.path.join(workdir, tag + ".pb.gz")
    truth_path = os.path.join(workdir, tag + ".truth")
    leak_path = os.path.join(workdir, tag + ".leaks")
    proc = helpers.run_program(
        exe, [truth_path], preload=True, profile=run.profile, rate=rate, seed=seed,
        leaks=leak_path if leaks else "off",
        extra_env={"HEAPPROF_LEAK_STACKS": "100000", "HEAPPROF_LEAK_FRAMES": "4"} if leaks
        else None)
    check(proc.returncode == 0,
          f"stats-sites failed under heapprof ({run.describe()}): " + helpers.describe(proc))
    check(os.path.exists(run.profile), f"no profile written ({run.describe()})")
    run.truth = read_truth(truth_path)
    sites = list(run.truth)

    cum = helpers.functions(run.profile, "cum")
    period, samples = _samples(run.profile)
    check(period == rate, f"profile period {period}, want {rate} ({run.describe()})")
    summed, run.buckets = _site_sums(samples, sites, rate)
    for s in sites:
        reported = cum.get(s, [0, 0, 0, 0])
        # The decoder's per-function sums and the samples must agree: each
        # site allocates only from its own frame, never recursively.
        check(reported == summed[s],
              f"{s}: heapprof-decode --functions=cum says {reported}, its samples sum to "
              f"{summed[s]} ({run.describe()})")
        run.reported[s] = _distort(reported)
    if leaks:
        check(os.path.exists(leak_path), f"no leak summary written ({run.describe()})")
        with open(leak_path) as f:
            run.leak_text = f.read()
        summary = helpers.parse_leaks(run.leak_text)
        run.leaks = {s: _distort(vals) for s, vals in leaks_by_site(summary, sites).items()}
    return run


def run_many(exe, workdir, rate, seeds, leaks=False, jobs=None):
    """run_sites for every seed, one process per CPU (reading a profile's
    JSON takes as long as making it, and threads would share one
    interpreter); results in seed order."""
    jobs = jobs or min(len(seeds), os.cpu_count() or 2)
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_sites, exe, workdir, rate, seed, leaks) for seed in seeds]
        return [f.result() for f in futures]


# ---- bounds ------------------------------------------------------------------

def _h(u):
    """h(u) = (1+u) ln(1+u) - u, accurate for small u too."""
    if u < 1e-4:
        return u * u / 2 - u ** 3 / 6 + u ** 4 / 12
    return (1 + u) * math.log1p(u) - u


def bennett(var, b, alpha=ALPHA):
    """The smallest t with P(deviation >= t) <= alpha by Bennett's
    inequality, for a sum of independent zero-mean terms of total variance
    var, each at most b: the t solving (var/b^2) h(b t/var) = ln(1/alpha)."""
    if var <= 0:
        return 0.0
    log_inv = math.log(1 / alpha)
    target = log_inv * b * b / var
    if b <= 0 or target < 1e-12:
        return math.sqrt(2 * var * log_inv)  # the normal limit
    lo, hi = 0.0, 1.0
    while _h(hi) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _h(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi * var / b


def interval(st, k, allowance=0.0):
    """(low, high) that a correct estimate of value k of site st stays in
    but with probability 2*ALPHA. allowance: units the estimate may be off
    by through rounding to integers. A relative 1e-9 (plus 1e-6) covers
    floating point."""
    t = st.truth[k]
    slack = 1e-9 * t + 1e-6
    return (t - bennett(st.var[k], st.jump_down[k]) - allowance - slack,
            t + bennett(st.var[k], st.jump_up[k]) + allowance + slack)


def fmt(x):
    """A number for tables: integers as such, others with 4 significant
    digits."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:.4g}"
