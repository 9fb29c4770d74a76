"""Statistical accuracy of heapprof's estimates: whether users can trust
them. tests/stats/sites.c allocates from named sites of known truth and
writes, next to the truth, the variance of heapprof's estimator at the rate it
runs at:

    Var = sum over the site's allocations of w^2 (1-p)/p,
    p = 1 - exp(-s/R), w = s for bytes, 1 for objects

(over all allocations for alloc_*, over the blocks live at exit for inuse_*).
The checks, each a meson test in suite 'stats':

  exact              HEAPPROF_RATE=1: every site's four values, and its leak
                     summary, are the truth exactly.
  per-run RATE       8 seeds: in every run, every site's alloc_objects,
                     alloc_space, inuse_objects and inuse_space lie within a
                     bound around the truth that a correct sampler leaves with
                     probability below 2*ALPHA = 2e-9 (Bennett's inequality
                     with the variance above; about 6.4 sigma for sites with
                     many samples, wider for skewed ones with few). With
                     about 3.2e4 such one-sided checks in the suite, the
                     chance that a correct sampler fails any is at most
                     3.2e-5 (Bonferroni).
  seeds RATE N       N fixed seeds: the per-run bounds, then over the seeds
                     (i) no site is systematically high or low: the mean of
                     its z-scores (estimate - truth)/sd is within 4/sqrt(N) of
                     0 (each z has mean 0 and variance 1, so the mean has
                     standard deviation 1/sqrt(N): a 4-sigma bound). Where
                     one allocation can move the N-run sum by more than a
                     tenth of its sd, the mean is not close to normal, and
                     Bennett's bound at the same tail probability (3.2e-5 a
                     side) replaces 4/sqrt(N);
                     (ii) the mean relative error is within 1% for every
                     (site, value) where 1% is at least that 4-sigma bound,
                     i.e. sd/truth <= sqrt(N)/400. For objects much smaller
                     than R, sd/truth = 1/sqrt(n) with n the expected samples
                     per run, so this needs n*N >= 160000: with N = 64, 2500
                     samples per run, which the sites have at R = 4096
                     (sized so; REQUIRED_ONE_PERCENT keeps it so);
                     (iii) the spread across seeds matches the formula: the
                     observed standard deviation over sd lies within the
                     5-sigma range of a chi-square with N-1 degrees of freedom
                     (Wilson-Hilferty), where single runs are close to normal
                     (no single step above sd/10);
                     (iv) power: the same data with every estimate scaled by
                     1.02 or 0.98 fails (i) or (ii) wherever (ii) applies, so
                     the test does catch a 2% bias.
                     About 40 (site, value) pairs are judged per rate, each
                     on two estimators, so a correct sampler on a fresh set
                     of seeds would fail (i) with probability at most about
                     80 * 6.3e-5 = 0.5%; the seeds are fixed, so the result
                     is reproducible.
  leaks RATE         8 seeds: the leak summary's per-site estimates equal the
                     profile's inuse values and obey the same bounds.
  pprof              `go tool pprof -raw` and `-top` show every site with the
                     decoder's cumulative values.
  objects-strict RATE
                     the reported object counts held to the bounds with no
                     allowance for rounding; exits 99 on anything but that
                     check failing.

Every check runs on the reported values (what `heapprof-decode
--functions=cum` prints). They are each stack's estimate rounded to the
nearest integer, so their bounds allow one unit either way, nothing more
(objects-strict allows none). Go's rule, truncating every (stack, size)
bucket, made object counts up to 14% low here; that is why heapprof rounds
per stack. A bucket holds one size class of a stack, its objects of
different sizes each unbiased by their own size (src/record/table.c): site_mixed,
site_near_rate and site_realloc allocate many sizes under one stack, so the
checks hold the per-sample unbiasing to the truth.

Seeds are fixed, so the outcome is deterministic (site_threads' four threads
do identical work, so the race for per-thread seeds does not change sums).

Usage: test_accuracy.py SITES_EXE CHECK [ARGS]
Set STATS_DISTORT=1.02 to see the checks fail on distorted estimates.
"""

