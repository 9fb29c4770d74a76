#!/usr/bin/env python3
"""CPU profiles: heapprof's against gperftools' CPUPROFILE, side
by side, on the same programs.

usage: python3 bench/cpu.py --build BUILD_DIR [--runs N] [--seconds S] [--out FILE]

Accuracy: examples/cpuburn, whose threads split their CPU time 3:1 between
burn_a and burn_b (by CPU time: the truth holds on a loaded machine), with
1, 2 and 4 threads, under
  heapprof          HEAPPROF_CPU=FILE (per-thread timers, 100 Hz)
  heapprof-itimer   the same with HEAPPROF_CPU_TIMER=process (setitimer)
  gperftools        LD_PRELOAD=libprofiler.so.0 CPUPROFILE=FILE
                    CPUPROFILE_FREQUENCY=100 (setitimer, its default)
Each profile is read with `go tool pprof -top` (the binary given for
gperftools' profile, which carries no symbols): burn_a's share of burn_a +
burn_b (truth 75%), and the CPU time the profile accounts for against the
process's own (wait4's user + system time): "captured".

Then xz -6 -T4 on 16 MiB of generated text, whose worker threads (liblzma's)
block every signal: no signal-based profiler can sample them; the table
shows what each one puts in the profile instead.

Overhead: programs with a fixed amount of work, alternating run by run
(the starting configuration rotated each round), medians of RUNS runs:
  cpuburn -t 4 -w 200 (4 threads, more than this machine's 2 CPUs),
  gcc -O2 -c on a generated 2,000-line C file (cc1: deep stacks, DWARF
  unwinding through code without frame pointers), python3
  bench/py_workload.py (one thread, an interpreter's deep stacks),
with nothing, heapprof (HEAPPROF_CPU, HEAPPROF unset; 100 Hz and 1000 Hz)
and gperftools (100 Hz). CPU time is the process tree's user + system time
(wait4); wall time is elapsed.

Needs `go` (golang-go) and google-perftools/libgoogle-perftools4
(bench/packages.txt; bench/deps.sh installs them). Installs nothing.
"""
import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import commit_of, log  # noqa: E402

GPERF = None
for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
    if os.path.exists(os.path.join(d, "libprofiler.so.0")):
        GPERF = os.path.join(d, "libprofiler.so.0")
        break

CLEAR = ("HEAPPROF", "HEAPPROF_CPU", "HEAPPROF_CPU_HZ", "HEAPPROF_CPU_TIMER", "HEAPPROF_HTTP",
         "CPUPROFILE", "CPUPROFILE_FREQUENCY", "LD_PRELOAD")


def base_env():
    env = dict(os.environ)
    for v in CLEAR:
        env.pop(v, None)
    return env


def config_env(name, lib, prof):
    env = base_env()
    if name == "heapprof":
        env.update(LD_PRELOAD=lib, HEAPPROF_CPU=prof)
    elif name == "heapprof-1000Hz":
        env.update(LD_PRELOAD=lib, HEAPPROF_CPU=prof, HEAPPROF_CPU_HZ="1000")
    elif name == "heapprof-itimer":
        env.update(LD_PRELOAD=lib, HEAPPROF_CPU=prof, HEAPPROF_CPU_TIMER="process")
    elif name == "gperftools":
        env.update(LD_PRELOAD=GPERF, CPUPROFILE=prof, CPUPROFILE_FREQUENCY="100")
    return env


