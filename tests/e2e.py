"""End-to-end tests: the examples run under heapprof, linked or preloaded, in
exact mode (HEAPPROF_RATE=1), and what comes out is held to the truth the
examples were written to produce.

Usage: e2e.py CHECK EXAMPLE MODE PLAIN_EXE LINKED_EXE
  CHECK    output | valid | pprof | truth | leaks   (per example and mode)
           unset | relative-path | sampled | seed    (MODE both)
  MODE     linked (run LINKED_EXE) | preload (LD_PRELOAD on PLAIN_EXE) | both
           | over-jemalloc | over-mimalloc (PLAIN_EXE with LD_PRELOAD="libheapprof.so
           ALLOCATOR": heapprof over another allocator, C++ new/delete included)
"""

import os
import re
import shutil
import sys

import helpers
from helpers import check

# Per-function truth as heapprof counts requests, cumulative over the stack:
# (alloc_objects, alloc_space, inuse_objects, inuse_space). The same tables
# open examples/*.c and examples/containers.cpp: change both together.
TRUTH = {
    "leaky": {
        "source": "leaky.c",
        "functions": {
            "leak_buffers": (10, 10000, 10, 10000),
            "leak_names": (4, 39, 4, 39),
            "leak_table": (1, 2000, 1, 2000),
            "grow_log": (9, 8176, 1, 4096),
            "churn": (100, 25600, 0, 0),
            "aligned_work": (6, 2276, 0, 0),
        },
        # The leaf frame of each site's allocations (the function that
        # called the allocator): the site itself, or the library function it
        # called. Sites left out allocate through inlined library code.
        "leaf": {"leak_buffers": None, "leak_names": "strdup", "leak_table": None,
                 "grow_log": None, "churn": None, "aligned_work": None},
    },
    "containers": {
        "source": "containers.cpp",
        "functions": {
            "app::leak_nodes": (25, 1600, 25, 1600),
            "app::scratch": (3, 204, 0, 0),
            "app::fill_vector": (8, 1020, 0, 0),
            "app::fill_map": (20, 960, 0, 0),
            "app::build_string": (3, 213, 0, 0),
        },
        # fill_vector, fill_map and build_string allocate through libstdc++
        # templates, whose frames sit between the site and operator new.
        "leaf": {"app::leak_nodes": None, "app::scratch": None},
        # Symbol names the profile must carry as system_name (mangled).
        "mangled": {"app::leak_nodes": "_ZN3app10leak_nodesEi"},
    },
    "threads": {
        "source": "threads.c",
        "functions": {
            "worker": (256, 32768, 0, 0),
            "thread_leak": (20, 1440, 20, 1440),
        },
        "leaf": {"worker": None, "thread_leak": None},
    },
}

# heapprof over another allocator: the MODE names it (helpers.ALLOCATORS).
OVER = {"over-" + name: name for name in helpers.ALLOCATORS}


def allocator_lib(mode):
    name = OVER[mode]
    path = helpers.allocator_lib(name)
    if not path:
        helpers.skip(f"{name} is not installed (Debian package {helpers.ALLOCATORS[name][0]})")
    return path


SAMPLE_TYPES = [["alloc_objects", "count"], ["alloc_space", "bytes"],
                ["inuse_objects", "count"], ["inuse_space", "bytes"]]
DEFAULT_RATE = helpers.DEFAULT_RATE


