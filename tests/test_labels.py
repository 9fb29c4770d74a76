"""Thread names and program-set labels on heap samples, on
examples/labels.c: three named worker threads, labels tenant and kind pushed
around requests, some allocations under no label.

Usage: test_labels.py CHECK LABELS_EXE
  exact     HEAPPROF_RATE=1: per (thread, tenant, kind), the four values of
            request_alloc's samples equal the program's own counts; samples
            made under no label carry no program label; the leak summary
            names the worker threads
  pprof     `go tool pprof -tagfocus` per thread and per kind gives the
            program's in-use and allocated bytes; -tags lists the labels
  limits    the API's return values past its limits, and that a failed push
            still pairs with its pop
  sampled   the default rate with a fixed seed: per kind, the estimates lie
            within 6 standard deviations of the program's counts (the
            estimator's variance, from the sizes the program allocated)
  live      HEAPPROF_HTTP: /debug/pprof/heap (the profile) and ?debug=1 (the
            text) carry the labels, with the program's in-use counts
  off       HEAPPROF unset: pushes return 0, the program runs the same
"""

import collections
import os
import re
import select
import subprocess
import sys
import urllib.request

import helpers
from helpers import check

_TRUTH = re.compile(r"^truth thread=(\S+) tenant=(\S+) kind=(\S+) alloc_objects=(\d+) "
                    r"alloc_bytes=(\d+) inuse_objects=(\d+) inuse_bytes=(\d+)$")


def truth_of(stdout):
    out = {}
    for line in stdout.splitlines():
        m = _TRUTH.match(line)
        if m:
            out[m.group(1, 2, 3)] = [int(m.group(i)) for i in range(4, 8)]
    check(len(out) == 21, f"want 21 truth lines (3 threads x 7), got {len(out)}")
    return out


def run(exe, tmp, rate, args=(), seed=None):
    profile = os.path.join(tmp, "labels.pb.gz")
    leaks = os.path.join(tmp, "leaks.txt")
    r = helpers.run_program(exe, args, profile=profile, rate=rate, seed=seed, leaks=leaks)
    check(r.returncode == 0, "labels-linked failed: " + helpers.describe(r))
    return r, profile, leaks


def by_labels(profile):
    """{(thread, tenant, kind): [4 values]} over the samples allocated by
    request_alloc itself (the leaf frame)."""
    doc = helpers.decode_json(profile)
    sums = collections.defaultdict(lambda: [0, 0, 0, 0])
    for s in doc["samples"]:
        leaf = s["stack"][0]["lines"] if s["stack"] else []
        if not leaf or leaf[0]["function"] != "request_alloc":
            continue
        lab = s["labels"]
        key = (lab.get("thread", "?"), lab.get("tenant", "-"), lab.get("kind", "-"))
        for k in range(4):
            sums[key][k] += s["values"][k]
    return dict(sums)


def check_exact(exe):
    tmp = helpers.tempdir()
    r, profile, leaks = run(exe, tmp, 1)
    truth = truth_of(r.stdout)
    got = by_labels(profile)
    bad = [f"  {k}: profile {got.get(k)}, program {v}" for k, v in sorted(truth.items())
           if got.get(k) != v]
    extra = [f"  {k}: {v}" for k, v in got.items() if k not in truth]
    check(not bad and not extra,
          "per (thread, tenant, kind), profile against the program's counts:\n" +
          "\n".join(bad + extra))
    with open(leaks) as f:
        text = f.read()
    summary = helpers.parse_leaks(text)
    threads = {t for s in summary["stacks"] for t in s["threads"]}
    check({"worker-0", "worker-1", "worker-2"} <= threads,
          f"the leak summary names threads {sorted(threads)}:\n{text}")
    print(f"exact: {len(truth)} (thread, tenant, kind) combinations exact; leak summary "
          f"threads {sorted(threads)}")


def check_pprof(exe):
    helpers.go_or_skip()
    tmp = helpers.tempdir()
    r, profile, _ = run(exe, tmp, 1)
    truth = truth_of(r.stdout)
    tags = helpers.pprof(["-tags", profile], tmp)
    check(tags.returncode == 0, "pprof -tags: " + helpers.describe(tags))
    for word in ("thread", "worker-1", "tenant", "kind", "scan"):
        check(word in tags.stdout, f"pprof -tags does not show {word}:\n{tags.stdout[:2000]}")
    for tag, pick in (("thread=worker-1", lambda k: k[0] == "worker-1"),
                      ("kind=put", lambda k: k[2] == "put")):
        for index, col in (("inuse_space", 3), ("alloc_space", 1)):
            want = sum(v[col] for k, v in truth.items() if pick(k))
            # -raw prints all four values of every sample kept.
            out = helpers.pprof(["-raw", "-sample_index=" + index, "-tagfocus=" + tag,
                                 "-focus=request_alloc", "-ignore=keep_alive", profile], tmp)
            check(out.returncode == 0, "pprof -raw: " + helpers.describe(out))
            total = 0
            for line in out.stdout.splitlines():
                m = re.match(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+): ", line)
                if m:
                    total += int(m.group(col + 1))
            check(total == want, f"pprof -tagfocus={tag} -sample_index={index}: {total}, "
                  f"the program allocated {want}")
    print("pprof: -tags lists the labels; -tagfocus per thread and per kind is exact")