def timed(argv, env, stdin=None):
    """Runs argv; (wall seconds, CPU seconds of the process and its
    children)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed ({status}): {err[-500:]}")
    return wall, ru.ru_utime + ru.ru_stime


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0}


def seconds_of(text):
    m = re.match(r"^([0-9.]+)([a-zµ]*)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


def pprof_top(args, home):
    """{function: flat seconds} and the total, from go tool pprof -top."""
    env = base_env()
    env.update(HOME=home, GOCACHE=os.path.join(home, "cache"), GOENV="off",
               PPROF_TMPDIR=home)
    out = subprocess.run(["go", "tool", "pprof", "-top", "-nodefraction=0",
                          "-nodecount=100000"] + args, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit("go tool pprof failed: " + out.stderr[-500:])
    total = 0.0
    flat = {}
    seen = False
    for line in out.stdout.splitlines():
        m = re.search(r"accounting for (\S+), [0-9.]+% of (\S+) total", line)
        if m:
            total = seconds_of(m.group(2))
        if line.split()[:2] == ["flat", "flat%"]:
            seen = True
            continue
        if seen:
            f = line.split()
            if len(f) >= 6:
                flat[" ".join(f[5:])] = seconds_of(f[0])
    return flat, total


def accuracy(build, seconds, tmp):
    burn = os.path.join(build, "examples", "cpuburn")
    lib = os.path.join(build, "src", "libheapprof.so")
    rows = []
    for threads in (1, 2, 4):
        for name in ("heapprof", "heapprof-itimer", "gperftools"):
            if name == "gperftools" and not GPERF:
                continue
            prof = os.path.join(tmp, f"{name}-{threads}.prof")
            wall, cpu = timed([burn, "-t", str(threads), "-s", str(seconds)],
                              config_env(name, lib, prof))
            args = [burn, prof] if name == "gperftools" else [prof]
            flat, total = pprof_top(args, tmp)
            a, b = flat.get("burn_a", 0.0), flat.get("burn_b", 0.0)
            share = a / (a + b) if a + b else float("nan")
            rows.append((f"cpuburn, {threads} thread{'s' if threads > 1 else ''}", name,
                         f"{100 * share:.1f}%", total, cpu))
            log(f"accuracy: {threads} threads, {name}: burn_a {100 * share:.1f}%, "
                f"{total:.2f} s of {cpu:.2f} s CPU")
    xz = shutil.which("xz")
    for name in ("heapprof", "heapprof-itimer", "gperftools"):
        if not xz or (name == "gperftools" and not GPERF):
            continue
        prof = os.path.join(tmp, f"xz-{name}.prof")
        wall, cpu = timed([xz, "-6", "-T4", "--block-size=2MiB", "-c", text_input(tmp)],
                          config_env(name, lib, prof))
        flat, total = pprof_top([xz, prof] if name == "gperftools" else [prof], tmp)
        top = max(flat, key=flat.get) if flat else "(no samples)"
        rows.append(("xz -T4 (workers block signals)", name, f"top: {top}", total, cpu))
        log(f"accuracy: xz, {name}: {total:.2f} s of {cpu:.2f} s CPU, top {top}")
    return rows


def text_input(tmp):
    """16 MiB of generated text (fixed seed), made once."""
    text = os.path.join(tmp, "input.txt")
    if os.path.exists(text):
        return text
    rnd = random.Random(14)
    words = ["alpha", "beta", "gamma", "delta", "heap", "profile", "sample", "thread",
             "signal", "timer", "stack", "frame"]
    with open(text, "w") as f:
        n = 0
        while n < 16 << 20:
            line = " ".join(rnd.choice(words) + str(rnd.randrange(1000)) for _ in range(12))
            f.write(line + "\n")
            n += len(line) + 1
    return text


def c_input(tmp):
    """A C file of 100 functions of about 20 lines each (fixed seed)."""
    path = os.path.join(tmp, "gen.c")
    rnd = random.Random(14)
    with open(path, "w") as f:
        f.write("#include <string.h>\n#include <stdlib.h>\n")
        for i in range(100):
            f.write(f"struct s{i} {{ int a[{rnd.randrange(4, 64)}]; double d; char n[32]; }};\n")
            f.write(f"int f{i}(struct s{i} *p, int n) {{\n  int acc = {i};\n")
            for j in range(16):
                op = rnd.choice(["+", "*", "^", "-"])
                f.write(f"  for (int k = 0; k < n; k++) acc = acc {op} p->a[(k + {j}) % "
                        f"(int)(sizeof p->a / sizeof p->a[0])] * {rnd.randrange(1, 99)};\n")
            f.write(f"  if (acc & 1) memset(p->n, acc, sizeof p->n);\n")
            f.write(f"  return acc + (int)p->d + (n > 1 ? f{max(i - 1, 0)}((void *)p, n / 2) "
                    f": 0);\n}}\n")
    return path


def overhead(build, runs, tmp):
    lib = os.path.join(build, "src", "libheapprof.so")
    here = os.path.dirname(os.path.abspath(__file__))
    programs = [
        ("cpuburn -t 4 -w 200", [os.path.join(build, "examples", "cpuburn"), "-t", "4", "-w",
                                 "200"]),
        ("gcc -O2 -c (generated file)", ["gcc", "-O2", "-c", c_input(tmp), "-o",
                                         os.path.join(tmp, "gen.o")]),
        ("python3 py_workload.py", [sys.executable, os.path.join(here, "py_workload.py"),
                                    "300000"]),
    ]
    configs = ["none", "heapprof", "heapprof-1000Hz"] + (["gperftools"] if GPERF else [])
    results = []
    for label, argv in programs:
        if not shutil.which(argv[0]):
            log(f"overhead: {argv[0]} missing, skipped")
            continue
        data = {c: [] for c in configs}
        for r in range(runs):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for c in order:
                prof = os.path.join(tmp, f"ov-{c}.prof")
                data[c].append(timed(argv, config_env(c, lib, prof)))
        base_w = statistics.median(w for w, _ in data["none"])
        base_c = statistics.median(c for _, c in data["none"])
        spread = max(c for _, c in data["none"]) / min(c for _, c in data["none"]) - 1
        for c in configs:
            w = statistics.median(x for x, _ in data[c])
            cpu = statistics.median(x for _, x in data[c])
            results.append((label, c, w, cpu, w / base_w - 1, cpu / base_c - 1, spread))
            log(f"overhead: {label}, {c}: wall {w:.3f} s ({100 * (w / base_w - 1):+.1f}%), "
                f"CPU {cpu:.3f} s ({100 * (cpu / base_c - 1):+.1f}%)")
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    if not shutil.which("go"):
        raise SystemExit("go is not installed (golang-go)")
    if not GPERF:
        log("libprofiler.so.0 not found (google-perftools, libgoogle-perftools4: "
            "bench/deps.sh); gperftools is left out")
    tmp = tempfile.mkdtemp(prefix="heapprof-cpu-bench-")
    try:
        acc = accuracy(build, args.seconds, tmp)
        ov = overhead(build, args.runs, tmp)
    finally:
        shutil.rmtree(tmp, True)
    commit, _ = commit_of(build)
    lines = [f"Library at {commit}; `python3 bench/cpu.py --build {args.build} --runs "
             f"{args.runs} --seconds {args.seconds:g}`; {os.cpu_count()} CPUs.", "",
             "Accuracy (examples/cpuburn, burn_a:burn_b = 3:1 by CPU time, "
             f"{args.seconds:g} s of CPU per thread, 100 Hz, read with go tool pprof -top):", "",
             "| program | profiler | burn_a share (truth 75%) | CPU in the profile | "
             "process CPU | captured |",
             "| --- | --- | --- | --- | --- | --- |"]
    for what, name, share, total, cpu in acc:
        lines.append(f"| {what} | {name} | {share} | {total:.2f} s | {cpu:.2f} s | "
                     f"{100 * total / cpu:.0f}% |")
    lines += ["", f"Overhead (medians of {args.runs} alternating runs; the baseline's own "
              "CPU-time spread from run to run in the last column):", "",
              "| program | profiler | wall | CPU | wall vs none | CPU vs none | "
              "baseline spread |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, c, w, cpu, dw, dc, spread in ov:
        lines.append(f"| {label} | {c} | {w:.3f} s | {cpu:.3f} s | {100 * dw:+.1f}% | "
                     f"{100 * dc:+.1f}% | {100 * spread:.1f}% |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
