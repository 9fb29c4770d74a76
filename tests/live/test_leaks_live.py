"""Leak checks while the program runs (/debug/pprof/leaks), held to the truth
of tests/live/leak_server.c: a server-like program with churning threads, a
reachable cache, and a leaker that loses objects from leak_one on command.

  exact        exact mode: two checks with leaks commanded between them; the
               definitely lost objects of leak_one's stack grow by exactly the
               commanded count, read from ?debug=1, from the profile through
               the project's decoder and through `go tool pprof -raw
               -tagfocus=leak=definite`; leak_one's is the only lost stack; the
               cache (cache_put, cache_table) is reachable, with its exact
               count; the churn threads' stacks are never lost; the program's
               output and exit status are its own.
  delta        ?seconds=N while the test commands K leaks inside the window
               (sent once the index shows the window waiting, and checked to
               be still waiting after the program said it had leaked): the
               delta holds exactly K on leak_one and nothing from the leaks
               before it; as text and as a profile (whose time and duration
               are the window's).
  sampled      rate 64 KiB and the default rate, fixed seeds, large leaks: the
               estimated definitely lost bytes of leak_one within 4 standard
               deviations of the truth (the deviation from docs/maths.md), the
               summary's ± within a factor 2 of it, the profile's estimate the
               text's; the cache and the churn never lost.
  busy         while a check (a delta's window) holds the right to run, a
               second request answers 500 "Could not run the leak check: a leak
               check is already running"; a client that goes away ends the
               window, and the next check runs.
  disconnect   a client that resets its connection while the clone reads a
               300 MiB heap: the check ends, the clone is reaped (the program
               has no child left, not even a zombie), the next check is exact.
  latency      during checks of a 300 MiB heap, the churn threads' longest
               request (the program's own measure) and the main thread's echo
               ("ping") stay under 1 s; the figures are printed.
  sigchld      checks (plain, on a big heap, and a delta) send no SIGCHLD to
               the program, and its waitpid(-1, WNOHANG), asked while the clone
               runs, answers ECHILD as with no child.
  cpu-profile  a check while /debug/pprof/profile?seconds=2 runs: both answer,
               the check exact, the profile readable.
  spawn        checks while a thread of the program forks and execs /bin/true
               in a loop: exact, and every child ran and was reaped by the
               program.
  rate         the program loses 100 objects a second by itself (leak_tick):
               a ?seconds=3 delta holds as many as the program's own record of
               when it lost them puts in the window (bounds for the moment of
               each clone).

Usage: test_leaks_live.py CHECK (run by meson test; the paths come from the
environment: HEAPPROF_LIB, HEAPPROF_DECODE, HEAPPROF_LEAK_SERVER).
"""

import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402
from helpers import check  # noqa: E402

LEAK_SIZE = 96
CACHE = 1000

# The program's sites: a stack is filed under the first of these among its
# frames (leak_one from a command, leak_one from the rate leaker).
def site_of(funcs):
    names = [h.short_name(f) for f in funcs]
    if "leak_one" in names:
        return "leak_tick" if "leak_tick" in names else "leak_one"
    for s in ("cache_put", "cache_table", "churn_alloc", "big_put"):
        if s in names:
            return s
    return "other"