class Example:
    def __init__(self, name, mode, plain, linked):
        self.name = name
        self.mode = mode
        # Absolute, since some checks run the programs from other directories.
        self.plain = os.path.abspath(plain)
        self.linked = os.path.abspath(linked)
        self.truth = TRUTH[name]
        self.tmp = helpers.tempdir()

    def modes(self):
        return ["linked", "preload"] if self.mode == "both" else [self.mode]

    def run(self, args=(), mode=None, profile="default", **kw):
        """Runs the example under heapprof (mode linked or preload) with
        HEAPPROF=profile (a file in the temp dir by default; None leaves it
        unset) and exact mode unless rate= says otherwise."""
        mode = mode or self.mode
        if profile == "default":
            profile = os.path.join(self.tmp, f"{self.name}-{mode}.pb.gz")
        exe = self.linked if mode == "linked" else self.plain
        if mode in OVER:
            env = dict(kw.pop("extra_env", None) or {})
            env["LD_PRELOAD"] = helpers.lib_path() + " " + allocator_lib(mode)
            kw["extra_env"] = env
        return helpers.run_program(exe, args, preload=(mode != "linked"), profile=profile, **kw)

    def baseline(self, args=()):
        return helpers.run_program(self.plain, args, rate=None)

    def profile(self, mode=None, **kw):
        """Runs the example in exact mode; returns the profile's path."""
        mode = mode or self.mode
        path = os.path.join(self.tmp, f"{self.name}-{mode}.pb.gz")
        proc = self.run(mode=mode, profile=path,
                        leaks=os.path.join(self.tmp, f"leaks-{mode}.txt"), **kw)
        check(proc.returncode == 0, f"{self.name} ({mode}) failed under heapprof: " +
              helpers.describe(proc))
        check(os.path.exists(path), f"{self.name} ({mode}) wrote no profile at {path}")
        return path


def user_stderr(text):
    """stderr without the leak summary's lines: what the program itself said."""
    return "\n".join(line for line in text.splitlines() if not helpers.is_summary_line(line))


# ---- (a) output and exit status -----------------------------------------------

def check_output(ex):
    for args in ([], ["exit", "3"]):
        base = ex.baseline(args)
        want_rc = 3 if args else 0
        check(base.returncode == want_rc,
              f"{ex.name} {' '.join(args)} without heapprof: " + helpers.describe(base))
        path = os.path.join(ex.tmp, f"out{len(args)}.pb.gz")
        proc = ex.run(args, profile=path)
        check(proc.stdout == base.stdout,
              f"stdout differs under heapprof ({ex.mode}, args {args}):\n"
              f"--- without ---\n{base.stdout}--- with ---\n{proc.stdout}")
        check(proc.returncode == base.returncode,
              f"exit status {proc.returncode} under heapprof, {base.returncode} without "
              f"(args {args}): " + helpers.describe(proc))
        check(user_stderr(proc.stderr) == user_stderr(base.stderr),
              f"stderr differs beyond the leak summary (args {args}):\n{proc.stderr}")
        # The summary goes to stderr when HEAPPROF_LEAKS is unset.
        summary = helpers.parse_leaks(proc.stderr)
        check(summary["header"] is not None or summary["no_leaks"],
              f"no leak summary on stderr (args {args}):\n{proc.stderr}")
        check(os.path.exists(path), f"no profile written (args {args})")
        helpers.decode_ok(path)
    # Written atomically: no temporary file may be left beside the profile.
    left = sorted(f for f in os.listdir(ex.tmp) if not f.endswith(".pb.gz"))
    check(left == [], f"files left beside the profile: {left}")


# ---- (b) valid profile ----------------------------------------------------------

