#!/usr/bin/env python3
"""heapprof's exact mode against heaptrack, side by side: does exact mode
scale to deep, varied programs?

usage: python3 bench/exact_vs_heaptrack.py --build BUILD_DIR [--rounds 2] [--runs 3]
                                           [--py-n 60000] [--only deep,python] [--out FILE]
                                           [--before OTHER_BUILD_DIR] [--python PATH]

Two workloads, each run uninstrumented, under heapprof in exact mode
(`LD_PRELOAD=BUILD/src/libheapprof.so HEAPPROF=TMP/out.pb.gz HEAPPROF_RATE=1`)
and under heaptrack (`heaptrack -o TMP/ht PROGRAM`), alternating: every
round runs each configuration once, the first one rotated from round to
round. Medians of --runs rounds.
- deep: `bench/deep_tree ROUNDS` (binary trees through five mutually
  recursive builders, 20-30 frames deep, 50 sites, about 70 MB alone);
- python: Debian's /usr/bin/python3 (or --python PATH) with
  PYTHONMALLOC=malloc running bench/py_workload.py N (dict and string
  churn; every object from malloc).

What is measured, per run, for the whole process tree (heaptrack is a shell
script that starts the program, heaptrack_interpret and a compressor, and
waits for all of them):
- wall: from the start to the exit of the last process of the tree. This
  process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
  a descendant that outlives its parent is reparented here and waited for.
- CPU: user + system of every process of the tree, from
  getrusage(RUSAGE_CHILDREN) before and after (every process is waited for,
  by its parent or here, so all of them count).
- peak RSS of the tree: the sum of VmRSS (/proc/PID/statm) over every
  descendant, polled every 50 ms, the largest sum seen; and beside it the
  largest peak of any single process (/usr/bin/time's %M, exact, not
  polled: the maximum of ru_maxrss over the processes /usr/bin/time waits
  for, directly or through their parents). The figure used is the larger
  of the two: polling can miss a spike shorter than 50 ms, %M cannot but
  sees one process at a time. For a single-process configuration it is the
  process's exact peak, exit dump included.
- profile size: the bytes heapprof or heaptrack wrote (heaptrack's file is
  its interpreted, zstd- or gzip-compressed output).
deep_tree also reports its own loop time (bench/report.h), the program's
share without start-up and exit; heaptrack's interpreter works in parallel
on the other core and is not in it.

The preload is set through env(1) under /usr/bin/time rather than on
/usr/bin/time itself, so that the measured program is heapprof's root
process (a preloaded time would be, and the program its child). The
uninstrumented runs go through env(1) too. Progress goes to stderr; the
report (markdown) to stdout.
"""
import argparse
import ctypes
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import commit_of, log, parse_kv

HERE = os.path.dirname(os.path.abspath(__file__))
TIME = "/usr/bin/time"
PAGE = os.sysconf("SC_PAGE_SIZE")
PR_SET_CHILD_SUBREAPER = 36
POLL = 0.05


def clean_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("HEAPPROF") or k in ("LD_PRELOAD", "MALLOC_CONF", "MALLOC_PERTURB_",
                                             "PYTHONMALLOC", "DUMP_HEAPTRACK_OUTPUT"):
            del env[k]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env["LC_ALL"] = "C"
    return env


def make_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root):
    """PIDs of root and all its descendants, from /proc/*/stat."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                s = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        rest = s[s.rfind(b")") + 2:].split()
        if len(rest) > 1:
            parent[int(name)] = int(rest[1])
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in parent or p == root:
            out.append(p)
            todo.extend(children.get(p, []))
    return out


def tree_rss_kib(root):
    total = 0
    for pid in descendants(root):
        try:
            with open("/proc/%d/statm" % pid, "rb") as f:
                total += int(f.read().split()[1]) * PAGE // 1024
        except (OSError, ValueError, IndexError):
            pass
    return total


class Poller(threading.Thread):
    """The largest sum of VmRSS over the tree, every POLL seconds."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss_kib(self.root))
            self.stop.wait(POLL)