class Server:
    """leak_server under the preloaded library, serving on an ephemeral
    port; commands on its stdin, answers read line by line from stdout."""

    def __init__(self, tmp, rate=1, seed=None, args=(), extra=None):
        env = h.base_env()
        env.pop("HEAPPROF_LEAK_SCAN", None)  # the leak check on, as users have it
        env.update({"LD_PRELOAD": h.lib_path(), "HEAPPROF": os.path.join(tmp, "exit.pb.gz"),
                    "HEAPPROF_HTTP": "127.0.0.1:0", "HEAPPROF_LEAK_REACHABLE": "1",
                    "HEAPPROF_LEAK_STACKS": "1000", "HEAPPROF_LEAKS": os.path.join(tmp, "exit.txt")})
        if rate is not None:
            env["HEAPPROF_RATE"] = str(rate)
        if seed is not None:
            env["HEAPPROF_SEED"] = str(seed)
        env.update(extra or {})
        self.tmp = tmp
        self.proc = subprocess.Popen([h.env_path("HEAPPROF_LEAK_SERVER")] + list(args), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        h.kill_at_exit(self.proc)
        m, self.err_head = h.read_until(self.proc.stderr,
                                        r"serving http://(127\.0\.0\.1:\d+)/debug/pprof/")
        check(m is not None, f"the server did not announce its endpoint: {self.err_head!r}")
        self.addr = m.group(1)
        self.base = f"http://{self.addr}/debug/pprof/"
        self.out = []      # every line of stdout, in order
        self.pending = []  # lines read but not yet asked for
        self.lock = threading.Lock()
        self.expect(r"^leak_server: ready$")

    def expect(self, pattern, limit=h.WAIT_LIMIT):
        """The next line (read or pending) matching pattern; others stay pending."""
        with self.lock:
            for i, line in enumerate(self.pending):
                m = re.search(pattern, line)
                if m:
                    del self.pending[i]
                    return m
            m, text = h.read_until(self.proc.stdout, pattern, limit)
            lines = text.splitlines()
            if m:
                self.out.append(m.group(0))
            self.out.extend(lines)
            self.pending.extend(lines)
            check(m is not None, f"the server never printed /{pattern}/; it printed "
                  f"{text!r}; exit status {self.proc.poll()}")
            return m

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def cmd(self, line, pattern):
        self.send(line)
        return self.expect(pattern)

    def leak(self, n, size=LEAK_SIZE):
        m = self.cmd(f"leak {n} {size}", r"^leaked (\d+) total (\d+) bytes (\d+)$")
        return int(m.group(2))

    def wait_info(self):
        m = self.cmd("wait", r"^wait rc=(-?\d+) errno=(\S+) children=(-?\d+) sigchld=(\d+)$")
        return {"rc": int(m.group(1)), "errno": m.group(2), "children": int(m.group(3)),
                "sigchld": int(m.group(4))}

    def get(self, path, timeout=300):
        return get(self.base + path, timeout)

    def index(self):
        st, body = self.get("")
        check(st == 200, f"the index answered {st}")
        return body.decode()

    def checks_so_far(self):
        m = re.search(r"Leak checks so far: (\d+)", self.index())
        return int(m.group(1)) if m else 0

    def text_check(self, query=""):
        st, body = self.get("leaks?debug=1" + query)
        check(st == 200, f"leaks?debug=1{query} answered {st}: {body[:300]!r}")
        return parse_text(body.decode())

    def profile_check(self, query="", name="leaks.pb.gz"):
        st, body = self.get("leaks" + ("?" + query.lstrip("&") if query else ""))
        check(st == 200, f"leaks{query} answered {st}: {body[:300]!r}")
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(body)
        return path

    def finish(self):
        """quit: (status, every stdout line, stderr)."""
        self.send("quit")
        self.expect(r"^bye$")
        out, err = self.proc.communicate(timeout=120)
        self.out.extend(out.decode(errors="replace").splitlines())
        return self.proc.returncode, self.out, self.err_head + err.decode(errors="replace")


def get(url, timeout=300):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Background:
    """A GET in a thread: .result is (status, body) once .done."""

    def __init__(self, url, timeout=300):
        self.result = None
        self.t = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self.t.start()

    def _run(self, url, timeout):
        try:
            self.result = get(url, timeout)
        except Exception as e:  # noqa: BLE001 (a failed request is a result here)
            self.result = (None, repr(e).encode())

    def wait(self, limit=300):
        self.t.join(limit)
        check(not self.t.is_alive(), f"no answer within {limit} s")
        return self.result


# ---- the answers -------------------------------------------------------------

_FIRST = re.compile(r"^heapprof: live leak check: (\d+) objects checked in ([\d.]+) ms, the program "
                    r"held for ([\d.]+) ms; ([\d.]+) MiB of memory of the check's own$")
_FIRST_DELTA = re.compile(r"^heapprof: live leak check, what became lost over (\d+) s: two checks, "
                          r"the second ([\d.]+) ms long, the program held for ([\d.]+) ms$")
_STACK = h.LEAK_STACK
_FRAME = re.compile(r"^    #(\d+) (\S+)")


def parse_text(text):
    """{"first": match, "delta": bool, "header": dict or None, "none": bool,
    "sites": {site: {verdict: [objects, bytes, sd, samples]}}, "text"}."""
    lines = text.splitlines()
    check(lines, "an empty answer")
    first = _FIRST.match(lines[0]) or _FIRST_DELTA.match(lines[0])
    check(first is not None, f"unexpected first line: {lines[0]!r}\n{text[:2000]}")
    out = {"first": first, "delta": _FIRST_DELTA.match(lines[0]) is not None, "header": None,
           "none": False, "sites": {}, "text": text}
    stacks = []
    cur = None
    for line in lines[1:]:
        header = h.leak_header(line)
        if header:
            out["header"] = header
            continue
        if h.no_leaks_line(line):
            out["none"] = True
            continue
        m = _STACK.match(line)
        if m:
            cur = {"verdict": m.group(6), "objects": int(m.group(5)), "bytes": int(m.group(2)),
                   "sd": int(m.group(3)) if m.group(3) else 0,
                   "samples": int(m.group(4)) if m.group(4) else 0, "funcs": []}
            stacks.append(cur)
            continue
        m = _FRAME.match(line)
        if m and cur is not None:
            cur["funcs"].append(m.group(2))
            continue
        cur = None
    for s in stacks:
        v = out["sites"].setdefault(site_of(s["funcs"]), {}).setdefault(s["verdict"], [0, 0, 0, 0])
        v[0] += s["objects"]
        v[1] += s["bytes"]
        v[2] = math.hypot(v[2], s["sd"])
        v[3] += s["samples"]
    return out


def lost(parsed, site, verdict="definitely lost"):
    return parsed["sites"].get(site, {}).get(verdict, [0, 0, 0, 0])


def profile_sites(path):
    """{site: {leak label: [inuse objects, inuse bytes]}} from heapprof-decode."""
    doc = h.decode_json(path)
    out = {}
    for s in doc["samples"]:
        if not (s["values"][2] or s["values"][3]):
            continue
        funcs = [ln["function"] for loc in s["stack"] for ln in loc["lines"]]
        label = s.get("labels", {}).get("leak", "none")
        v = out.setdefault(site_of(funcs), {}).setdefault(label, [0, 0])
        v[0] += s["values"][2]
        v[1] += s["values"][3]
    return out, doc


_RAW_SAMPLE = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+):((?:\s+\d+)+)\s*$")
_RAW_LOC = re.compile(r"^\s+(\d+): 0x[0-9a-f]+ M=\d+ (\S+)")