def check_valid(ex):
    path = ex.profile()
    helpers.decode_ok(path)  # the text form validates
    doc = helpers.decode_json(path)
    check(doc["sample_types"] == SAMPLE_TYPES, f"sample types {doc['sample_types']}")
    check(doc["period_type"] == ["space", "bytes"], f"period type {doc['period_type']}")
    check(doc["period"] == 1, f"period {doc['period']} in exact mode, want 1")
    check(doc["time_nanos"] > 0, "time_nanos not set")
    check(doc["samples"], "no samples")
    check(doc["mappings"], "no mappings")
    for m in doc["mappings"]:
        check(m["file"] != "" or m["limit"] == 0, f"mapping without a file name: {m}")
    # Build ids, which heapprof reads from the loaded objects' notes in
    # memory, are the ones in the files (as readelf reads them).
    readelf = shutil.which("readelf")
    if readelf:
        for m in doc["mappings"]:
            if not m["file"].startswith("/") or not os.path.exists(m["file"]):
                continue
            out = helpers.run([readelf, "-n", m["file"]]).stdout
            want = re.search(r"Build ID: ([0-9a-f]+)", out)
            check(m["build_id"] == (want.group(1) if want else ""),
                  f"{m['file']}: build id {m['build_id']!r} in the profile, "
                  f"{want.group(1) if want else 'none'} in the file")
    else:
        print("note: readelf (binutils) not installed: build ids not compared")
    for i, s in enumerate(doc["samples"]):
        check(s["stack"], f"sample {i} has an empty stack")
        size = s["labels"].get("bytes")
        check(isinstance(size, int) and size >= 0, f"sample {i} lacks the bytes label: {s}")
        ao, asz, io, isz = s["values"]
        # Exact mode, one sample per (stack, size): values are counts times size.
        check(asz == ao * size and isz == io * size,
              f"sample {i}: values {s['values']} do not match bytes={size}")
        check(0 <= io <= ao and ao >= 1, f"sample {i}: inconsistent counts {s['values']}")
    keys = [(tuple(loc["address"] for loc in s["stack"]), s["labels"].get("bytes"))
            for s in doc["samples"]]
    check(len(keys) == len(set(keys)), "two samples share a stack and object size")


# ---- (b) valid for go tool pprof ----------------------------------------------------

def check_pprof(ex):
    helpers.go_or_skip()
    path = ex.profile()
    proc = helpers.pprof(["-raw", path], ex.tmp)
    check(proc.returncode == 0,
          f"go tool pprof -raw refused the profile:\n{proc.stderr[-2000:]}")
    check("PeriodType: space bytes" in proc.stdout,
          "pprof -raw shows no space/bytes period type:\n" + proc.stdout[:1000])
    check("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes"
          in proc.stdout, "pprof -raw shows other sample types:\n" + proc.stdout[:1000])
    for fn in ex.truth["functions"]:
        check(fn in proc.stdout, f"pprof -raw does not name {fn}")


# ---- (c) per-function truth ---------------------------------------------------------

def check_truth(ex):
    path = ex.profile()
    cum = helpers.by_short_name(helpers.functions(path, "cum"))
    wrong = []
    for fn, want in ex.truth["functions"].items():
        got = cum.get(fn)
        if got is None or tuple(got) != want:
            wrong.append(f"  {fn}: got {got}, want {list(want)}")
    check(not wrong, "per-function values (alloc_objects alloc_space inuse_objects "
          "inuse_space, cumulative) differ from the truth:\n" + "\n".join(wrong) +
          "\nheapprof-decode --functions=cum:\n" + helpers.decode_ok(path, "--functions=cum"))

    # The leaf frame is the function that called the allocator.
    doc = helpers.decode_json(path)
    for fn, via in ex.truth["leaf"].items():
        for s in doc["samples"]:
            names = [helpers.short_name(line["function"])
                     for loc in s["stack"] for line in loc["lines"]]
            if fn not in names:
                continue
            pos = names.index(fn)
            if via:
                check(pos == 1 and via in names[0],
                      f"{fn} allocates through {via}: want stack {via} <- {fn}, got {names}")
            else:
                # C++: operator new may stay a frame of its own under the site.
                check(pos == 0 or (pos == 1 and names[0].startswith("operator new")),
                      f"the leaf frame of {fn}'s allocations is not {fn}: {names}")
    for fn, mangled in ex.truth.get("mangled", {}).items():
        found = [line for s in doc["samples"] for loc in s["stack"] for line in loc["lines"]
                 if helpers.short_name(line["function"]) == fn]
        check(found, f"no frame named {fn}")
        check(found[0]["system_name"] == mangled,
              f"{fn}: system_name {found[0]['system_name']!r}, want {mangled!r}")
        check(found[0]["function"] != mangled, f"{fn} is not demangled")

    # And `go tool pprof -top` names the functions with the same values.
    if helpers.go_or_skip_soft():
        for index, col in (("inuse_space", 3), ("alloc_space", 1)):
            top = helpers.pprof_top(path, index, ex.tmp)
            short = {}
            for name, (flat, cumv) in top.items():
                short.setdefault(helpers.short_name(name), cumv)
            wrong = [f"  {fn}: cum {short.get(fn)}, want {want[col]}"
                     for fn, want in ex.truth["functions"].items()
                     if want[col] and short.get(fn) != want[col]]
            check(not wrong, f"go tool pprof -top -sample_index={index} differs:\n" +
                  "\n".join(wrong) + "\npprof names: " + ", ".join(sorted(top)))