import math
import os
import re
import statistics
import sys
import traceback

import helpers
import statslib
from helpers import Failure, check
from statslib import VALUES, fmt, interval

PER_RUN_SEEDS = list(range(101, 109))
LEAK_SEEDS = list(range(201, 209))
STRICT_SEEDS = list(range(301, 309))
PPROF_SEED = 7

# (site, value) pairs that must qualify for the 1% check at a rate, so that
# check is never vacuous there: the sites are sized for it at R = 4096.
REQUIRED_ONE_PERCENT = {
    4096: [(s, "alloc_space") for s in (
        "site_tiny", "site_mixed", "site_near_rate", "site_calloc", "site_realloc",
        "site_posix_memalign", "site_aligned_alloc", "site_memalign", "site_threads",
        "site_all_freed", "site_partly_kept")] +
    [(s, "alloc_objects") for s in ("site_tiny", "site_calloc", "site_threads",
                                    "site_all_freed", "site_partly_kept")],
}

ESTIMATORS = ("reported",)


def estimates(run, which):
    return run.reported


def allowance(run, site, which, strict_objects=False, k=0):
    """Units the estimate may be off by through rounding: heapprof rounds each
    stack's total to the nearest integer and shares it among the stack's
    buckets, so a site's reported value is within half a unit per stack of
    the unrounded one (a site is one or two stacks: 1 unit); none for
    reported objects in the strict check."""
    if which != "reported" or (strict_objects and not statslib.IS_BYTES[k]):
        return 0
    return 1


def listing(lines, limit=40):
    """The first `limit` lines of a failure list, and how many were left out."""
    out = "\n".join(lines[:limit])
    if len(lines) > limit:
        out += f"\n  ... and {len(lines) - limit} more"
    return out


# ---- per run -------------------------------------------------------------------

def per_run_violations(run, strict_objects=False, estimators=ESTIMATORS, only_objects=False):
    """Every (site, value, estimator) of one run outside its bound."""
    bad = []
    for site, st in run.truth.items():
        for k, value in enumerate(VALUES):
            if only_objects and statslib.IS_BYTES[k]:
                continue
            for which in estimators:
                est = estimates(run, which)[site][k]
                low, high = interval(st, k, allowance(run, site, which, strict_objects, k))
                if not low <= est <= high:
                    sd = st.sd(k)
                    z = "sd ~ 0" if exact_value(st, k) else \
                        f"z = {(est - st.truth[k]) / sd:+.2f}"
                    bad.append(f"  {run.describe()}: {site} {value} ({which}) = {fmt(est)}, "
                               f"truth {st.truth[k]}, allowed [{fmt(low)}, {fmt(high)}], {z}, "
                               f"{run.buckets[site]} buckets")
    return bad


def check_per_run(runs, strict_objects=False):
    bad = []
    for run in runs:
        bad += per_run_violations(run, strict_objects)
    check(not bad, "estimates outside the bounds a correct sampler keeps to "
          f"(one-sided probability {statslib.ALPHA} each):\n" + listing(bad))