def pprof_definite(path, tmp):
    """{site: [inuse objects, inuse bytes]} of `go tool pprof -raw
    -tagfocus=leak=definite`."""
    proc = h.pprof(["-raw", "-tagfocus=leak=definite", path], tmp)
    check(proc.returncode == 0, f"go tool pprof -raw refused the profile:\n{proc.stderr[-2000:]}")
    samples, locs, section = [], {}, None
    for line in proc.stdout.splitlines():
        if line.startswith("Samples:"):
            section = "s"
        elif line.startswith("Locations"):
            section = "l"
        elif line.startswith("Mappings"):
            section = None
        elif section == "s":
            m = _RAW_SAMPLE.match(line)
            if m:
                samples.append(([int(m.group(i)) for i in range(1, 5)], m.group(5).split()))
        elif section == "l":
            m = _RAW_LOC.match(line)
            if m:
                locs[m.group(1)] = m.group(2)
    out = {}
    for values, ids in samples:
        v = out.setdefault(site_of([locs.get(i, "?") for i in ids]), [0, 0])
        v[0] += values[2]
        v[1] += values[3]
    return out


def check_output(code, out, err, want_lines):
    check(code == 0, f"the server's exit status {code}:\n{err[-3000:]}")
    check(out == want_lines, f"the server's output is not its own: {out}, want {want_lines}")


# ---- the checks --------------------------------------------------------------

def check_never_lost(parsed, sites, what):
    for site in sites:
        bad = {v: x for v, x in parsed["sites"].get(site, {}).items() if "lost" in v}
        check(not bad, f"{what}: {site} called lost: {bad}\n{parsed['text'][:4000]}")


def check_exact():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    want = ["leak_server: ready"]
    results = []
    total = 0
    for n in (100, 250):
        total = srv.leak(n)
        want.append(f"leaked {n} total {total} bytes {total * LEAK_SIZE}")
        t = srv.text_check()
        p = srv.profile_check(name=f"leaks{n}.pb.gz")
        results.append((total, t, p))
    go = h.go_or_skip_soft()
    for total, t, path in results:
        d = lost(t, "leak_one")
        check(d[:2] == [total, total * LEAK_SIZE],
              f"?debug=1 after {total} leaked: leak_one definitely lost {d[:2]}, want "
              f"[{total}, {total * LEAK_SIZE}]\n{t['text'][:3000]}")
        others = {s: v for s, v in t["sites"].items() if s != "leak_one" and
                  any("lost" in k for k in v)}
        check(not others, f"?debug=1: stacks lost besides leak_one's: {others}\n{t['text'][:4000]}")
        hd = t["header"]
        check(hd and hd["kind"] == "exact" and hd["def_objects"] == total and
              hd["ind_objects"] == 0, f"?debug=1 header: {hd}")
        check(lost(t, "cache_put", "still reachable")[:2] == [CACHE, CACHE * 72] and
              lost(t, "cache_table", "still reachable")[0] == 1,
              f"the cache is not reachable whole: {t['sites'].get('cache_put')}, "
              f"{t['sites'].get('cache_table')}")
        check_never_lost(t, ("churn_alloc", "cache_put", "cache_table"), "?debug=1")
        sites, doc = profile_sites(path)
        check(sites.get("leak_one", {}).get("definite") == [total, total * LEAK_SIZE],
              f"the profile (decoder) after {total} leaked: leak_one {sites.get('leak_one')}")
        bad = {s: v for s, v in sites.items() if s != "leak_one" and
               ("definite" in v or "indirect" in v)}
        check(not bad, f"the profile (decoder): stacks lost besides leak_one's: {bad}")
        check(sites.get("cache_put", {}).get("reachable") == [CACHE, CACHE * 72],
              f"the profile (decoder): cache_put {sites.get('cache_put')}")
        unlabelled = {s: v["none"] for s, v in sites.items() if "none" in v}
        check(not unlabelled, f"in-use samples without the leak label: {unlabelled}")
        if go:
            g = pprof_definite(path, tmp)
            check(g == {"leak_one": [total, total * LEAK_SIZE]},
                  f"go tool pprof -raw -tagfocus=leak=definite after {total} leaked: {g}")
    (t0, _, _), (t1, _, _) = results
    check(t1 - t0 == 250, f"the growth is {t1 - t0}, want 250")
    code, out, err = srv.finish()
    want.append("bye")
    check_output(code, out, err, want)


