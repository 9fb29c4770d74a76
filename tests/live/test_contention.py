"""The mutex and block profiles (/debug/pprof/mutex and block) against a
program that knows its own contention and waits (tests/live/contend.c): two
threads contending on one mutex held 20 ms, 25 times; 25 sleeps of 10 ms and
25 polls of 15 ms. The program times each wait itself and prints the totals;
the profiles must give the same within a stated tolerance, charged to the
waiting function.

Usage: test_contention.py CHECK   (run by meson test: HEAPPROF_LIB,
HEAPPROF_DECODE, HEAPPROF_CONTEND in the environment)
"""

import os
import re
import select
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402
from test_live import env_for, get, wait_for  # noqa: E402

# Both timings read the same clock around the same call; what separates them
# is the hook's own work and the program's clock reads: far below this.
REL_TOL = 0.05
ABS_TOL_NS = 5_000_000


class Contend:
    """contend under the preloaded library, serving on an ephemeral port;
    alive until its stdin closes. again: a line on stdin runs the workload
    again."""

    def __init__(self, extra, again=False):
        env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF_HTTP": "127.0.0.1:0", **extra})
        argv = [h.env_path("HEAPPROF_CONTEND")] + (["again"] if again else [])
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, universal_newlines=True, bufsize=1)
        ready, _, _ = select.select([self.proc.stderr], [], [], 30)
        line = self.proc.stderr.readline() if ready else ""
        m = re.search(r"serving http://(127\.0\.0\.1:\d+)/debug/pprof/", line)
        if not m:
            self.proc.kill()
            raise h.Failure(f"contend did not announce its endpoint: {line!r}")
        self.base = f"http://{m.group(1)}/debug/pprof/"
        self.pending = b""

    def line(self):
        """One line of its stdout, read from the descriptor (select on a
        buffered file would miss lines already in its buffer)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], 120)
            h.check(ready, "contend printed nothing for 120 s")
            chunk = os.read(fd, 4096)
            h.check(chunk, f"contend ended early: {self.proc.poll()}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def run_done(self):
        """The truth lines of one workload, once it printed "done"."""
        truth = {}
        while True:
            line = self.line()
            if line.strip() == "done":
                return truth
            _, _, fn, ns, count = line.split()
            truth[fn] = (int(ns), int(count))

    def again(self):
        self.proc.stdin.write("again\n")
        self.proc.stdin.flush()

    def close(self):
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.wait(timeout=60)
        h.check(self.proc.returncode == 0, f"contend exited {self.proc.returncode}")


def fetch(svc, path, tmp, name):
    st, _, body = get(svc.base + path, timeout=120)
    h.check(st == 200, f"{path}: {st} {body[:300]!r}")
    p = os.path.join(tmp, name)
    with open(p, "wb") as f:
        f.write(body)
    return p


def check_shape(path):
    doc = h.decode_json(path)
    types = doc["sample_types"]
    h.check(types == [["contentions", "count"], ["delay", "nanoseconds"]],
            f"sample types {types}, want Go's contentions/count, delay/nanoseconds")
    return doc


def near(what, got_ns, truth_ns):
    tol = truth_ns * REL_TOL + ABS_TOL_NS
    h.check(abs(got_ns - truth_ns) <= tol,
            f"{what}: profile says {got_ns / 1e6:.1f} ms, the program measured "
            f"{truth_ns / 1e6:.1f} ms (tolerance {tol / 1e6:.1f} ms)")


def check_mutex_values(path, truth):
    check_shape(path)
    fns = h.functions(path, "flat")
    h.check("waiter_lock" in fns, f"waiter_lock is not the leaf of any sample: {fns}")
    count, delay = fns["waiter_lock"]
    ns, rounds = truth["waiter_lock"]
    # A round whose waiter was descheduled until the holder let go did not
    # contend: at most a few of 25 on a loaded machine.
    h.check(rounds - 5 <= count <= rounds, f"waiter_lock: {count} contentions, want ~{rounds}")
    near("waiter_lock's delay", delay, ns)
    # Charged to the waiter, never to the holder (Go would charge the holder).
    cum = h.functions(path, "cum")
    h.check("holder" not in cum, f"the holder's stack has mutex delay: {cum.get('holder')}")


def check_mutex():
    """HEAPPROF_MUTEX_FRACTION=1: every contention, charged to waiter_lock."""
    tmp = h.tempdir()
    svc = Contend({"HEAPPROF_MUTEX_FRACTION": "1"})
    try:
        truth = svc.run_done()
        check_mutex_values(fetch(svc, "mutex", tmp, "mutex.pb.gz"), truth)
        # The block profile is off: empty.
        blk = check_shape(fetch(svc, "block", tmp, "block.pb.gz"))
        h.check(not blk.get("samples"), "the block profile has samples while it is off")
    finally:
        svc.close()


def check_block():
    """HEAPPROF_BLOCK_RATE=1: every wait; usleep and poll in their callers."""
    tmp = h.tempdir()
    svc = Contend({"HEAPPROF_BLOCK_RATE": "1"})
    try:
        truth = svc.run_done()
        path = fetch(svc, "block", tmp, "block.pb.gz")
        check_shape(path)
        fns = h.functions(path, "flat")
        for fn in ("sleeper", "poller"):
            h.check(fn in fns, f"{fn} is not the leaf of any block sample: {fns}")
            count, delay = fns[fn]
            ns, rounds = truth[fn]
            h.check(count == rounds, f"{fn}: {count} waits, want {rounds}")
            near(f"{fn}'s blocked time", delay, ns)
        mutex = check_shape(fetch(svc, "mutex", tmp, "mutex.pb.gz"))
        h.check(not mutex.get("samples"), "the mutex profile has samples while it is off")
    finally:
        svc.close()


def check_text_index():
    """The index lists both; ?debug=1 is Go's text with the waiter's frames."""
    svc = Contend({"HEAPPROF_MUTEX_FRACTION": "1", "HEAPPROF_BLOCK_RATE": "1"})
    try:
        svc.run_done()
        st, _, body = get(svc.base)
        idx = body.decode()
        for name in ("mutex", "block"):
            h.check(f"href='{name}?debug=1'>{name}</a>" in idx, f"the index lacks {name}")
        st, _, body = get(svc.base + "mutex?debug=1")
        text = body.decode()
        h.check(st == 200 and text.startswith("--- mutex:\ncycles/second=1000000000\n"
                                               "sampling period=1\n"),
                f"mutex?debug=1: {st} {text[:200]!r}")
        first = text.splitlines()[3]
        h.check(re.match(r"^\d+ \d+ @( 0x[0-9a-f]+)+$", first), f"mutex text line {first!r}")
        h.check("\twaiter_lock\t" in text, "mutex?debug=1 does not name waiter_lock")
        st, _, body = get(svc.base + "block?debug=1")
        text = body.decode()
        h.check(st == 200 and text.startswith("--- contention:\n"), f"block?debug=1: {text[:100]!r}")
        h.check("\tsleeper\t" in text and "\tpoller\t" in text, "block?debug=1 lacks the sleeps")
    finally:
        svc.close()


def in_background(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def check_delta():
    """?seconds=N: what happened in the window only. The first run is before
    it; a second run inside it must be all the delta holds."""
    tmp = h.tempdir()
    svc = Contend({"HEAPPROF_MUTEX_FRACTION": "1"}, again=True)
    try:
        svc.run_done()
        t, out = in_background(lambda: fetch(svc, "mutex?seconds=8", tmp, "delta.pb.gz"))
        wait_for("the window to be listed", lambda: "a mutex delta over 8 s" in
                 get(svc.base)[2].decode())
        svc.again()
        truth = svc.run_done()
        t.join(120)
        h.check("value" in out, f"the delta failed: {out.get('error')}")
        check_mutex_values(out["value"], truth)
    finally:
        svc.close()


def check_fraction():
    """Off by default; ?fraction=1 on the endpoint turns it on from then."""
    tmp = h.tempdir()
    svc = Contend({}, again=True)
    try:
        svc.run_done()
        doc = check_shape(fetch(svc, "mutex", tmp, "off.pb.gz"))
        h.check(not doc.get("samples"), "the mutex profile has samples while it is off")
        fetch(svc, "mutex?fraction=1", tmp, "on.pb.gz")
        svc.again()
        truth = svc.run_done()
        check_mutex_values(fetch(svc, "mutex", tmp, "mutex.pb.gz"), truth)
        st, _, body = get(svc.base + "mutex?fraction=x")
        h.check(st == 400, f"a bad fraction: {st} {body!r}")
    finally:
        svc.close()


def check_pprof():
    """`go tool pprof -top URL/debug/pprof/mutex` reads it: waiter_lock
    holds the delay."""
    h.go_or_skip()
    tmp = h.tempdir()
    svc = Contend({"HEAPPROF_MUTEX_FRACTION": "1"})
    try:
        truth = svc.run_done()
        proc = h.pprof(["-top", "-sample_index=delay", svc.base + "mutex"], tmp)
        h.check(proc.returncode == 0, f"go tool pprof -top failed:\n{proc.stderr[-2000:]}")
        lines = [ln for ln in proc.stdout.splitlines() if ln.rstrip().endswith("waiter_lock")]
        h.check(lines, f"no waiter_lock in pprof -top:\n{proc.stdout[:2000]}")
        flat = lines[0].split()[0]
        m = re.match(r"^([0-9.]+)(ms|s|us)$", flat)
        h.check(m, f"pprof's delay {flat!r}")
        ns = float(m.group(1)) * {"s": 1e9, "ms": 1e6, "us": 1e3}[m.group(2)]
        near("pprof's waiter_lock delay", ns, truth["waiter_lock"][0])
    finally:
        svc.close()


CHECKS = {"mutex": check_mutex, "block": check_block, "text-index": check_text_index,
          "delta": check_delta, "fraction": check_fraction, "pprof": check_pprof}

if __name__ == "__main__":
    h.main(CHECKS[sys.argv[1]])