class Result:
    def __init__(self):
        self.wall, self.cpu, self.tree_peak, self.poll_peak, self.proc_peak = [], [], [], [], []
        self.profile, self.loop = [], []
        self.errors = []


def run_once(prefix, argv, env_extra, out, use_env):
    """One run of the whole tree; returns (rc, wall, cpu, polled peak KiB,
    %M KiB, stdout, stderr)."""
    env = clean_env()
    env.update({k: v for k, v in env_extra.items() if not use_env})
    cmd = list(prefix)
    if use_env:
        cmd = ["/usr/bin/env"] + ["%s=%s" % kv for kv in env_extra.items()] + cmd
    rss_file = os.path.join(out, ".maxrss")
    if os.access(TIME, os.X_OK):
        cmd = [TIME, "-f", "%M", "-o", rss_file] + cmd
    cmd += argv
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.path.join(out, ".stdout"), "w+") as so, \
            open(os.path.join(out, ".stderr"), "w+") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=so, stderr=se, stdin=subprocess.DEVNULL,
                             cwd=out)
        poller = Poller(p.pid)
        poller.start()
        _, status, _ = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        # Descendants that outlived their parents were reparented here.
        while True:
            try:
                os.wait4(-1, 0)
            except ChildProcessError:
                break
        wall = time.perf_counter() - t0
        poller.stop.set()
        poller.join()
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    proc_peak = None
    try:
        with open(rss_file) as f:
            proc_peak = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return p.returncode, wall, cpu, poller.peak, proc_peak, stdout, stderr


def profile_bytes(out, key):
    total, n = 0, 0
    for name in os.listdir(out):
        if (key in ("exact", "before") and name.endswith(".pb.gz")) or \
                (key == "heaptrack" and name.startswith("ht")):
            total += os.path.getsize(os.path.join(out, name))
            n += 1
    return total if n else None


def configs(lib, heaptrack, before=None):
    # (key, label, prefix, environment, through env(1))
    cs = [("alone", "uninstrumented", [], {}, True),
          ("exact", "heapprof exact (HEAPPROF_RATE=1)", [],
           {"LD_PRELOAD": lib, "HEAPPROF": "{out}/out.pb.gz", "HEAPPROF_RATE": "1"}, True)]
    if before:
        cs.append(("before", "heapprof exact, --before library", [],
                   {"LD_PRELOAD": before, "HEAPPROF": "{out}/out.pb.gz", "HEAPPROF_RATE": "1"},
                   True))
    if heaptrack:
        cs.append(("heaptrack", "heaptrack (record + interpret)",
                   [heaptrack, "-o", "{out}/ht"], {}, False))
    return cs


def measure(cfgs, argv, wl_env, runs, tmp, tag):
    res = {c[0]: Result() for c in cfgs}
    for r in range(runs):
        order = cfgs[r % len(cfgs):] + cfgs[:r % len(cfgs)]
        for key, _, prefix, env, use_env in order:
            out = tempfile.mkdtemp(prefix="run-", dir=tmp)
            pre = [a.replace("{out}", out) for a in prefix]
            e = dict(wl_env)
            e.update({k: v.replace("{out}", out) for k, v in env.items()})
            rc, wall, cpu, poll_peak, proc_peak, so, se = run_once(
                pre, argv, e, out, use_env)
            x = res[key]
            if rc != 0:
                x.errors.append("exit %d: %s" % (rc, (se.strip().splitlines() or [""])[-1][:160]))
            else:
                x.wall.append(wall)
                x.cpu.append(cpu)
                x.poll_peak.append(poll_peak)
                x.proc_peak.append(proc_peak)
                x.tree_peak.append(max(poll_peak, proc_peak or 0))
                x.profile.append(profile_bytes(out, key))
                kv = parse_kv(so)
                if "seconds" in kv:
                    x.loop.append(float(kv["seconds"]))
            shutil.rmtree(out, ignore_errors=True)
            log("    %s %s: wall %.2f s, CPU %.2f s, tree peak %.0f MiB%s" % (
                tag, key, wall, cpu, max(poll_peak, proc_peak or 0) / 1024,
                "" if rc == 0 else " (exit %d)" % rc))
        log("  %s: round %d/%d done" % (tag, r + 1, runs))
    return res


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_s(x):
    return "—" if x is None else ("%.3f s" % x if x < 10 else "%.1f s" % x)