def window_left(srv, seconds):
    """Seconds left of a leak delta's wait (the index's 'L s left'), None when
    the index lists none: while the base or final check runs it shows the
    check's time limit instead, far above `seconds`."""
    m = re.search(r"a leak delta \(leaks\) over (\d+) s, (\d+) s left", srv.index())
    return int(m.group(2)) if m else None


def delta_with_leaks(srv, k, seconds, query):
    """A ?seconds= delta with k leaks commanded inside its wait; retried with a
    longer window when the machine was too slow to leak inside it. Returns the
    answer's body."""
    for attempt in range(4):
        bg = Background(srv.base + f"leaks?seconds={seconds}{query}")
        h.wait_for("the delta's wait to begin",
                   lambda: (window_left(srv, seconds) or 10 ** 9) <= seconds)
        srv.leak(k)
        inside = (window_left(srv, seconds) or 10 ** 9) <= seconds
        st, body = bg.wait()
        check(st == 200, f"the delta answered {st}: {body[:300]!r}")
        if inside:
            return body
        print(f"note: the leaks did not fit a {seconds} s window; trying {2 * seconds} s")
        seconds *= 2
    raise h.Failure("the leaks never fitted inside the delta's window")


def check_delta():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    srv.leak(40)  # before any window: never in a delta
    body = delta_with_leaks(srv, 70, 2, "&debug=1")
    t = parse_text(body.decode())
    check(t["delta"], f"not a delta's first line: {t['text'][:300]}")
    d = lost(t, "leak_one")
    check(d[:2] == [70, 70 * LEAK_SIZE],
          f"the delta: leak_one {d[:2]}, want [70, {70 * LEAK_SIZE}]\n{t['text'][:3000]}")
    others = {s: v for s, v in t["sites"].items() if s != "leak_one"}
    check(not others, f"the delta holds other stacks: {others}\n{t['text'][:3000]}")
    check(t["header"] and t["header"]["def_objects"] == 70, f"header: {t['header']}")
    # The profile form; 40 + 70 lost before it.
    t0 = time.time()
    body = delta_with_leaks(srv, 33, 2, "")
    t1 = time.time()
    path = os.path.join(tmp, "delta.pb.gz")
    with open(path, "wb") as f:
        f.write(body)
    sites, doc = profile_sites(path)
    check(sites == {"leak_one": {"definite": [33, 33 * LEAK_SIZE]}},
          f"the delta's profile: {sites}, want leak_one 33 definite only")
    start, dur = doc["time_nanos"] / 1e9, doc["duration_nanos"] / 1e9
    check(t0 - 0.05 <= start and start + dur <= t1 + 0.05 and dur >= 1.9,
          f"the delta's window {start:.3f} + {dur:.3f} s is not within the request "
          f"{t0:.3f}..{t1:.3f} or shorter than its 2 s")
    if h.go_or_skip_soft():
        g = pprof_definite(path, tmp)
        check(g == {"leak_one": [33, 33 * LEAK_SIZE]}, f"go tool pprof on the delta: {g}")
    # A plain check afterwards: everything lost so far.
    t = srv.text_check()
    check(lost(t, "leak_one")[0] == 40 + 70 + 33, f"after the deltas: {lost(t, 'leak_one')}")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_sampled():
    tmp = h.tempdir()
    cases = ((65536, 8192, 2000, (1, 2, 3)), (h.DEFAULT_RATE, 65536, 600, (1, 2)))
    for rate, size, k, seeds in cases:
        p = -math.expm1(-size / rate)
        sd = math.sqrt(k * size * size * (1 - p) / p)
        truth = k * size
        for seed in seeds:
            srv = Server(tmp, rate=rate, seed=seed)
            srv.leak(k, size)
            t = srv.text_check()
            d = lost(t, "leak_one")
            what = f"rate {rate}, seed {seed}, {k} objects of {size} bytes lost"
            print(f"{what}: estimated {d[1]} bytes (± {d[2]:.0f}, {d[3]} samples), truth {truth}, "
                  f"sd from the maths {sd:.0f}")
            check(abs(d[1] - truth) <= 4 * sd,
                  f"{what}: estimated {d[1]} bytes definitely lost, truth {truth}, "
                  f"4 sd = {4 * sd:.0f}\n{t['text'][:3000]}")
            check(0.5 * sd <= d[2] <= 2 * sd,
                  f"{what}: the summary's ± {d[2]:.0f}, the maths' sd {sd:.0f}")
            n_sd = math.sqrt(k * p * (1 - p))
            check(abs(d[3] - k * p) <= 4 * n_sd + 1,
                  f"{what}: {d[3]} samples, expected {k * p:.1f} ± {n_sd:.1f}")
            check(t["header"] and t["header"]["kind"] == "estimated", f"header {t['header']}")
            check_never_lost(t, ("churn_alloc", "cache_put", "cache_table"), what)
            path = srv.profile_check(name=f"s{rate}-{seed}.pb.gz")
            sites, _ = profile_sites(path)
            pb = sites.get("leak_one", {}).get("definite", [0, 0])[1]
            check(abs(pb - d[1]) <= 0.01 * d[1] + 1,
                  f"{what}: the profile says {pb} bytes, the text {d[1]}")
            code, out, err = srv.finish()
            check(code == 0, f"{what}: exit status {code}: {err[-2000:]}")


