#!/usr/bin/env python3
"""Live leak checks (/debug/pprof/leaks): what a check costs a running
program, on heaps of 100 MiB to 4 GiB.

  python3 bench/live_leaks.py --build build-rel [--checks 3] [--heaps 100,1024,4096]

For each heap size and mode (exact, HEAPPROF_RATE=1, and the default rate),
bench/bigheap MIB 1024 hold builds a heap of objects that point at one another
and stays up, serving HEAPPROF_HTTP; the script asks /debug/pprof/leaks?debug=1
--checks times and reports, as medians:

  pause      how long the program's threads were held ("held for X ms" in the
             answer's first line: the cost the program itself sees);
  check      the check's own time ("checked in X ms": the clone, its reading and
             its answer), and the request's wall time as the client saw it;
  own        the clone's own memory ("MiB of memory of the check's own");
  dirty      the clone's Private_Dirty at its peak, sampled every 10 ms from
             /proc/CLONE/smaps_rollup while it runs: its own memory plus the
             pages copied on write (bigheap is idle while it holds, so the
             copies are only what the clone itself wrote);
  avail      how far MemAvailable fell below its value before the request, at
             its lowest while the check ran (other work on the machine moves it
             too).

Prints Markdown.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

FIRST = re.compile(r"^heapprof: live leak check: (\d+) objects checked in ([\d.]+) ms, the program "
                   r"held for ([\d.]+) ms; ([\d.]+) MiB of memory of the check's own$", re.M)


def children(pid):
    """The processes whose parent is pid (the clone among them)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def private_dirty_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            m = re.search(r"^Private_Dirty:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def mem_available_kib():
    with open("/proc/meminfo") as f:
        return int(re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M).group(1))


class Sampler:
    """Samples the clone's Private_Dirty and MemAvailable while a check runs."""

    def __init__(self, pid):
        self.avail_before = mem_available_kib()
        self.pid, self.dirty, self.avail_min, self.stop = pid, 0, self.avail_before, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            for c in children(self.pid):
                self.dirty = max(self.dirty, private_dirty_kib(c))
            self.avail_min = min(self.avail_min, mem_available_kib())
            time.sleep(0.01)

    def end(self):
        self.stop = True
        self.t.join()


def one(build, mib, rate, checks):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("HEAPPROF") or k == "LD_PRELOAD":
            del env[k]
    env.update({"LD_PRELOAD": os.path.abspath(os.path.join(build, "src", "libheapprof.so")),
                "HEAPPROF": "/dev/null", "HEAPPROF_LEAK_CHECK": "0",
                "HEAPPROF_HTTP": "127.0.0.1:0"})
    if rate:
        env["HEAPPROF_RATE"] = str(rate)
    exe = os.path.join(build, "bench", "bigheap")
    t0 = time.monotonic()
    p = subprocess.Popen([exe, str(mib), "1024", "hold"], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = None
    for line in p.stderr:
        m = re.search(r"serving (http://\S+/debug/pprof/)", line)
        if m:
            url = m.group(1)
            break
    line = p.stdout.readline()
    build_s = time.monotonic() - t0
    if not url or not line.startswith("objects="):
        p.kill()
        sys.exit(f"bigheap {mib}: no endpoint or no heap: {line!r}")
    rows = []
    for _ in range(checks):
        s = Sampler(p.pid)
        t1 = time.monotonic()
        with urllib.request.urlopen(url + "leaks?debug=1", timeout=1800) as r:
            text = r.read().decode()
        wall = time.monotonic() - t1
        s.end()
        m = FIRST.search(text)
        if not m:
            sys.exit(f"unexpected answer: {text[:500]!r}")
        rows.append({"objects": int(m.group(1)), "check_ms": float(m.group(2)),
                     "pause_ms": float(m.group(3)), "own_mib": float(m.group(4)),
                     "wall_s": wall, "dirty_mib": s.dirty / 1024,
                     "avail_mib": (s.avail_before - s.avail_min) / 1024})
    p.stdin.close()
    p.wait(timeout=600)
    return line.strip(), build_s, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--checks", type=int, default=3)
    ap.add_argument("--heaps", default="100,1024,4096")
    a = ap.parse_args()
    commit, _ = benchlib.commit_of(a.build)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print("heapprof %s; `python3 bench/live_leaks.py --build %s --checks %d --heaps %s` "
          "(%d CPUs, load average %s as it started)\n" % (commit, a.build, a.checks, a.heaps,
                                                        os.cpu_count(), load))
    print("| heap | mode | objects | pause | check | request | own memory | clone's "
          "Private_Dirty | MemAvailable drop |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mib in [int(x) for x in a.heaps.split(",")]:
        for label, rate in (("exact", 1), ("default rate", None)):
            heap, build_s, rows = one(a.build, mib, rate, a.checks)
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            benchlib.log("bigheap %d %s: %s, built in %.1f s; %s" % (
                mib, label, heap, build_s,
                "; ".join("pause %.1f ms check %.0f ms" % (r["pause_ms"], r["check_ms"])
                          for r in rows)))
            print("| %d MiB | %s | %d | %.1f ms | %.0f ms | %.2f s | %.1f MiB | %.1f MiB | "
                  "%.0f MiB |" % (mib, label, med["objects"], med["pause_ms"], med["check_ms"],
                                  med["wall_s"], med["own_mib"], med["dirty_mib"],
                                  med["avail_mib"]))
            sys.stdout.flush()
    print("\nMedians of %d checks of one process per row (pause, check, own memory: the "
          "answer's first line; Private_Dirty and MemAvailable sampled every 10 ms)." % a.checks)


if __name__ == "__main__":
    main()