def z_table(runs):
    """Per site and value, the largest |z| over the runs ."""
    lines = [f"{'site':22}" + "".join(f"{v:>15}" for v in VALUES) + "   (max |z| over "
             f"{len(runs)} runs)"]
    for site, st in runs[0].truth.items():
        cells = []
        for k in range(4):
            sd = st.sd(k)
            if exact_value(st, k):
                cells.append("exact")
                continue
            cells.append(f"{max(abs(r.reported[site][k] - st.truth[k]) / sd for r in runs):.2f}")
        lines.append(f"{site:22}" + "".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def same_truth(runs):
    """The program is deterministic at a fixed rate: every run's truth is the
    same, so the runs can be pooled."""
    first = runs[0].truth
    for run in runs[1:]:
        for site, st in run.truth.items():
            check(site in first and st.truth == first[site].truth and
                  st.var == first[site].var,
                  f"{site}: truth differs between seeds ({run.describe()}): "
                  f"{st.truth} vs {first[site].truth}")


def check_per_run_rate(exe, rate):
    tmp = helpers.tempdir()
    runs = statslib.run_many(exe, tmp, rate, PER_RUN_SEEDS)
    same_truth(runs)
    check_per_run(runs)
    print(z_table(runs))


# ---- over seeds ------------------------------------------------------------------

def chi2_sd_ratio_range(n, z=5.0):
    """The range of (sample sd / sd) over n normal values at +-z sigma of
    the chi-square distribution with n-1 degrees of freedom
    (Wilson-Hilferty)."""
    nu = n - 1
    c = 2 / (9 * nu)
    lo = nu * max(0.0, 1 - c - z * math.sqrt(c)) ** 3
    hi = nu * (1 - c + z * math.sqrt(c)) ** 3
    return math.sqrt(lo / nu), math.sqrt(hi / nu)


def seed_stats(runs, site, k, which, scale=1.0):
    """Mean z, mean relative error, mean allowance (in sd and relative) and
    the observed sd of one (site, value, estimator) over the runs."""
    st = runs[0].truth[site]
    t, sd = st.truth[k], st.sd(k)
    ests = [estimates(r, which)[site][k] * scale for r in runs]
    allows = [allowance(r, site, which, False, k) for r in runs]
    mean_err = statistics.fmean(e - t for e in ests)
    mean_allow = statistics.fmean(allows)
    return {
        "zbar": mean_err / sd if sd > 0 else None,
        "allow_z": mean_allow / sd if sd > 0 else None,
        "rel": mean_err / t if t else None,
        "allow_rel": mean_allow / t if t else None,
        "obs_sd": statistics.stdev(ests) if len(ests) > 1 else 0.0,
        "sd": sd,
        "truth": t,
        "mean": statistics.fmean(ests),
    }


def exact_value(st, k):
    """The estimate's sd is below floating-point resolution (every
    allocation is all but surely sampled, e.g. 1 MiB at R = 4096): the
    per-run bounds pin it to the truth and z-scores mean nothing."""
    return st.sd(k) * 10 < 1e-9 * st.truth[k] + 1e-6


# The one-sided tail of the normal distribution at 4 sigma.
ALPHA_MEAN = 3.17e-5


def near_normal(st, k, n):
    """The sum of a value's deviations over n runs is close to normal: no
    single allocation can move it by more than a tenth of its sd."""
    return max(st.jump_up[k], st.jump_down[k]) <= st.sd(k) * math.sqrt(n) / 10


def mean_z_bounds(st, k, n):
    """(low, high) for the mean z-score over n seeds. Each z has mean 0 and
    variance 1, so the mean has sd 1/sqrt(n): +-4/sqrt(n) is a 4-sigma
    bound when the mean is close to normal. When it is not (a site whose few
    large objects are almost always sampled, so that rare misses weigh
    heavily), Bennett's inequality for the sum over the n runs gives the bound
    at the same tail probability."""
    if near_normal(st, k, n):
        b = 4 / math.sqrt(n)
        return -b, b
    # A deviation t of the n-run sum is a mean z of t / (n sd).
    var, per_z = n * st.var[k], n * st.sd(k)
    return (-statslib.bennett(var, st.jump_down[k], ALPHA_MEAN) / per_z,
            statslib.bennett(var, st.jump_up[k], ALPHA_MEAN) / per_z)


def one_percent_applies(st, k, n):
    """1% of the truth is at least the 4-sigma bound on the mean error over
    n seeds (4 sd/sqrt(n) for near-normal estimates)."""
    if exact_value(st, k) or st.truth[k] <= 0:
        return False
    low, high = mean_z_bounds(st, k, n)
    return max(-low, high) * st.sd(k) <= 0.01 * st.truth[k]


def seed_violations(runs, scale=1.0, estimators=ESTIMATORS, one_percent=True):
    """(i) and (ii) over the runs; a list of messages."""
    n = len(runs)
    bad = []
    for site, st in runs[0].truth.items():
        for k, value in enumerate(VALUES):
            if exact_value(st, k):
                continue  # pinned down by the per-run bounds
            low, high = mean_z_bounds(st, k, n)
            for which in estimators:
                s = seed_stats(runs, site, k, which, scale)
                if not low - s["allow_z"] <= s["zbar"] <= high:
                    bad.append(f"  {site} {value} ({which}): mean z {s['zbar']:+.3f} over {n} "
                               f"seeds, allowed [{low - s['allow_z']:+.3f}, {high:+.3f}] "
                               f"(mean relative error {100 * s['rel']:+.3f}%)")
                if one_percent and one_percent_applies(st, k, n) and \
                        not -0.01 - s["allow_rel"] <= s["rel"] <= 0.01:
                    bad.append(f"  {site} {value} ({which}): mean relative error "
                               f"{100 * s['rel']:+.3f}% over {n} seeds, beyond 1% "
                               f"(the 4-sigma bound on it is "
                               f"{100 * max(-low, high) * s['sd'] / s['truth']:.3f}%)")
    return bad


def dispersion_violations(runs):
    """(iii): observed spread over seeds against the formula, for estimates
    close to normal."""
    n = len(runs)
    lo, hi = chi2_sd_ratio_range(n)
    bad = []
    checked = 0
    for site, st in runs[0].truth.items():
        for k, value in enumerate(VALUES):
            sd = st.sd(k)
            if exact_value(st, k) or max(st.jump_up[k], st.jump_down[k]) > sd / 10:
                continue
            checked += 1
            s = seed_stats(runs, site, k, "reported")
            ratio = s["obs_sd"] / sd
            if not lo <= ratio <= hi:
                bad.append(f"  {site} {value}: observed sd {fmt(s['obs_sd'])} over {n} seeds is "
                           f"{ratio:.3f} times the formula's {fmt(sd)}, outside "
                           f"[{lo:.3f}, {hi:.3f}]")
    return bad, checked


def seeds_table(runs):
    n = len(runs)
    lines = [f"{'site':22}{'value':15}{'truth':>12}{'mean err%':>11}{'mean z':>9}"
             f"{'rep. z':>9}{'sd%':>8}{'obs/sd':>8}{'1%?':>5}"]
    for site, st in runs[0].truth.items():
        for k, value in enumerate(VALUES):
            if st.truth[k] == 0:
                continue
            u = seed_stats(runs, site, k, "reported")
            r = seed_stats(runs, site, k, "reported")
            if exact_value(st, k):
                lines.append(f"{site:22}{value:15}{st.truth[k]:>12}{100 * u['rel']:>+11.4f}"
                             f"{'exact':>9}")
                continue
            lines.append(f"{site:22}{value:15}{st.truth[k]:>12}{100 * u['rel']:>+11.4f}"
                         f"{u['zbar']:>+9.3f}{r['zbar']:>+9.3f}"
                         f"{100 * u['sd'] / u['truth']:>8.3f}{u['obs_sd'] / u['sd']:>8.3f}"
                         f"{'yes' if one_percent_applies(st, k, n) else '':>5}")
    return "\n".join(lines)


def check_seeds(exe, rate, nseeds):
    tmp = helpers.tempdir()
    runs = statslib.run_many(exe, tmp, rate, list(range(1, nseeds + 1)))
    same_truth(runs)
    print(f"rate {rate}, {nseeds} seeds; mean err% and mean z of the estimates, "
          "rep. z of the reported ones; sd% = sd/truth per run; obs/sd = observed sd over "
          "the formula's; 1%? = the 1% check applies")
    print(seeds_table(runs))

    failures = []
    bad = []
    for run in runs:
        bad += per_run_violations(run)
    if bad:
        failures.append("per-run bounds:\n" + listing(bad))
    bad = seed_violations(runs)
    if bad:
        failures.append("over the seeds, (i) mean z beyond 4/sqrt(N) or (ii) mean relative "
                        "error beyond 1%:\n" + listing(bad))
    bad, checked = dispersion_violations(runs)
    if bad:
        failures.append("(iii) spread over the seeds unlike the formula's:\n" + listing(bad))
    check(not failures, "\n".join(failures))
    check(checked > 0, "no (site, value) was close enough to normal for the spread check")

    # The 1% check must apply where the sites were sized for it.
    st = runs[0].truth
    missing = [f"{s} {v}" for s, v in REQUIRED_ONE_PERCENT.get(rate, [])
               if not one_percent_applies(st[s], VALUES.index(v), nseeds)]
    check(not missing, f"the 1% check does not apply at rate {rate} with {nseeds} seeds to: "
          + ", ".join(missing) + " (too few samples: more seeds or bigger sites)")

    # (iv) power: a 2% bias must not pass wherever the 1% check applies.
    blind = []
    for site, s in st.items():
        view = _restrict(runs, site)
        for k, value in enumerate(VALUES):
            if not one_percent_applies(s, k, nseeds):
                continue
            for factor in (1.02, 0.98):
                for which in ESTIMATORS:
                    if not seed_violations(view, factor, (which,)):
                        blind.append(f"  {site} {value} ({which}) x{factor}")
    check(not blind, "the checks over seeds miss a 2% bias in:\n" + "\n".join(blind))
    print(f"spread checked on {checked} (site, value) pairs; a 2% bias is caught wherever "
          "the 1% check applies")


def _restrict(runs, site):
    """Views of the runs holding only one site, so that seed_violations
    judges that site alone."""
    out = []
    for r in runs:
        v = statslib.Run(r.rate, r.seed)
        v.truth = {site: r.truth[site]}
        v.reported = {site: r.reported[site]}
        v.buckets = {site: r.buckets[site]}
        out.append(v)
    return out


# ---- leak summary ----------------------------------------------------------------

def check_leaks(exe, rate):
    tmp = helpers.tempdir()
    runs = statslib.run_many(exe, tmp, rate, LEAK_SEEDS, leaks=True)
    bad = []
    for run in runs:
        summary = helpers.parse_leaks(run.leak_text)
        check(summary["header"] is not None or summary["no_leaks"],
              f"no leak summary ({run.describe()}):\n{run.leak_text}")
        if summary["header"]:
            check(summary["header"]["kind"] == "estimated" and summary["header"]["rate"] == rate,
                  f"leak summary header {summary['header']} at rate {rate}")
        check(summary["more"] is None,
              f"leak summary cut short despite HEAPPROF_LEAK_STACKS ({run.describe()})")
        # Each estimated stack says how sure it is: a standard error and its
        # samples. Per site, the reported standard error (from the samples)
        # is near the predicted one (from the truth's variance) once a site
        # has 10 samples or more: within a factor of 3.
        for stack in summary["stacks"]:
            check(stack["sd"] is not None and stack["samples"] >= 1,
                  f"a sampled leak without its uncertainty ({run.describe()}): {stack}")
        for site, st in run.truth.items():
            stacks = [t for t in summary["stacks"] if site in {fr["func"] for fr in t["frames"]}]
            samples = sum(t["samples"] for t in stacks)
            if samples < 10 or exact_value(st, 3):
                continue
            got_sd = sum(t["sd"] ** 2 for t in stacks) ** 0.5
            want_sd = st.sd(3)
            if not want_sd / 3 <= got_sd <= want_sd * 3:
                bad.append(f"  {run.describe()}: {site}: leak summary says ± {got_sd:.0f} "
                           f"({samples} samples), the estimator's sd is {want_sd:.0f}")
        for site, st in run.truth.items():
            objects, nbytes = run.leaks[site]
            rep = run.reported[site]
            # Sums of the same rounded bucket values as the profile's.
            if [objects, nbytes] != [rep[2], rep[3]]:
                bad.append(f"  {run.describe()}: {site}: leak summary {fmt(nbytes)} bytes in "
                           f"{fmt(objects)} objects, profile inuse {fmt(rep[3])} bytes in "
                           f"{fmt(rep[2])} objects")
            for k, est in ((2, objects), (3, nbytes)):
                low, high = interval(st, k, run.buckets[site])
                if not low <= est <= high:
                    sd = st.sd(k)
                    z = "sd ~ 0" if exact_value(st, k) else \
                        f"z = {(est - st.truth[k]) / sd:+.2f}"
                    bad.append(f"  {run.describe()}: {site} leak {VALUES[k]} = {fmt(est)}, "
                               f"truth {st.truth[k]}, allowed [{fmt(low)}, {fmt(high)}], {z}")
    check(not bad, "leak summary estimates wrong:\n" + listing(bad))
    kept = [s for s, st in runs[0].truth.items() if st.truth[3] > 0]
    print(f"leak summary: {len(runs)} runs at rate {rate}; {len(kept)} sites with live "
          f"blocks ({', '.join(kept)}) within bounds and equal to the profile's inuse values")


# ---- exact mode --------------------------------------------------------------------

def check_exact(exe):
    tmp = helpers.tempdir()
    run = statslib.run_sites(exe, tmp, 1, 1, leaks=True)
    summary = helpers.parse_leaks(run.leak_text)
    check(summary["header"] is not None and summary["header"]["kind"] == "exact",
          f"exact mode's leak summary does not say exact:\n{run.leak_text}")
    bad = []
    for site, st in run.truth.items():
        check(st.var == [0.0] * 4, f"{site}: nonzero variance {st.var} in exact mode")
        if run.reported[site] != st.truth:
            bad.append(f"  {site}: reported {run.reported[site]}, truth {st.truth}")
        if run.leaks[site] != st.truth[2:4]:
            bad.append(f"  {site}: leak summary {run.leaks[site][1]} bytes in "
                       f"{run.leaks[site][0]} objects, truth {st.truth[3]} in {st.truth[2]}")
    check(not bad, "exact mode (HEAPPROF_RATE=1) differs from the truth "
          "(alloc_objects alloc_space inuse_objects inuse_space):\n" + "\n".join(bad))
    print(f"exact mode: {len(run.truth)} sites exact")


# ---- go tool pprof ---------------------------------------------------------------

_RAW_SAMPLE = re.compile(r"^\s*(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+):((?:\s+\d+)*)\s*$")
_RAW_LOC = re.compile(r"^\s*(\d+): 0x[0-9a-f]+ M=\d+ (.*)$")
_RAW_INLINE = re.compile(r"^\s+(\S.*)$")


def _raw_function(text):
    """The function of one `go tool pprof -raw` location line part:
    `NAME FILE:LINE s=N` (or `NAME s=N`); "" for a location without a name
    (a C library's static function when its separate debug info is not
    read: not one of the sites)."""
    parts = text.split()
    return parts[0] if parts else ""


def parse_raw(text):
    """(samples [(values, [location ids])], {location id: [function names]})
    from `go tool pprof -raw`."""
    samples, locs = [], {}
    section = None
    last_loc = None
    for line in text.splitlines():
        if line.startswith("Samples:"):
            section = "samples"
            continue
        if line.startswith("Locations"):
            section = "locations"
            continue
        if line.startswith("Mappings"):
            section = "mappings"
            continue
        if section == "samples":
            m = _RAW_SAMPLE.match(line)
            if m:
                samples.append(([int(m.group(i)) for i in range(1, 5)],
                                [int(x) for x in m.group(5).split()]))
        elif section == "locations":
            m = _RAW_LOC.match(line)
            if m:
                last_loc = int(m.group(1))
                locs[last_loc] = [_raw_function(m.group(2))]
                continue
            m = _RAW_INLINE.match(line)
            if m and last_loc is not None:
                locs[last_loc].append(_raw_function(m.group(1)))
    return samples, locs


def check_pprof(exe):
    helpers.go_or_skip()
    tmp = helpers.tempdir()
    run = statslib.run_sites(exe, tmp, statslib.DEFAULT_RATE, PPROF_SEED)
    proc = helpers.pprof(["-raw", run.profile], tmp)
    check(proc.returncode == 0, f"go tool pprof -raw refused the profile:\n{proc.stderr[-2000:]}")
    samples, locs = parse_raw(proc.stdout)
    check(samples and locs, "no samples or locations in pprof -raw output:\n" +
          proc.stdout[:2000])
    cum = {s: [0] * 4 for s in run.truth}
    for values, ids in samples:
        names = {f for i in ids for f in locs.get(i, [])}
        for s in run.truth:
            if s in names:
                cum[s] = [a + b for a, b in zip(cum[s], values)]
    bad = [f"  {s}: pprof -raw {cum[s]}, decoder {run.reported[s]}"
           for s in run.truth if cum[s] != run.reported[s]]
    check(not bad, "go tool pprof -raw and heapprof-decode disagree per site "
          "(cumulative alloc_objects alloc_space inuse_objects inuse_space):\n" + "\n".join(bad))
    top = helpers.pprof_top(run.profile, "alloc_space", tmp)
    bad = [f"  {s}: pprof -top cum {top.get(s, (None, None))[1]}, decoder {run.reported[s][1]}"
           for s in run.truth if top.get(s, (None, None))[1] != run.reported[s][1]]
    check(not bad, "go tool pprof -top -sample_index=alloc_space disagrees with the decoder:\n" +
          "\n".join(bad))
    print(f"go tool pprof -raw and -top agree with the decoder on {len(run.truth)} sites")


# ---- objects without a rounding allowance ----------------------------------------

def check_objects_strict(exe, rate):
    """Exit 1 when the reported object counts fail the bounds without an
    allowance for rounding, 0 when they pass, 99 when anything else goes
    wrong. (Go truncates each (stack, size) bucket; that biased object counts
    some 14% low here, which this test caught before heapprof rounded per
    stack.)"""
    try:
        tmp = helpers.tempdir()
        runs = statslib.run_many(exe, tmp, rate, STRICT_SEEDS)
        same_truth(runs)
        # Everything but the strict check must hold.
        check_per_run(runs)
    except Failure as e:
        print("FAIL (not the check under test): " + str(e))
        sys.exit(99)
    bad = []
    for run in runs:
        bad += per_run_violations(run, strict_objects=True, estimators=("reported",),
                                  only_objects=True)
    n = len(runs)
    for site, st in runs[0].truth.items():
        for k in (0, 2):
            if exact_value(st, k):
                continue
            s = seed_stats(runs, site, k, "reported")
            low, high = mean_z_bounds(st, k, n)
            if not low <= s["zbar"] <= high:
                bad.append(f"  {site} {VALUES[k]}: mean z {s['zbar']:+.3f} over {n} seeds "
                           f"(mean relative error {100 * s['rel']:+.3f}%)")
    if bad:
        print("FAIL: reported object counts are biased:\n" + listing(bad))
        sys.exit(1)
    print("reported object counts are unbiased without any rounding allowance")


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    exe = os.path.abspath(sys.argv[1])
    what, args = sys.argv[2], sys.argv[3:]
    if what == "exact":
        helpers.main(check_exact, exe)
    elif what == "per-run":
        helpers.main(check_per_run_rate, exe, int(args[0]))
    elif what == "seeds":
        helpers.main(check_seeds, exe, int(args[0]), int(args[1]))
    elif what == "leaks":
        helpers.main(check_leaks, exe, int(args[0]))
    elif what == "pprof":
        helpers.main(check_pprof, exe)
    elif what == "objects-strict":
        # Registered should_fail: any failure but the one under test must
        # show as an error (99), not as the expected failure.
        try:
            check_objects_strict(exe, int(args[0]))
        except SystemExit:
            raise
        except BaseException:
            traceback.print_exc()
            sys.exit(99)
        sys.exit(0)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