def check_limits(exe):
    tmp = helpers.tempdir()
    r, profile, _ = run(exe, tmp, 1, args=("limits",))
    got = dict(re.findall(r"^limits (\S+) (-?\d+)$", r.stdout, re.M))
    want = {"null-key": "-22", "long-key": "-36", "long-value": "-36",
            "one-too-many": "-28", "balanced": "0"}
    check(got == want, f"push results {got}, want {want} (EINVAL, ENAMETOOLONG, ENOSPC, 0)")
    # The failed pushes left the workers' labels whole.
    truth = truth_of(r.stdout)
    got_vals = by_labels(profile)
    check(all(got_vals.get(k) == v for k, v in truth.items()),
          "after failed pushes, the labels no longer match the program's counts")
    print(f"limits: {got}")


def check_sampled(exe):
    tmp = helpers.tempdir()
    rate = 65536
    r, profile, _ = run(exe, tmp, rate, seed=11)
    truth = truth_of(r.stdout)
    got = by_labels(profile)
    for kind in ("get", "put", "scan"):
        want = sum(v[1] for k, v in truth.items() if k[2] == kind)
        est = sum(v[1] for k, v in got.items() if k[2] == kind)
        # The variance of the bytes estimate is sum s^2 (1-p)/p over the
        # allocations, and (1-p)/p <= R/s for p = 1 - exp(-s/R), so it is at
        # most R times the bytes allocated.
        sd = (want * rate) ** 0.5
        check(abs(est - want) <= 6 * sd,
              f"kind={kind}: estimated {est} bytes, allocated {want}, sd {sd:.0f}")
    print("sampled: per kind within 6 sd")


def check_live(exe):
    tmp = helpers.tempdir()
    env = helpers.set_heapprof(helpers.base_env(), profile=os.path.join(tmp, "l.pb.gz"),
                               rate=1, leaks="off")
    env["HEAPPROF_HTTP"] = "127.0.0.1:0"
    proc = subprocess.Popen([exe, "wait"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 20)
        line = proc.stderr.readline() if ready else ""
        m = re.search(r"serving (http://127\.0\.0\.1:\d+/debug/pprof/)", line)
        check(m, f"no endpoint announced: {line!r}")
        lines = [proc.stdout.readline() for _ in range(21)]
        truth = truth_of("".join(lines))
        with urllib.request.urlopen(m.group(1) + "heap?debug=1", timeout=20) as r:
            text = r.read().decode()
        for word in ("# labels: ", "thread=worker-2", "tenant=b", "kind=get"):
            check(word in text, f"?debug=1 lacks {word!r}:\n{text[:2000]}")
        profile = os.path.join(tmp, "live.pb.gz")
        with urllib.request.urlopen(m.group(1) + "heap", timeout=20) as r, \
                open(profile, "wb") as f:
            f.write(r.read())
        got = by_labels(profile)
        bad = [f"  {k}: live profile {got.get(k)}, program {v}" for k, v in sorted(truth.items())
               if got.get(k) != v]
        check(not bad, "/debug/pprof/heap per (thread, tenant, kind):\n" + "\n".join(bad))
        # The program rewrote its title; cmdline still gives how it started.
        with urllib.request.urlopen(m.group(1) + "cmdline", timeout=20) as r:
            cmdline = r.read()
        check(cmdline == (exe + "\0wait").encode(),
              f"/debug/pprof/cmdline after a title rewrite: {cmdline!r}")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    print("live: /debug/pprof/heap and ?debug=1 carry the labels, exact")


def check_off(exe):
    r = helpers.run_program(exe, ("limits",), rate=None)
    check(r.returncode == 0, helpers.describe(r))
    got = dict(re.findall(r"^limits (\S+) (-?\d+)$", r.stdout, re.M))
    check(set(got.values()) == {"0"}, f"with profiling off every push returns 0: {got}")
    print("off: pushes are no-ops")


CHECKS = {"exact": check_exact, "pprof": check_pprof, "limits": check_limits,
          "sampled": check_sampled, "live": check_live, "off": check_off}

if __name__ == "__main__":
    helpers.main(CHECKS[sys.argv[1]], sys.argv[2])
