#!/usr/bin/env python3
"""Programs no one here wrote, at the default rate: the target of "at most
2% on real programs" checked on twelve (run.py's four real programs and eight
more), with the bare interposer and jemalloc's own profiler beside heapprof.

usage: python3 bench/programs.py --build BUILD_DIR [--runs N] [--out FILE]

Each program runs as a whole process (start-up and exit dump included), in
these configurations, alternating run by run (the starting one rotated each
round), and each figure is the median CPU time of the process tree:
  glibc       the program alone
  heapprof    LD_PRELOAD=libheapprof.so HEAPPROF=... (default rate, leak summary on)
  floor       LD_PRELOAD=libhpfloor.so (an interposer that only forwards)
  jemalloc    LD_PRELOAD=libjemalloc.so.2
  je-prof     the same with MALLOC_CONF=prof:true,lg_prof_sample:19 (512 KiB)
heapprof and the floor are compared with glibc, je-prof with jemalloc.

On a shared machine those ratios move by several points from run to run,
so when `perf` is installed (package linux-perf) each program also runs
once under `perf record -e cpu-clock` with heapprof, and the table gives
the share of CPU samples that fell in heapprof's own code and the libraries
it brings (libheapprof, libunwind, libdw, libelf, libprotobuf-c; not zlib,
which programs such as git use themselves): a floor on heapprof's cost that
timing noise does not move. It leaves out what heapprof costs the program's
own code (cache misses it causes, the interposed call itself).

The inputs are generated in a temporary directory with a fixed seed; the
programs come from Debian packages (coreutils, mawk, gawk, bash, python3,
xz-utils, findutils, git, sqlite3, perl, gcc). A program that is missing is skipped with its
package named. Installs nothing.
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (run.py: run_once, clean_env, find_lib, machine facts)


def make_inputs(tmp):
    rnd = random.Random(4)
    words = ["w%d" % rnd.randrange(200000) for _ in range(400000)]
    with open(os.path.join(tmp, "lines.txt"), "w") as f:
        for i in range(600000):
            f.write("%s %d %s\n" % (rnd.choice(words), rnd.randrange(10 ** 9), "x" * (i % 40)))
    with open(os.path.join(tmp, "words.txt"), "w") as f:
        for i in range(0, len(words), 8):
            f.write(" ".join(words[i:i + 8]) + "\n")
    with open(os.path.join(tmp, "data.bin"), "wb") as f:
        f.write(bytes(rnd.randrange(64) for _ in range(3 << 20)))


def programs(tmp, repo):
    """(name, package, argv): argv[0] is looked up on PATH."""
    lines, words, data = (os.path.join(tmp, n) for n in ("lines.txt", "words.txt", "data.bin"))
    py = ("import json\n"
          "d = {('k%d' % i): {'v': [i, str(i) * 3], 'n': {'x': i / 7}} for i in range(150000)}\n"
          "s = json.dumps(d)\n"
          "e = json.loads(s)\n"
          "print(len(s), len(e))\n")
    progs = [
        ("sort", "coreutils", ["sort", "-S", "256M", lines, "-o", os.path.join(tmp, "sorted")]),
        ("mawk", "mawk", ["mawk", "{for (i = 1; i <= NF; i++) c[$i]++} "
                          "END {for (k in c) n++; print n}", words]),
        ("gawk", "gawk", ["gawk", "{for (i = 1; i <= NF; i++) c[$i] = c[$i] $i} "
                          "END {for (k in c) n += length(c[k]); print n}", words]),
        ("bash", "bash", ["bash", "-c", "for ((i = 0; i < 60000; i++)); do a[i]=x$i; done; "
                          "s=\"${a[*]}\"; echo ${#s}"]),
        ("python3 json", "python3", ["python3", "-c", py]),
        ("xz", "xz-utils", ["xz", "-6", "-T1", "-k", "-f", data]),
        ("find", "findutils", ["find", "/usr/share", "-name", "*.gz", "-newer", lines, "-o",
                               "-name", "*.txt"]),
    ]
    if repo:
        progs.append(("git log -p", "git", ["git", "-C", repo, "log", "-p", "--stat", "-U20"]))
    # run.py's four real programs, at its sizes.
    sql = os.path.join(tmp, "work.sql")
    run.sql_script(sql, 100000)
    progs.append(("sqlite3 session", "sqlite3", ["sqlite3", ":memory:", ".read " + sql]))
    progs.append(("python3 dicts", "python3",
                  ["python3", os.path.join(HERE, "py_workload.py"), "60000"]))
    progs.append(("perl hashes", "perl", ["perl", os.path.join(HERE, "pl_workload.pl"), "30000"]))
    src = os.path.join(tmp, "gen.c")
    run.c_source(src, 150)
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout.strip() \
        if shutil.which("gcc") else ""
    if os.path.isabs(cc1):
        progs.append(("cc1 -O2", "gcc", [cc1, "-quiet", "-O2", src, "-o",
                                         os.path.join(tmp, "gen.s")]))
    return progs


CONFIGS = ["glibc", "heapprof", "floor", "jemalloc", "je-prof"]
OWN = ("libheapprof", "libunwind", "libdw-", "libdw.", "libelf", "libprotobuf-c")


def own_share(argv, env, tmp):
    """The percentage of CPU samples in heapprof's own objects, or None."""
    perf = shutil.which("perf")
    if not perf:
        return None
    data = os.path.join(tmp, "perf.data")
    rec = subprocess.run([perf, "record", "-q", "-e", "cpu-clock", "-F", "5000", "-o", data,
                          "--"] + argv, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    if rec.returncode != 0:
        return None
    rep = subprocess.run([perf, "report", "-i", data, "--no-children", "--sort", "dso",
                          "--stdio"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    share = 0.0
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%") and parts[1].startswith(OWN):
            share += float(parts[0].rstrip("%"))
    return share


def env_for(cfg, t, tmp):
    env = run.clean_env()
    if cfg == "heapprof":
        env["LD_PRELOAD"] = t["heapprof"]
        env["HEAPPROF"] = os.path.join(tmp, "hp.pb.gz")
    elif cfg == "floor":
        env["LD_PRELOAD"] = t["floor"]
    elif cfg in ("jemalloc", "je-prof"):
        env["LD_PRELOAD"] = t["jemalloc"]
        if cfg == "je-prof":
            env["MALLOC_CONF"] = "prof:true,lg_prof_sample:19,prof_prefix:%s/jeprof" % tmp
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out")
    args = ap.parse_args()
    b = os.path.abspath(args.build)
    t = {"heapprof": os.path.join(b, "src", "libheapprof.so"),
         "floor": os.path.join(b, "bench", "libhpfloor.so"),
         "jemalloc": run.find_lib(["libjemalloc.so.2"])}
    for k in ("heapprof", "floor"):
        if not os.path.exists(t[k]):
            sys.exit("bench: %s is not built: run ninja -C %s" % (t[k], b))
    configs = [c for c in CONFIGS if t["jemalloc"] or c not in ("jemalloc", "je-prof")]
    if not t["jemalloc"]:
        run.log("bench: libjemalloc.so.2 not found (Debian package libjemalloc2): "
                "no jemalloc columns")
    repo = os.path.dirname(HERE) if os.path.isdir(os.path.join(HERE, "..", ".git")) else None
    tmp = tempfile.mkdtemp(prefix="hpprog-")
    started = time.time()
    rows = []
    try:
        make_inputs(tmp)
        for name, package, argv in programs(tmp, repo):
            # Debian's programs, not whatever comes first on PATH (a pyenv
            # shim would time a shell script and its children).
            exe = argv[0] if os.path.isabs(argv[0]) else \
                next((p for p in ("/usr/bin/" + argv[0], "/bin/" + argv[0])
                      if os.access(p, os.X_OK)), None) or shutil.which(argv[0])
            if not exe:
                run.log("bench: %s not found (Debian package %s): skipped" % (argv[0], package))
                continue
            argv = [exe] + argv[1:]
            cpu = {c: [] for c in configs}
            errors = []
            for r in range(args.runs):
                order = configs[r % len(configs):] + configs[:r % len(configs)]
                for c in order:
                    rc, wall, c_cpu, rss, out, err = run.run_once(argv, env_for(c, t, tmp), tmp)
                    if rc != 0:
                        errors.append("%s: exit %d %s" % (c, rc, err.strip()[-200:]))
                    cpu[c].append(c_cpu)
            share = own_share(argv, env_for("heapprof", t, tmp), tmp)
            run.log("bench: %s done, %.0f s so far" % (name, time.time() - started))
            m = {c: statistics.median(v) for c, v in cpu.items()}

            def pct(c, base):
                return "%+.1f%%" % ((m[c] / m[base] - 1) * 100)
            row = ["`%s`" % name, "%.3f s" % m["glibc"], pct("heapprof", "glibc"),
                   pct("floor", "glibc")]
            if t["jemalloc"]:
                row.append(pct("je-prof", "jemalloc"))
            row.append("%.2f%%" % share if share is not None else "(no perf)")
            row.append("; ".join(errors[:2]))
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = ["program", "glibc alone (median CPU)", "heapprof, default rate", "floor"]
    if t["jemalloc"]:
        head.append("jemalloc's profiler vs jemalloc")
    head += ["heapprof's own share of CPU samples (perf)", "errors"]
    lines = ["Command: `python3 bench/programs.py --build %s --runs %d` (took %.0f s); "
             "%d CPUs, load average %.2f at the end." % (args.build, args.runs,
                                                         time.time() - started, os.cpu_count(),
                                                         os.getloadavg()[0]),
             "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