def fmt_mib(kib):
    return "—" if kib is None else "%.0f MiB" % (kib / 1024) if kib >= 10240 else \
        "%.1f MiB" % (kib / 1024)


def fmt_bytes(b):
    if b is None:
        return "—"
    return "%.1f MiB" % (b / 1048576) if b >= 1048576 else "%.0f KiB" % (b / 1024)


def ratio(a, b):
    return "—" if a is None or not b else "%.2f×" % (a / b)


def table(label, cfgs, res):
    a = res["alone"]
    rows = ["### " + label, "",
            "| configuration | wall (× alone) | CPU, tree (× alone) | program's own loop |"
            " peak RSS, tree (× alone) | polled sum / largest process | profile |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for key, name, _, _, _ in cfgs:
        x = res[key]
        if not x.wall:
            rows.append("| %s | failed: %s | | | | | |" % (name, "; ".join(x.errors[:2])))
            continue
        rows.append("| %s | %s (%s) | %s (%s) | %s | %s (%s) | %s / %s | %s |" % (
            name, fmt_s(med(x.wall)), ratio(med(x.wall), med(a.wall)),
            fmt_s(med(x.cpu)), ratio(med(x.cpu), med(a.cpu)),
            fmt_s(med(x.loop)) if x.loop else "—",
            fmt_mib(med(x.tree_peak)), ratio(med(x.tree_peak), med(a.tree_peak)),
            fmt_mib(med(x.poll_peak)), fmt_mib(med(x.proc_peak)),
            fmt_bytes(med(x.profile)) if key != "alone" else "—"))
        if x.errors:
            rows.append("| %s: %d failed run(s) | %s | | | | | |" % (
                name, len(x.errors), "; ".join(x.errors[:2])))
    rows += ["", "Each run, wall s / tree peak MiB: " + "; ".join(
        "%s %s" % (key, ", ".join("%.2f / %.0f" % (w, p / 1024)
                                  for w, p in zip(res[key].wall, res[key].tree_peak)))
        for key, _, _, _, _ in cfgs if res[key].wall) + "."]
    for key, name in (("exact", "heapprof exact"), ("before", "--before library")):
        if "heaptrack" in res and res["heaptrack"].wall and key in res and res[key].wall:
            e, h = res[key], res["heaptrack"]
            rows += ["%s / heaptrack: wall %s, CPU %s, peak RSS of the tree %s." % (
                name, ratio(med(e.wall), med(h.wall)), ratio(med(e.cpu), med(h.cpu)),
                ratio(med(e.tree_peak), med(h.tree_peak)))]
    return rows + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--rounds", type=int, default=2, help="deep_tree ROUNDS (default 2)")
    ap.add_argument("--runs", type=int, default=3, help="runs per configuration (default 3)")
    ap.add_argument("--py-n", type=int, default=60000,
                    help="bench/py_workload.py N (default 60000)")
    ap.add_argument("--only", default="deep,python", help="workloads: deep,python")
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="the interpreter for the python workload (default /usr/bin/python3,"
                    " stripped; one built with -g has its DWARF read at the exit dump)")
    ap.add_argument("--before", help="another build directory: its library in exact mode too,"
                    " alternating with the rest (a before/after comparison in one run)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    lib = os.path.join(build, "src", "libheapprof.so")
    deep = os.path.join(build, "bench", "deep_tree")
    for p in (lib, deep):
        if not os.path.exists(p):
            sys.exit("exact_vs_heaptrack: not built: %s (run: ninja -C %s)" % (p, build))
    heaptrack = shutil.which("heaptrack")
    if not heaptrack:
        log("exact_vs_heaptrack: heaptrack not found (Debian package heaptrack):"
            " its rows are skipped")
    python3 = args.python if os.path.exists(args.python) else None
    if not os.access(TIME, os.X_OK):
        log("exact_vs_heaptrack: %s missing (Debian package time): the largest single"
            " process's peak is not measured, only the polled sum" % TIME)
    reaper = make_subreaper()
    if not reaper:
        log("exact_vs_heaptrack: could not become a child subreaper: orphaned descendants"
            " are not waited for")
    only = set(args.only.split(","))

    started = time.time()
    load0 = os.getloadavg()
    before = None
    if args.before:
        before = os.path.join(os.path.abspath(args.before), "src", "libheapprof.so")
        if not os.path.exists(before):
            sys.exit("exact_vs_heaptrack: not built: %s" % before)
    cfgs = configs(lib, heaptrack, before)
    tmp = tempfile.mkdtemp(prefix="hpexact-")
    sections = []
    try:
        if "deep" in only:
            argv = [deep, str(args.rounds)]
            log("exact_vs_heaptrack: deep_tree %d, %d configurations x %d runs"
                % (args.rounds, len(cfgs), args.runs))
            res = measure(cfgs, argv, {}, args.runs, tmp, "deep")
            sections += table("deep_tree %d (`%s`)" % (args.rounds, " ".join(
                [os.path.relpath(deep), str(args.rounds)])), cfgs, res)
        if "python" in only:
            if not python3:
                log("exact_vs_heaptrack: %s missing: python skipped" % args.python)
            else:
                argv = [python3, os.path.join(HERE, "py_workload.py"), str(args.py_n)]
                log("exact_vs_heaptrack: python3 py_workload.py %d, %d configurations x %d"
                    " runs" % (args.py_n, len(cfgs), args.runs))
                res = measure(cfgs, argv, {"PYTHONMALLOC": "malloc"}, args.runs, tmp, "python")
                sections += table("python3, PYTHONMALLOC=malloc (`%s"
                                  " bench/py_workload.py %d`)" % (python3, args.py_n), cfgs, res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    commit, src = commit_of(build)
    cmd = "python3 bench/exact_vs_heaptrack.py --build %s --rounds %d --runs %d --py-n %d" % (
        args.build, args.rounds, args.runs, args.py_n)
    if args.only != "deep,python":
        cmd += " --only " + args.only
    if args.python != "/usr/bin/python3":
        cmd += " --python " + args.python
    if args.before:
        cmd += " --before " + args.before
    ht_version = ""
    if heaptrack:
        r = subprocess.run([heaptrack, "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        ht_version = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "?"
    head = [
        "Command: `%s` (took %.0f s)" % (cmd, time.time() - started),
        "",
        "Machine: %d CPUs, kernel %s, glibc %s; load average %.2f before, %.2f after." % (
            len(os.sched_getaffinity(0)), platform.release(),
            os.confstr("CS_GNU_LIBC_VERSION").split()[-1], load0[0], os.getloadavg()[0]),
        "heapprof: commit %s; source tree %s. %s." % (commit, src, ht_version or "no heaptrack"),
        "",
        "Medians of %d alternating runs. Wall: start to the exit of the last process of the"
        " tree. CPU: user + system of the whole tree. Peak RSS of the tree: the larger of the"
        " polled sum of VmRSS over the tree (every %d ms) and the largest single process's"
        " peak (/usr/bin/time %%M); both are shown. Program's own loop: deep_tree's timed"
        " loop (report.h), start-up and exit left out." % (args.runs, POLL * 1000),
        "",
    ]
    report = "\n".join(head + sections) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
