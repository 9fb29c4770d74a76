#!/usr/bin/env python3
"""The leak check (src/report/reach.c): what it costs, and how its verdicts
compare with valgrind memcheck's on real Debian programs.

  python3 bench/leakcheck.py --build build-rel [--runs 3] [--heap-mib 1024]

1. Cost. bench/bigheap fills a heap of --heap-mib MiB with objects of
   16..2048 bytes that point at one another, and exits. Under heapprof, in
   exact mode and at the default rate, the check's own line
   (HEAPPROF_LEAK_STATS=1) gives what it read, how long it took and its memory;
   the whole run is also timed with the check on and off (medians).
2. Verdicts. Each program runs under heapprof in exact mode, under
   memcheck (--leak-check=full) and under LeakSanitizer (gcc's runtime,
   liblsan.so.0, preloaded); the table gives heapprof's definitely and
   indirectly lost bytes next to memcheck's and LSan's direct and indirect
   leaks, and what heapprof and memcheck call reachable (memcheck's
   "possibly lost", interior pointers only, is shown apart: heapprof and
   LSan count an interior pointer as a reference; LSan does not report
   reachable memory).

Needs valgrind and liblsan0 (bench/packages.txt, bench/deps.sh). Prints
Markdown.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

CHECK = re.compile(r"leak check: (\d+) objects, (\d+) lost, ([0-9.]+) MiB of roots and ([0-9.]+) "
                   r"MiB of objects read in ([0-9.]+) ms; ([0-9.]+) MiB of memory of its own")
HEAD = re.compile(r"^heapprof: (\d+) bytes in (\d+) objects? lost, .*: definitely (\d+) bytes in "
                  r"(\d+) objects?, indirectly (\d+) bytes in (\d+) objects?$", re.M)
REACH = re.compile(r"^heapprof: still reachable: (\d+) bytes in (\d+) objects?", re.M)
SUPP = re.compile(r"^heapprof: (\d+) runtime or suppressed stacks? not shown", re.M)
LSAN = {k: re.compile(r"^%s leak of (\d+) byte\(s\) in (\d+) object" % k, re.M)
        for k in ("Direct", "Indirect")}
LSAN_LIB = "/usr/lib/x86_64-linux-gnu/liblsan.so.0"
VG = {k: re.compile(r"==\d+==\s+%s: ([\d,]+) bytes in ([\d,]+) blocks" % k)
      for k in ("definitely lost", "indirectly lost", "possibly lost", "still reachable")}


def hp_env(build, rate, extra=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("HEAPPROF") or k == "LD_PRELOAD":
            del env[k]
    env["LD_PRELOAD"] = os.path.abspath(os.path.join(build, "src", "libheapprof.so"))
    if rate:
        env["HEAPPROF_RATE"] = str(rate)
    env.update(extra or {})
    return env


def cost(build, runs, mib):
    exe = os.path.join(build, "bench", "bigheap")
    tmp = tempfile.mkdtemp(prefix="hp-leakcheck-")
    print("## Cost of the check at exit, bench/bigheap %d (a %d MiB heap)\n" % (mib, mib))
    print("| mode | objects | read (roots + objects) | check time | speed | own memory | "
          "run, check on | run, check off |")
    print("|---|---|---|---|---|---|---|---|")
    for label, rate in (("exact (rate 1)", 1), ("default rate", None)):
        walls = {True: [], False: []}
        line = None
        for i in range(runs):
            for on in (True, False):
                env = hp_env(build, rate, {"HEAPPROF": os.path.join(tmp, "b.pb.gz"),
                                           "HEAPPROF_LEAK_STATS": "1",
                                           "HEAPPROF_LEAKS": os.path.join(tmp, "leaks.txt"),
                                           "HEAPPROF_LEAK_SCAN": "1" if on else "0"})
                t0 = time.monotonic()
                p = subprocess.run([exe, str(mib)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
                walls[on].append(time.monotonic() - t0)
                if on:
                    m = CHECK.search(p.stderr)
                    if not m:
                        benchlib.log(p.stderr[-2000:])
                        sys.exit("no leak check line")
                    line = m if line is None or float(m.group(5)) < float(line.group(5)) else line
                    line_ms = [float(m.group(5))] if i == 0 else line_ms + [float(m.group(5))]
        objects, lost, roots, heap, ms, own = line.groups()
        med_ms = statistics.median(line_ms)
        read = float(roots) + float(heap)
        print("| %s | %s | %.0f MiB (%.1f + %.1f) | %.0f ms | %.0f MiB/s | %.1f MiB | %.2f s | "
              "%.2f s |" % (label, objects, read, float(roots), float(heap), med_ms,
                            read / (med_ms / 1000), float(own), statistics.median(walls[True]),
                            statistics.median(walls[False])))
    print("\nMedians of %d runs; the check's time includes the fork (clone) of the process and "
          "its page tables.\n" % runs)
    shutil.rmtree(tmp, True)


def programs(tmp):
    repo = os.path.join(tmp, "repo")
    genv = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
                GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com", HOME=tmp)
    subprocess.run(["git", "init", "-q", repo], env=genv, check=True)
    for i in range(20):
        with open(os.path.join(repo, "f%d.txt" % (i % 5)), "a") as f:
            f.write("line %d\n" % i * 50)
        subprocess.run(["git", "-C", repo, "add", "-A"], env=genv, check=True)
        subprocess.run(["git", "-C", repo, "commit", "-qm", "c%d" % i], env=genv, check=True)
    data = os.path.join(tmp, "data.txt")
    with open(data, "w") as f:
        for i in range(20000):
            f.write("%d %s\n" % ((i * 7919) % 20000, "x" * (i % 40)))
    return [
        ("git status", ["git", "-C", repo, "status"]),
        ("git log --oneline", ["git", "-C", repo, "log", "--oneline"]),
        ("git log -p", ["git", "-C", repo, "log", "-p"]),
        ("bash array loop", ["bash", "-c", "a=(); for i in $(seq 2000); do a+=($i); done; "
                             "echo ${#a[@]}"]),
        ("perl hash of 10,000 arrays", ["perl", "-e", "my %h; $h{$_} = [$_] for 1..10000; "
                                        "print scalar(keys %h), qq{\\n}"]),
        ("python3 json", ["/usr/bin/python3", "-c", "import json; "
                          "print(len(json.dumps(list(range(10000)))))"]),
        ("sqlite3 1,000 rows", ["sqlite3", ":memory:", "create table t(x, y); "
                                "with recursive c(i) as (select 1 union all select i+1 from c "
                                "where i < 1000) insert into t select i, hex(i) from c; "
                                "select count(*), sum(x) from t;"]),
        ("gawk array", ["gawk", "BEGIN { for (i = 0; i < 10000; i++) a[i] = i; "
                        "print length(a) }"]),
        ("sort", ["sort", data]),
        ("xz", ["xz", "-c", data]),
    ]


def verdicts(build):
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed: sh bench/deps.sh")
    if not os.path.exists(LSAN_LIB):
        sys.exit("liblsan0 is not installed: sh bench/deps.sh")
    tmp = tempfile.mkdtemp(prefix="hp-leakcheck-")
    print("## Verdicts next to valgrind memcheck's and LeakSanitizer's (exact mode)\n")
    print("| program | definitely lost: heapprof / memcheck / LSan direct | indirectly lost: "
          "heapprof / memcheck / LSan indirect | memcheck possibly lost | still reachable: "
          "heapprof / memcheck |")
    print("|---|---|---|---|---|")
    for name, argv in programs(tmp):
        if not shutil.which(argv[0]):
            print("| %s | not installed |||||||" % name)
            continue
        # The program's own summary: a child it forks (bash's command
        # substitution) writes leaks.txt.PID beside it (as memcheck follows
        # no children by default).
        leaks = os.path.join(tmp, "leaks.txt")
        env = hp_env(build, 1, {"HEAPPROF": os.path.join(tmp, "p.pb.gz"), "HOME": tmp,
                                "HEAPPROF_LEAKS": leaks})
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       cwd=tmp)
        with open(leaks) as f:
            text = f.read()
        m = HEAD.search(text)
        hp_def, hp_ind = (int(m.group(3)), int(m.group(5))) if m else (0, 0)
        r = REACH.search(text)
        hp_reach = int(r.group(1)) if r else 0
        s = SUPP.search(text)
        venv = dict(os.environ, HOME=tmp)
        venv.pop("LD_PRELOAD", None)
        v = subprocess.run(["valgrind", "--leak-check=full", "--show-leak-kinds=all"] + argv,
                           env=venv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, cwd=tmp)
        vg = {}
        for k, rx in VG.items():
            mm = rx.search(v.stderr)
            vg[k] = int(mm.group(1).replace(",", "")) if mm else 0
        lenv = dict(venv, LD_PRELOAD=LSAN_LIB, LSAN_OPTIONS="exitcode=0")
        lp = subprocess.run(argv, env=lenv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=tmp)
        ls = {k: sum(int(x) for x, _ in rx.findall(lp.stderr)) for k, rx in LSAN.items()}
        print("| %s | %d / %d / %d | %d / %d / %d | %d | %d%s / %d |" % (
            name, hp_def, vg["definitely lost"], ls["Direct"], hp_ind, vg["indirectly lost"],
            ls["Indirect"], vg["possibly lost"], hp_reach,
            " (+%s runtime stacks)" % s.group(1) if s else "", vg["still reachable"]))
    print("\nBytes. heapprof leaves out the C and C++ runtimes' one-time allocations "
          "(its built-in suppressions: stdio buffers, locale data, the loader's), which memcheck "
          "counts as still reachable.\n")
    shutil.rmtree(tmp, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--heap-mib", type=int, default=1024)
    ap.add_argument("--only", choices=["cost", "verdicts"])
    a = ap.parse_args()
    commit, _ = benchlib.commit_of(a.build)
    print("heapprof %s; `python3 bench/leakcheck.py --build %s`\n" % (commit, a.build))
    if a.only != "verdicts":
        cost(a.build, a.runs, a.heap_mib)
    if a.only != "cost":
        verdicts(a.build)


if __name__ == "__main__":
    main()
