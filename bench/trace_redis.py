#!/usr/bin/env python3
"""What an execution trace costs a server under load: redis-server
(Debian's: its main thread and three background ones) under redis-benchmark, alone, with
heapprof preloaded (HEAPPROF set, the default rate), and with a trace of
the server's whole run on top (HEAPPROF_TRACE, HEAPPROF_TRACE_SECONDS=0:
CPU samples at 1 kHz on every thread, blocking calls and lock waits,
sampled allocations; written at the server's exit, after the benchmark).
Configurations alternate round by round, the first rotated; the figure is
the median of requests/s over the rounds, and the median per-round ratio.

  python3 bench/trace_redis.py --build build-rel [--rounds 7] [--requests 200000]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, limit=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {proc.stderr.read()[-500:]!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not listen")


def one(cfg_env, tmp, a):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAPPROF") and k != "LD_PRELOAD"}
    env.update(cfg_env)
    srv = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", tmp],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           universal_newlines=True)
    try:
        wait_port(port, srv)
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(a.requests), "-c", "50",
                              "-t", "set,get,lpush,lpop", "-d", "64", "--csv", "-q"],
                             capture_output=True, universal_newlines=True, check=True).stdout
        rps = []
        for line in out.splitlines():
            cells = [c.strip('"') for c in line.split(",")]
            if len(cells) > 1 and cells[0] in ("SET", "GET", "LPUSH", "LPOP"):
                rps.append(float(cells[1]))
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                       capture_output=True, timeout=60)
        srv.wait(120)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    return statistics.mean(rps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=200000)
    a = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: sudo bench/deps.sh (Debian's redis-server)")
    lib = os.path.join(os.path.abspath(a.build), "src", "libheapprof.so")
    tmp = tempfile.mkdtemp(prefix="hp-trace-redis-")
    heap = {"LD_PRELOAD": lib, "HEAPPROF": os.path.join(tmp, "p.pb.gz"), "HEAPPROF_LEAKS": "off"}
    cfgs = {"alone": {}, "heapprof": heap,
            "heapprof + trace": dict(heap, HEAPPROF_TRACE=os.path.join(tmp, "t.json.gz"),
                                     HEAPPROF_TRACE_SECONDS="0")}
    names = list(cfgs)
    res = {c: [] for c in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for c in order:
            res[c].append(one(cfgs[c], tmp, a))
        print(f"round {r + 1}: " + ", ".join(f"{c} {res[c][-1]:.0f}" for c in names), flush=True)
    print("\n| configuration | requests/s (median) | vs alone | vs heapprof |")
    print("|---|---|---|---|")
    for c in names:
        vs_alone = statistics.median(x / y for x, y in zip(res[c], res["alone"])) - 1
        vs_hp = statistics.median(x / y for x, y in zip(res[c], res["heapprof"])) - 1
        print(f"| {c} | {statistics.median(res[c]):.0f} | {100 * vs_alone:+.1f}% | "
              f"{100 * vs_hp:+.1f}% |")
    print(f"\nredis-benchmark -n {a.requests} -c 50 -t set,get,lpush,lpop -d 64, mean of the four "
          f"tests' requests/s per run; {a.rounds} rounds, order rotated; per-round ratios' medians.")
    tr = os.path.join(tmp, "t.json.gz")
    if os.path.exists(tr):
        print(f"last trace: {os.path.getsize(tr)} bytes gzipped")


if __name__ == "__main__":
    main()