# ---- (d) leak summary -----------------------------------------------------------------

def check_leaks(ex):
    leaks_file = os.path.join(ex.tmp, "leaks.txt")
    proc = ex.run(leaks=leaks_file)
    check(proc.returncode == 0, "run failed: " + helpers.describe(proc))
    check(not any(helpers.is_summary_line(l) for l in proc.stderr.splitlines()),
          "leak summary on stderr although HEAPPROF_LEAKS was set:\n" + proc.stderr)
    check(os.path.exists(leaks_file), "HEAPPROF_LEAKS file not written")
    with open(leaks_file, errors="replace") as f:
        text = f.read()
    summary = helpers.parse_leaks(text)
    check(summary["header"] is not None, "no leak summary header in:\n" + text)
    head = summary["header"]
    check(head["kind"] == "exact" and head["rate"] == 1,
          f"exact mode not reported as (exact, rate 1): {head}")
    check(summary["more"] is None, "summary cut short ('... and N more'):\n" + text)

    sites = ex.truth["functions"]
    want = {fn: (v[2], v[3]) for fn, v in sites.items() if v[2]}
    got = {}
    site_files = []
    for i, stack in enumerate(summary["stacks"]):
        names = [helpers.short_name(f["func"] or "") for f in stack["frames"]]
        site = next((n for n in names if n in sites), None)
        check(site is not None and site in want,
              f"leak #{i + 1} ({stack['bytes']} bytes in {stack['objects']} objects) "
              f"is not from a leaking user function (want one of {sorted(want)}): "
              f"{names}\n{text}")
        frame = stack["frames"][names.index(site)]
        check(frame["file"] is not None and frame["file"].endswith(ex.truth["source"])
              and frame["line"] > 0,
              f"leak #{i + 1}: frame {site} lacks `at .../{ex.truth['source']}:LINE`: {frame}")
        site_files.append(frame["file"])
        objs, nbytes = got.get(site, (0, 0))
        got[site] = (objs + stack["objects"], nbytes + stack["bytes"])
    check(got == want, f"leaks per function {got}, want {want}:\n{text}")
    check(head["bytes"] == sum(b for _, b in want.values()) and
          head["objects"] == sum(o for o, _ in want.values()) and
          head["stacks"] == len(summary["stacks"]),
          f"summary header {head} disagrees with the truth {want}:\n{text}")
    # Checked last so that a wrong count is reported first: the format shows
    # source files by absolute path, usable from any directory.
    for i, file in enumerate(site_files):
        check(os.path.isabs(file), f"leak #{i + 1}: source file {file!r} is not an absolute "
              f"path (the documented form is `FUNC at /abs/path/{ex.truth['source']}:LINE`)")


# ---- environment variables (MODE both) --------------------------------------------------

def check_unset(ex):
    base = ex.baseline()
    for mode in ex.modes():
        cwd = os.path.join(ex.tmp, "cwd-" + mode)
        os.makedirs(cwd)
        exe = ex.linked if mode == "linked" else ex.plain
        proc = helpers.run_program(exe, preload=(mode == "preload"), rate=None, cwd=cwd)
        check(proc.returncode == base.returncode and proc.stdout == base.stdout,
              f"{mode}, HEAPPROF unset: output differs: " + helpers.describe(proc))
        check(proc.stderr == base.stderr,
              f"{mode}, HEAPPROF unset: the library spoke:\n{proc.stderr}")
        check(os.listdir(cwd) == [], f"{mode}, HEAPPROF unset: files written: "
              f"{os.listdir(cwd)}")