def raw_request(srv, path):
    host, port = srv.addr.split(":")
    c = socket.create_connection((host, int(port)), timeout=30)
    c.sendall(f"GET /debug/pprof/{path} HTTP/1.1\r\nHost: {srv.addr}\r\n\r\n".encode())
    return c


def reset(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


BUSY = b"Could not run the leak check: a leak check is already running"


def check_busy():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    srv.leak(10)
    c = raw_request(srv, "leaks?seconds=60&debug=1")
    h.wait_for("the delta to be listed", lambda: window_left(srv, 60) is not None)
    for q in ("leaks", "leaks?debug=1", "leaks?seconds=1"):
        st, body = srv.get(q)
        check(st == 500 and body.startswith(BUSY),
              f"{q} during another check answered {st}: {body[:300]!r}")
    c.close()  # the client goes away: the window ends
    h.wait_for("the window to end when its client left", lambda: "In progress" not in srv.index())
    t = srv.text_check()
    check(lost(t, "leak_one")[0] == 10, f"the check after: {lost(t, 'leak_one')}")
    code, out, err = srv.finish()
    check_output(code, out, err, ["leak_server: ready", "leaked 10 total 10 bytes 960", "bye"])


BIG_MIB = 300


def check_disconnect():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    srv.cmd(f"grow {BIG_MIB}", r"^grown \d+ objects \d+$")
    srv.leak(25)
    caught = False
    for attempt in range(5):
        before = srv.checks_so_far()
        c = raw_request(srv, "leaks?debug=1")
        h.wait_for("the check to be listed",
                   lambda: "a leak check (leaks)" in srv.index() or srv.checks_so_far() > before)
        reset(c)
        h.wait_for("the check to end", lambda: "In progress" not in srv.index())
        if srv.checks_so_far() == before:
            caught = True  # it ended unfinished: cancelled when its client left
            break
        print("note: the check finished before its client left; again")
    check(caught, "no check was still running when its client left, in 5 tries")
    h.wait_for("the cancelled clone to be reaped", lambda: srv.wait_info()["children"] == 0)
    t = srv.text_check()
    check(lost(t, "leak_one")[:2] == [25, 25 * LEAK_SIZE],
          f"the check after a client left: {lost(t, 'leak_one')}")
    check_never_lost(t, ("big_put", "cache_put", "churn_alloc"), "after a disconnect")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def live_children(pid):
    """The processes whose parent is pid and that still run (not zombies)."""
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    running = []
    for k in kids:
        try:
            with open(f"/proc/{k}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            running.append(k)
    return running


def check_exit_during():
    """The program exits while a live check's clone runs: that clone is
    ended before the exit's own check copies the process (never two copies
    at once), the exit's check gives the verdicts, and the program's exit
    status is its own."""
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    srv.cmd(f"grow {BIG_MIB}", r"^grown \d+ objects \d+$")
    srv.leak(25)
    pid = srv.proc.pid
    running = False
    for attempt in range(5):
        before = srv.checks_so_far()
        c = raw_request(srv, "leaks?debug=1")
        h.wait_for("the check's clone", lambda: live_children(pid) or srv.checks_so_far() > before)
        if srv.checks_so_far() == before and live_children(pid):
            running = True
            break
        reset(c)
        h.wait_for("the check to end", lambda: not live_children(pid))
        print("note: the check finished before the exit; again")
    check(running, "no live check was still running at the exit, in 5 tries")
    most = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            most[0] = max(most[0], len(live_children(pid)))
            time.sleep(0.002)

    w = threading.Thread(target=watch)
    w.start()
    try:
        code, out, err = srv.finish()
    finally:
        done.set()
        w.join()
    reset(c)
    check(code == 0, f"exit status {code}: {err[-2000:]}")
    check(most[0] <= 1, f"{most[0]} copies of the process at once during the exit")
    with open(os.path.join(tmp, "exit.txt")) as f:
        summary = f.read()
    want = f"definitely {25 * LEAK_SIZE} bytes in 25 objects, indirectly 0 bytes in 0 objects"
    check(want in summary.splitlines()[0] and "leak_one" in summary,
          f"the exit's summary, want leak_one's 25 objects lost:\n{summary[:3000]}")


def check_latency():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    srv.cmd(f"grow {BIG_MIB}", r"^grown \d+ objects \d+$")
    pings, stalls, pauses, took = [], [], [], []
    for i in range(3):
        srv.cmd("stall", r"^stall ")  # resets the program's measure
        before = srv.checks_so_far()
        bg = Background(srv.base + "leaks?debug=1")
        while bg.t.is_alive():
            t0 = time.monotonic()
            srv.cmd("ping", r"^pong$")
            pings.append(time.monotonic() - t0)
        st, body = bg.result
        check(st == 200, f"the check answered {st}: {body[:300]!r}")
        m = srv.cmd("stall", r"^stall max_us=(\d+) requests=(\d+)$")
        stalls.append(int(m.group(1)) / 1e6)
        check(int(m.group(2)) > 0, "no churn request was served during the check")
        f = parse_text(body.decode())["first"]
        took.append(float(f.group(2)) / 1e3)
        pauses.append(float(f.group(3)) / 1e3)
        check(srv.checks_so_far() == before + 1, "the check was not counted")
    print(f"{BIG_MIB} MiB heap, exact mode: checks took {['%.2f' % x for x in took]} s; the "
          f"program held {['%.1f' % (x * 1e3) for x in pauses]} ms; longest churn request "
          f"{['%.1f' % (x * 1e3) for x in stalls]} ms; {len(pings)} pings, longest "
          f"{max(pings) * 1e3:.1f} ms")
    check(max(stalls) < 1.0, f"a churn request stalled {max(stalls):.2f} s during a check")
    check(max(pings) < 1.0, f"the main thread's echo took {max(pings):.2f} s during a check")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_sigchld():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    w = srv.wait_info()
    check(w == {"rc": -1, "errno": "ECHILD", "children": 0, "sigchld": 0},
          f"before any check: {w}")
    srv.text_check()
    srv.profile_check()
    srv.cmd(f"grow {BIG_MIB}", r"^grown \d+ objects \d+$")
    during = []
    for attempt in range(5):
        bg = Background(srv.base + "leaks?debug=1")
        while bg.t.is_alive():
            w = srv.wait_info()
            if w["children"] > 0:
                during.append(w)
        check(bg.result[0] == 200, f"the check answered {bg.result[0]}")
        if during:
            break
    check(during, "never saw the clone as the program's child while a check ran (5 checks)")
    for w in during:
        check(w["rc"] == -1 and w["errno"] == "ECHILD" and w["sigchld"] == 0,
              f"waitpid(-1, WNOHANG) while the clone ran: {w}")
    print(f"{len(during)} waitpid calls while the clone ran: all ECHILD, no SIGCHLD")
    body = delta_with_leaks(srv, 5, 1, "&debug=1")
    check(lost(parse_text(body.decode()), "leak_one")[0] == 5, "the delta")
    w = h.wait_for("the clones to be reaped", lambda: (lambda w: w if w["children"] == 0
                                                       else None)(srv.wait_info()))
    check(w == {"rc": -1, "errno": "ECHILD", "children": 0, "sigchld": 0},
          f"after the checks: {w}")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_cpu_profile():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    srv.leak(12)
    prof = Background(srv.base + "profile?seconds=2")
    h.wait_for("the CPU profile's window", lambda: "a CPU profile (profile)" in srv.index())
    srv.leak(7)
    t = srv.text_check()
    still = "a CPU profile (profile)" in srv.index()
    st, body = prof.wait()
    check(st == 200, f"the CPU profile answered {st}: {body[:300]!r}")
    check(lost(t, "leak_one")[:2] == [19, 19 * LEAK_SIZE],
          f"the check during a CPU profile: {lost(t, 'leak_one')}\n{t['text'][:3000]}")
    check_never_lost(t, ("churn_alloc", "cache_put", "cache_table"), "during a CPU profile")
    path = os.path.join(tmp, "cpu.pb.gz")
    with open(path, "wb") as f:
        f.write(body)
    doc = h.decode_json(path)
    check(doc["samples"], "the CPU profile has no samples")
    if not still:
        print("note: the check ended after the CPU profile's window")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_spawn():
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    n = 300
    srv.cmd(f"spawn {n}", r"^spawn started$")
    total, rounds, overlapped = 0, 0, 0
    done = None
    while done is None:
        total = srv.leak(10)
        t = srv.text_check()
        rounds += 1
        check(lost(t, "leak_one")[:2] == [total, total * LEAK_SIZE],
              f"check {rounds} while forking: leak_one {lost(t, 'leak_one')}, want {total}")
        check_never_lost(t, ("churn_alloc", "cache_put", "cache_table"), "while forking")
        with srv.lock:
            done = next((ln for ln in srv.pending if ln.startswith("spawned ")), None)
        if done is None:
            overlapped += 1
        check(rounds < 1000, "the spawner never finished")
    m = srv.expect(r"^spawned (\d+) failed (\d+)$")
    check(int(m.group(1)) == n and int(m.group(2)) == 0, f"the spawner: {m.group(0)}")
    check(overlapped >= 1, "no check ran while the program was forking")
    w = srv.wait_info()
    check(w["rc"] == -1 and w["errno"] == "ECHILD" and w["sigchld"] <= n,
          f"after {n} children: {w} (more SIGCHLDs than children: a clone's)")
    print(f"{overlapped} checks while forking {n} children; {w['sigchld']} SIGCHLDs")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_rate():
    tmp = h.tempdir()
    per_s = 100
    srv = Server(tmp, rate=1, args=["-r", str(per_s)])
    h.wait_for("the first leaks", lambda: int(srv.cmd("times", r"^times (\d+)$").group(1)) > 0)
    seconds = 3
    path = srv.profile_check(f"seconds={seconds}", name="rate.pb.gz")
    sites, doc = profile_sites(path)
    got = sites.get("leak_tick", {}).get("definite", [0, 0])[0]
    start = doc["time_nanos"] / 1e9
    end = start + doc["duration_nanos"] / 1e9
    # Each check's clone comes after its recorded time, by the time taken to
    # hold the threads: up to SLACK here, a bound for a busy machine.
    slack = 0.5

    def times():
        """The program's record, once it reaches past the window and the slack."""
        m = srv.cmd("times", r"^times (\d+)$")
        ticks = []
        for _ in range(int(m.group(1))):
            mm = srv.expect(r"^t (\d+) (\d+)$")
            ticks.append((int(mm.group(1)) / 1e9, int(mm.group(2)) / 1e9))
        return ticks if ticks and ticks[-1][0] >= end + slack else None
    ticks = h.wait_for("the program's record to pass the window", times)
    low = sum(1 for b, a in ticks if b >= start + slack and a < end)
    high = sum(1 for b, a in ticks if a >= start and b < end + slack)
    print(f"rate {per_s}/s: a {seconds} s delta (window {end - start:.3f} s) holds {got} objects "
          f"from leak_tick; the program's record puts {low}..{high} in the window")
    check(low <= got <= high, f"the delta holds {got} of leak_tick's objects; the program's "
          f"record says {low} to {high}")
    check(got >= per_s * (seconds - 1), f"{got} objects over {seconds} s at {per_s}/s")
    bad = {s: v for s, v in sites.items() if s != "leak_tick"}
    check(not bad, f"other stacks in the delta: {bad}")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


_API = re.compile(r"^check rc=(-?\d+) definite=(\d+)/(\d+) indirect=(\d+)/(\d+) "
                  r"reachable=(\d+)/(\d+) estimated=(\d)$|^check unavailable$")


def api_check(srv, path=None):
    m = srv.cmd("check" + (" " + path if path else ""), _API.pattern)
    check(m.group(1) is not None, "heapprof_leak_check is not exported by the library")
    g = [int(x) for x in m.groups()]
    return {"rc": g[0], "definite": g[1:3], "indirect": g[3:5], "reachable": g[5:7],
            "estimated": g[7]}


def check_api():
    """heapprof_leak_check() from the program (leak_server's "check"): the
    counts per verdict exact, the .txt summary and the profile the endpoint's,
    and -EBUSY while the endpoint's check holds the right to run."""
    tmp = h.tempdir()
    srv = Server(tmp, rate=1)
    c = api_check(srv)
    check(c["rc"] == 0 and c["definite"] == [0, 0] and c["indirect"] == [0, 0] and
          c["estimated"] == 0, f"nothing lost yet: {c}")
    check(c["reachable"][0] >= CACHE + 1, f"the cache is not counted reachable: {c}")
    srv.leak(120)
    c = api_check(srv)
    check(c["rc"] == 0 and c["definite"] == [120, 120 * LEAK_SIZE] and c["indirect"] == [0, 0],
          f"after 120 leaked: {c}")
    txt = os.path.join(tmp, "api.txt")
    c = api_check(srv, txt)
    check(c["rc"] == 0, f"with a .txt path: {c}")
    with open(txt) as f:
        t = parse_text(f.read())
    check(lost(t, "leak_one")[:2] == [120, 120 * LEAK_SIZE] and
          lost(t, "cache_put", "still reachable")[0] == CACHE,
          f"the .txt summary: {t['sites']}")
    pb = os.path.join(tmp, "api.pb.gz")
    c = api_check(srv, pb)
    sites, _ = profile_sites(pb)
    check(c["rc"] == 0 and sites.get("leak_one", {}).get("definite") == [120, 120 * LEAK_SIZE],
          f"the profile: {c}, {sites.get('leak_one')}")
    conn = raw_request(srv, "leaks?seconds=60")
    h.wait_for("the delta to be listed", lambda: window_left(srv, 60) is not None)
    c = api_check(srv)
    check(c["rc"] == -16, f"during the endpoint's delta: {c}, want -EBUSY (-16)")
    conn.close()
    h.wait_for("the window to end", lambda: "In progress" not in srv.index())
    c = api_check(srv)
    check(c["rc"] == 0 and c["definite"][0] == 120, f"after the delta: {c}")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_interval():
    """HEAPPROF_LEAK_INTERVAL=1: the timeline's "lost" series reaches the
    lost bytes after each command (waited for, never timed) and holds only
    the values the program's leaks make: exact, never falling, nothing
    indirect."""
    tmp = h.tempdir()
    srv = Server(tmp, rate=1, extra={"HEAPPROF_LEAK_INTERVAL": "1", "HEAPPROF_TIMELINE": "1"})

    def series():
        st, body = srv.get("timeline?format=json")
        check(st == 200, f"timeline?format=json answered {st}: {body[:300]!r}")
        doc = json.loads(body)
        check("lost" in doc, f"no lost series in the timeline: {sorted(doc)}")
        return doc["lost"]

    wanted = [0]
    for n in (100, 50):
        total = srv.leak(n)
        wanted.append(total * LEAK_SIZE)
        h.wait_for(f"a periodic check to see {total} objects lost",
                   lambda: (lambda s: s["definite"] and s["definite"][-1] == wanted[-1])(series()))
    s = series()
    d, ind, ts = s["definite"], s["indirect"], s["times_s"]
    check(len(d) == len(ind) == len(ts) >= 2, f"series of unequal lengths: {s}")
    check(all(v in wanted for v in d), f"lost bytes other than the leaks' {wanted}: {d}")
    check(d == sorted(d), f"the lost bytes fell: {d}")
    check(not any(ind), f"indirectly lost bytes: {ind}")
    check(ts == sorted(ts), f"times out of order: {ts}")
    code, out, err = srv.finish()
    check(code == 0, f"exit status {code}: {err[-2000:]}")


def check_woken():
    """A thread woken from read() while the copy is made, holding the one
    pointer to an object only in a frame below the stack pointer /proc gave
    for its read: 1000 live checks (exact mode), none calls the object lost
    (the copy reads again, or whole, the stacks of threads that ran since
    their state was read). The library before that fix called it lost in 2
    or 3 of 300 checks, two runs in three."""
    tmp = h.tempdir()
    env = dict(os.environ, LD_PRELOAD=h.lib_path(), HEAPPROF=os.path.join(tmp, "w.pb.gz"),
               HEAPPROF_RATE="1", HEAPPROF_LEAKS="off")
    r = subprocess.run([h.env_path("HEAPPROF_WOKEN"), "1000"], env=env, capture_output=True,
                       text=True, timeout=200)
    print(r.stdout.strip())
    m = re.search(r"woken: (\d+) of (\d+) checks called it lost \((\d+) ran\)", r.stdout)
    h.check(r.returncode == 0 and m, f"woken: {r.returncode} {r.stdout!r} {r.stderr[-500:]!r}")
    h.check(int(m.group(3)) >= 800, f"only {m.group(3)} of 1000 checks ran")
    h.check(int(m.group(1)) == 0, f"{m.group(1)} checks called a held object lost")


CHECKS = {
    "woken": check_woken,
    "api": check_api,
    "interval": check_interval,
    "exact": check_exact,
    "delta": check_delta,
    "sampled": check_sampled,
    "busy": check_busy,
    "disconnect": check_disconnect,
    "exit-during": check_exit_during,
    "latency": check_latency,
    "sigchld": check_sigchld,
    "cpu-profile": check_cpu_profile,
    "spawn": check_spawn,
    "rate": check_rate,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        print("usage: test_leaks_live.py " + "|".join(CHECKS))
        sys.exit(2)
    h.main(CHECKS[sys.argv[1]])