def check_relative_path(ex):
    for mode in ex.modes():
        start = os.path.join(ex.tmp, "start-" + mode)
        elsewhere = os.path.join(ex.tmp, "elsewhere-" + mode)
        for d in (start, elsewhere):
            os.makedirs(os.path.join(d, "out"))
        # leaky changes directory before it allocates; the profile still
        # belongs where HEAPPROF pointed when the program started.
        proc = ex.run(["chdir", elsewhere], mode=mode, profile="out/prof.pb.gz", cwd=start,
                      leaks=os.devnull)
        check(proc.returncode == 0, f"{mode}: " + helpers.describe(proc))
        check(not os.path.exists(os.path.join(elsewhere, "out", "prof.pb.gz")),
              f"{mode}: relative HEAPPROF resolved against the cwd at exit, not at start-up")
        path = os.path.join(start, "out", "prof.pb.gz")
        check(os.path.exists(path), f"{mode}: no profile at {path}")
        helpers.decode_ok(path)


def check_sampled(ex):
    for mode in ex.modes():
        for rate, env_rate in ((DEFAULT_RATE, None), (4096, 4096)):
            path = os.path.join(ex.tmp, f"sampled-{mode}-{rate}.pb.gz")
            proc = ex.run(mode=mode, profile=path, rate=env_rate, seed=1)
            check(proc.returncode == 0, f"{mode}: " + helpers.describe(proc))
            doc = helpers.decode_json(path)
            check(doc["period"] == rate, f"{mode}: period {doc['period']}, want {rate}")
            check(doc["sample_types"] == SAMPLE_TYPES and doc["period_type"] == ["space", "bytes"],
                  f"{mode}: wrong types {doc['sample_types']} / {doc['period_type']}")
            summary = helpers.parse_leaks(proc.stderr)
            head = summary["header"]
            check(summary["no_leaks"] or (head and head["kind"] == "estimated"
                                          and head["rate"] == rate),
                  f"{mode}, rate {rate}: want an '(estimated, rate {rate})' summary or "
                  f"'no leaks':\n{proc.stderr}")
            # Unbiased estimates can exceed the truth, never a sample's count
            # times its size by more than rounding.
            for s in doc["samples"]:
                check(all(v >= 0 for v in s["values"]), f"negative values {s}")
            if helpers.go_or_skip_soft():
                g = helpers.pprof(["-raw", path], ex.tmp)
                check(g.returncode == 0, f"pprof refused the sampled profile: {g.stderr[-1000:]}")


def check_seed(ex):
    """A single-threaded program with a fixed HEAPPROF_SEED samples the same
    allocations every run."""
    for mode in ex.modes():
        outs = []
        for i in range(2):
            path = os.path.join(ex.tmp, f"seed-{mode}-{i}.pb.gz")
            proc = ex.run(mode=mode, profile=path, rate=4096, seed=12345, leaks=os.devnull)
            check(proc.returncode == 0, f"{mode}: " + helpers.describe(proc))
            outs.append(helpers.decode_ok(path, "--functions=flat"))
        check(outs[0] == outs[1], f"{mode}: two runs with HEAPPROF_SEED=12345 differ:\n"
              f"{outs[0]}---\n{outs[1]}")


CHECKS = {"output": check_output, "valid": check_valid, "pprof": check_pprof,
          "truth": check_truth, "leaks": check_leaks, "unset": check_unset,
          "relative-path": check_relative_path, "sampled": check_sampled, "seed": check_seed}

if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] not in CHECKS or sys.argv[2] not in TRUTH or \
            sys.argv[3] not in ("linked", "preload", "both", *OVER):
        print(__doc__)
        sys.exit(2)
    check_name, name, mode, plain, linked = sys.argv[1:]
    helpers.main(CHECKS[check_name], Example(name, mode, plain, linked))
