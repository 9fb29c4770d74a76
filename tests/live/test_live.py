"""Live profiles: the /debug/pprof/ endpoint read with
`go tool pprof` and plain HTTP, snapshots on a signal and at an interval, the
peak profile, the heapprof wrapper with its CI gate and suppressions, and a
flame graph in a real browser.

Usage: test_live.py CHECK   (run by meson test; paths come from the
environment: HEAPPROF_LIB, HEAPPROF_DECODE, HEAPPROF_SERVICE, HEAPPROF_PEAK_EXE,
HEAPPROF_LEAKY, HEAPPROF_WRAPPER)
"""

import json
import os
import re
import shutil
import signal
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402

LIVE_VARS = ("HEAPPROF_HTTP", "HEAPPROF_SIGNAL", "HEAPPROF_INTERVAL", "HEAPPROF_PEAK",
             "HEAPPROF_ANNOUNCE", "HEAPPROF_LEAKS_EXIT_CODE", "HEAPPROF_SUPPRESSIONS",
             "HEAPPROF_TIMELINE", "HEAPPROF_TIMELINE_MS")


def env_for(extra):
    env = h.base_env()
    for v in LIVE_VARS:
        env.pop(v, None)
    env.update(extra)
    return env


# The test programs' way to stay alive until the test is done with them
# (examples/service.c, tests/live/grower.c): they end only when their stdin
# does, which finish() closes.
HOLD = {"SERVICE_HOLD": "1", "GROWER_HOLD": "1"}


def without_holding(out):
    return "".join(ln for ln in out.splitlines(keepends=True) if not ln.endswith(": holding\n"))


class Held:
    """A test program under hold (HOLD) with its stdin a pipe: it works,
    says "NAME: holding" when its work is done, and ends when finish()
    closes its stdin. Killed at exit if a check fails first."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, env={**env, **HOLD}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     universal_newlines=True)
        h.kill_at_exit(self.proc)
        self.out_head = self.err_head = ""

    def wait_holding(self):
        """Until the program has done its work (its holding line)."""
        m, text = h.read_until(self.proc.stdout, r": holding$")
        self.out_head += text
        h.check(m is not None, f"the program never said it was holding: {text!r}")

    def finish(self):
        """Closes stdin; (status, stdout without the holding line, stderr)."""
        out, err = self.proc.communicate(timeout=60)
        return (self.proc.returncode, without_holding(self.out_head + out),
                self.err_head + err)


class Service(Held):
    """The long-running example (or argv) under the preloaded library and
    hold, serving on an ephemeral loopback port that it announces on
    stderr (that line is not in what finish() returns)."""

    def __init__(self, tmp, seconds=1, phase_ms=200, extra=None, argv=None):
        self.profile = os.path.join(tmp, "service.pb.gz")
        # A rate of 64 KiB: enough samples for every site to show in a
        # second even on a loaded machine.
        env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": self.profile,
                       "HEAPPROF_HTTP": "127.0.0.1:0", "HEAPPROF_RATE": "65536",
                       **(extra or {})})
        argv = argv or [h.env_path("HEAPPROF_SERVICE"), str(seconds), str(phase_ms)]
        super().__init__(argv, env)
        m, self.err_head = h.read_until(self.proc.stderr,
                                        r"serving http://(127\.0\.0\.1:\d+)/debug/pprof/")
        if not m:
            raise h.Failure(f"the service did not announce its endpoint: {self.err_head!r}")
        self.base = f"http://{m.group(1)}/debug/pprof/"
        self.addr = m.group(1)

    def has(self, path, *words):
        """True when GET base+path answers 200 with every word in it."""
        st, _, body = get(self.base + path)
        text = body.decode(errors="replace")
        return st == 200 and all(w in text for w in words)


def get(url, method="GET", timeout=20):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def flat_names(table):
    return {h.short_name(k): v for k, v in table.items()}


def check_heap_and_allocs():
    tmp = h.tempdir()
    svc = Service(tmp, seconds=1, phase_ms=200)
    svc.wait_holding()  # every site has allocated
    heap = h.pprof(["-top", "-nodefraction=0", svc.base + "heap"], tmp)
    allocs = h.pprof(["-top", "-nodefraction=0", svc.base + "allocs"], tmp)
    status, out, err = svc.finish()
    h.check(heap.returncode == 0, f"go tool pprof URL/heap failed:\n{heap.stderr[-2000:]}")
    h.check("Type: inuse_space" in heap.stdout, f"heap is not inuse_space:\n{heap.stdout}")
    for name in ("early_setup", "cache_insert", "late_growth"):
        h.check(name in heap.stdout, f"{name} missing from the live heap profile:\n{heap.stdout}")
    h.check(allocs.returncode == 0, f"go tool pprof URL/allocs failed:\n{allocs.stderr[-2000:]}")
    h.check("Type: alloc_space" in allocs.stdout,
            f"allocs does not default to alloc_space:\n{allocs.stdout}")
    h.check("handle_request" in allocs.stdout,
            f"handle_request (churn) missing from allocs:\n{allocs.stdout}")
    h.check(status == 0 and out.startswith("service: done"),
            f"the service was disturbed: status {status}, output {out!r}")


def check_delta():
    """A ?seconds= delta leaves out what was allocated before its window:
    early_setup allocates only at start (the window opens once the service
    has handled its first request, after early_setup); late_growth starts
    1 s into the run and allocates until the end, so at least the window's
    last second holds it."""
    tmp = h.tempdir()
    svc = Service(tmp, seconds=0, phase_ms=1000)  # works until finish()
    # early_setup is done once the first request has been handled.
    h.wait_for("the service's first round", lambda: svc.has("allocs?debug=1", "handle_request"))
    t0, wall0 = time.monotonic(), time.time()
    status, headers, body = get(svc.base + "heap?seconds=2", timeout=60)
    waited, wall1 = time.monotonic() - t0, time.time()
    code, out, err = svc.finish()
    h.check(status == 200, f"delta request answered {status}: {body[:200]!r}")
    # Not the default 30 s; the upper bound only catches that.
    h.check(1.8 <= waited <= 20, f"a 2 s delta took {waited:.1f} s")
    path = os.path.join(tmp, "delta.pb.gz")
    with open(path, "wb") as f:
        f.write(body)
    doc = h.decode_json(path)
    duration = doc["duration_nanos"] / 1e9
    h.check(1.8 <= duration <= waited + 0.05,
            f"a 2 s delta says it lasted {duration:.2f} s, within a request of {waited:.2f} s")
    # The window lies within the request: it opened after the request was
    # sent and closed before the answer came.
    start = doc["time_nanos"] / 1e9
    h.check(wall0 - 0.05 <= start <= wall1 - duration + 0.05,
            f"the delta's time_nanos is not its window's start: {start:.3f}, request "
            f"{wall0:.3f}..{wall1:.3f}, duration {duration:.2f} s")
    table = flat_names(h.functions(path, "cum"))
    h.check("early_setup" not in table or table["early_setup"][1] == 0,
            f"early_setup (allocated before the window) is in the delta: {table.get('early_setup')}")
    h.check(table.get("late_growth", (0, 0))[1] > 0,
            f"late_growth (allocated in the window) is missing from the delta: {table}")
    top = h.pprof(["-top", "-sample_index=alloc_space", path], tmp)
    h.check(top.returncode == 0 and "late_growth" in top.stdout,
            f"go tool pprof cannot read the delta:\n{top.stdout}{top.stderr[-1000:]}")
    h.check(code == 0, f"service exit status {code}")


def check_text_index_cmdline():
    tmp = h.tempdir()
    svc = Service(tmp, seconds=1, phase_ms=100)
    svc.wait_holding()  # every site has allocated
    st, _, text = get(svc.base + "heap?debug=1")
    st2, hd2, index = get(svc.base)
    st3, _, cmdline = get(svc.base + "cmdline")
    st4, _, allocs_text = get(svc.base + "allocs?debug=1")
    svc.finish()
    text = text.decode()
    h.check(st == 200 and text.startswith("heap profile: "), f"debug=1: {st} {text[:200]!r}")
    h.check("early_setup" in text and "service.c:" in text,
            f"debug=1 lacks function names and lines:\n{text[:2000]}")
    h.check(st4 == 200 and "handle_request" in allocs_text.decode(), "allocs?debug=1")
    index = index.decode()
    h.check(st2 == 200 and "text/html" in hd2.get("Content-Type", ""), f"index: {st2} {hd2}")
    for name in ("heap", "allocs", "cmdline", "peak", "goroutine", "threads", "threadcreate",
                 "symbol"):
        h.check(f">{name}</a>" in index, f"the index does not list {name}:\n{index}")
    h.check(re.search(r"stack table \d+ KiB of at most \d+ KiB, HEAPPROF_MAX_MEMORY", index),
            f"the index does not say what the stack table's ceiling counts:\n{index[:1500]}")
    h.check(st3 == 200 and b"service" in cmdline and b"\x00" in cmdline,
            f"cmdline: {cmdline!r}")


def check_methods():
    tmp = h.tempdir()
    svc = Service(tmp, seconds=1, phase_ms=100)
    st_head, hd_head, body_head = get(svc.base + "heap", method="HEAD")
    st_post, hd_post, _ = get(svc.base + "heap", method="POST")
    st_404, _, body_404 = get(svc.base + "nothing-here")
    st_root, _, _ = get(f"http://{svc.addr}/")
    svc.finish()
    # Every net/http/pprof path is served; an unknown name under the prefix
    # says what is.
    text = body_404.decode()
    h.check(st_404 == 404 and text.startswith("heapprof: /debug/pprof/nothing-here ")
            and "Served: heap" in text and "trace" in text, f"unknown route: {st_404} {text!r}")
    h.check(st_head == 200 and body_head == b"" and int(hd_head.get("Content-Length", 0)) > 0,
            f"HEAD: {st_head} {hd_head} {len(body_head)} bytes")
    h.check(st_post == 405 and "GET" in hd_post.get("Allow", ""), f"POST: {st_post} {hd_post}")
    h.check(st_404 == 404 and body_404, f"unknown profile: {st_404}")
    h.check(st_root == 404, f"/: {st_root}")


def untouched(s):
    """True when the server has neither answered nor closed socket s."""
    try:
        s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        return False  # an answer (408) or the end
    except BlockingIOError:
        return True
    except OSError:
        return False


def check_bad_clients():
    """Idle connections, garbage bytes and an oversized head do not stall the
    endpoint: a real request is answered while they are open. The server
    gives a request 5 s to arrive (REQUEST_MS, src/report/http.c): an
    endpoint that waited on the idle clients would answer only after it had
    closed them, 5 s on. So the answer must come while the idle clients are
    still connected, or, if a busy machine made it slower than that, within
    the 5 s all the same."""
    tmp = h.tempdir()
    svc = Service(tmp, seconds=1, phase_ms=100)
    host, port = svc.addr.split(":")
    socks = []
    try:
        for _ in range(30):  # idle: connect and say nothing
            socks.append(socket.create_connection((host, int(port)), timeout=5))
        for i in range(20):  # garbage, no end of head
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(os.urandom(200 + i).replace(b"\n", b"x"))
            socks.append(s)
        big = socket.create_connection((host, int(port)), timeout=5)
        try:
            big.sendall(b"GET /debug/pprof/heap HTTP/1.1\r\nX-Junk: " + b"a" * 100000)
        except OSError:
            pass  # the server may close it early: that is the point
        socks.append(big)
        bad = socket.create_connection((host, int(port)), timeout=5)
        bad.sendall(b"\x00\x01garbage\r\n\r\n")
        reply = bad.recv(100)
        socks.append(bad)
        t0 = time.monotonic()
        st, _, body = get(svc.base + "heap", timeout=60)
        took = time.monotonic() - t0
        idle_open = all(untouched(s) for s in socks[:30])
    finally:
        for s in socks:
            s.close()
    code, out, _ = svc.finish()
    h.check(reply.startswith(b"HTTP/1.1 400"), f"garbage request got {reply!r}")
    h.check(st == 200 and body[:2] == b"\x1f\x8b", f"heap under load: {st}")
    h.check(idle_open or took < 5,
            f"the endpoint took {took:.1f} s to answer, and closed the idle clients first")
    h.check(code == 0, f"service exit status {code}")


def check_signal_snapshot():
    tmp = h.tempdir()
    exe = h.env_path("HEAPPROF_SERVICE")
    plain = h.run([exe, "1", "100"], env=env_for(HOLD))
    profile = os.path.join(tmp, "svc.pb.gz")
    env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile, "HEAPPROF_SIGNAL": "USR2"})
    held = Held([exe, "1", "100"], env)
    held.wait_holding()  # early_setup has run
    held.proc.send_signal(signal.SIGUSR2)
    snap = os.path.join(tmp, "svc.0001.pb.gz")
    h.wait_for(f"the snapshot {snap}", lambda: os.path.exists(snap))
    _, out, err = held.finish()
    proc = held.proc
    h.check(os.path.exists(snap), f"no snapshot {snap}; files: {os.listdir(tmp)}\n{err}")
    h.decode_ok(snap)
    table = flat_names(h.functions(snap, "cum"))
    h.check(table.get("early_setup", (0, 0, 0, 0))[3] > 0, f"snapshot lacks early_setup: {table}")
    h.check(proc.returncode == plain.returncode == 0 and out == without_holding(plain.stdout),
            f"output or status changed: {proc.returncode} {out!r} vs {plain.stdout!r}")
    h.check(os.path.exists(profile), "no exit profile")


def check_interval_diff():
    tmp = h.tempdir()
    profile = os.path.join(tmp, "svc.pb.gz")
    env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile, "HEAPPROF_INTERVAL": "1"})
    # The service works (and grows) until it has written two snapshots.
    held = Held([h.env_path("HEAPPROF_SERVICE"), "0", "100"], env)

    def snapshots():
        return sorted(f for f in os.listdir(tmp) if re.match(r"svc\.\d{4}\.pb\.gz$", f))
    h.wait_for("two interval snapshots", lambda: len(snapshots()) >= 2)
    code, out, err = held.finish()
    h.check(code == 0, f"status {code}: {err[-2000:]}")
    snaps = snapshots()
    h.check(len(snaps) >= 2, f"interval snapshots: {snaps}")
    a, b = os.path.join(tmp, snaps[0]), os.path.join(tmp, snaps[-1])
    for s in (a, b):
        h.decode_ok(s)
    diff = h.pprof(["-top", "-sample_index=inuse_space", "-diff_base=" + a, b], tmp)
    h.check(diff.returncode == 0, f"-diff_base failed:\n{diff.stderr[-2000:]}")
    grew = [ln for ln in diff.stdout.splitlines()
            if ("late_growth" in ln or "cache_insert" in ln) and not ln.strip().startswith("-")]
    h.check(grew, f"the diff does not show growth in late_growth/cache_insert:\n{diff.stdout}")


def check_peak():
    tmp = h.tempdir()
    profile = os.path.join(tmp, "peak.pb.gz")
    env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile, "HEAPPROF_PEAK": "1",
                   "HEAPPROF_RATE": "1"})
    proc = h.run([h.env_path("HEAPPROF_PEAK_EXE")], env=env)
    h.check(proc.returncode == 0, h.describe(proc))
    peak = os.path.join(tmp, "peak.peak.pb.gz")
    h.check(os.path.exists(peak), f"no peak profile; files {os.listdir(tmp)}")
    at_peak = flat_names(h.functions(peak, "cum"))
    at_exit = flat_names(h.functions(profile, "cum"))
    mib = 1 << 20
    got = at_peak.get("build_peak", (0, 0, 0, 0))[3]
    h.check(8 * mib * 16 / 17 <= got <= 8 * mib,
            f"peak profile: build_peak in use {got}, want 8 MiB (>= 16/17 of it)")
    h.check(at_exit.get("build_peak", (0, 0, 0, 0))[3] == 0, "build_peak still in use at exit")
    h.check(at_exit.get("steady", (0, 0, 0, 0))[1] == mib, f"steady at exit: {at_exit}")


def wrapper():
    return h.env_path("HEAPPROF_WRAPPER")


def check_wrapper():
    tmp = h.tempdir()
    leaky = h.env_path("HEAPPROF_LEAKY")
    plain = h.run([leaky, "exit", "3"], env=env_for({}))
    out = os.path.join(tmp, "w.pb.gz")
    wrapped = h.run([wrapper(), "-o", out, "-r", "1", "--", leaky, "exit", "3"],
                    env=env_for({}))
    h.check(wrapped.returncode == plain.returncode == 3,
            f"exit status {wrapped.returncode}, want {plain.returncode}")
    h.check(wrapped.stdout == plain.stdout, "stdout changed under the wrapper")
    h.decode_ok(out)
    table = flat_names(h.functions(out, "cum"))
    h.check(table.get("leak_buffers", (0, 0))[1] == 10000, f"profile names: {table}")
    h.check(f"wrote {out}" in wrapped.stderr, "the wrapper run does not say where it wrote")
    helpout = h.run([wrapper(), "--help"], env=env_for({}))
    h.check(helpout.returncode == 0 and "usage: heapprof" in helpout.stdout, "--help")
    bad = h.run([wrapper(), "--bogus", leaky], env=env_for({}))
    h.check(bad.returncode == 2 and "unknown option" in bad.stderr, "unknown option")
    # With --peak, the last line names both files.
    out2 = os.path.join(tmp, "p.pb.gz")
    peaked = h.run([wrapper(), "-o", out2, "-r", "1", "--peak", "--", leaky], env=env_for({}))
    peak_file = os.path.join(tmp, "p.peak.pb.gz")
    h.check(os.path.exists(peak_file) and f"wrote {out2} and {peak_file}" in peaked.stderr,
            f"--peak: the wrote line does not name both files:\n{peaked.stderr[-500:]}")
    # What env(1) does with a program it cannot run: one line, 127 or 126.
    missing = h.run([wrapper(), os.path.join(tmp, "missing")], env=env_for({}))
    h.check(missing.returncode == 127 and missing.stderr.count("\n") == 1
            and missing.stderr.startswith("heapprof: "),
            f"a missing program: status {missing.returncode}, stderr {missing.stderr!r}")
    noexec = os.path.join(tmp, "noexec")
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\n")
    noexec_run = h.run([wrapper(), noexec], env=env_for({}))
    h.check(noexec_run.returncode == 126 and noexec_run.stderr.startswith("heapprof: "),
            f"a program not executable: status {noexec_run.returncode}, "
            f"stderr {noexec_run.stderr!r}")
    notfound = h.run([wrapper(), "heapprof-no-such-command"], env=env_for({}))
    h.check(notfound.returncode == 127, f"a command not on PATH: {notfound.returncode}")
    # A bad value is named with the wrapper's own flag.
    badrate = h.run([wrapper(), "-r", "0", leaky], env=env_for({}))
    h.check(badrate.returncode == 2 and badrate.stderr.startswith("heapprof: -r 0:"),
            f"-r 0: status {badrate.returncode}, stderr {badrate.stderr!r}")
    # Default name: heapprof.PROGRAM.PID.pb.gz in the working directory.
    h.run([wrapper(), leaky], env=env_for({}), cwd=tmp)
    named = [f for f in os.listdir(tmp) if re.match(r"heapprof\.leaky\.\d+\.pb\.gz$", f)]
    h.check(len(named) == 1, f"default profile name: {os.listdir(tmp)}")


def check_leak_gate():
    tmp = h.tempdir()
    leaky = h.env_path("HEAPPROF_LEAKY")
    out = os.path.join(tmp, "g.pb.gz")
    gated = h.run([wrapper(), "-o", out, "-r", "1", "--leaks-exit-code", "23", leaky],
                  env=env_for({}))
    h.check(gated.returncode == 23, f"leaks found but exit status {gated.returncode}")
    h.check("leak #1" in gated.stderr, "no leak summary")
    supp = os.path.join(tmp, "supp.txt")
    with open(supp, "w") as f:
        f.write("# leaky's known leaks\nleak:leak_buffers\nleak:leak_names\n"
                "leak:leak_table\nleak:grow_log\n")
    clean = h.run([wrapper(), "-o", out, "-r", "1", "--leaks-exit-code", "23",
                   "--suppressions", supp, leaky], env=env_for({}))
    h.check(clean.returncode == 0, f"all leaks suppressed, yet exit status {clean.returncode}:"
                                   f"\n{clean.stderr[-2000:]}")
    h.check("no leaks" in clean.stderr, f"summary after suppressions:\n{clean.stderr[-2000:]}")
    # A partial suppression leaves the others reported.
    with open(supp, "w") as f:
        f.write("leak:leak_buffers\n")
    part = h.run([wrapper(), "-o", out, "-r", "1", "--suppressions", supp, leaky],
                 env=env_for({}))
    summary = "\n".join(ln for ln in part.stderr.splitlines()
                        if not ln.startswith("heapprof: wrote "))
    funcs = {fr["func"] for st in h.parse_leaks(summary)["stacks"] for fr in st["frames"]}
    h.check("leak_buffers" not in funcs and "leak_table" in funcs,
            f"partial suppression:\n{part.stderr[-2000:]}")


def check_browser():
    """`go tool pprof -http` shows a heapprof profile's flame graph, with the
    example's function names, in headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        h.skip("chromium is not installed (Debian package chromium)")
    h.go_or_skip()
    tmp = h.tempdir()
    profile = os.path.join(tmp, "leaky.pb.gz")
    proc = h.run([h.env_path("HEAPPROF_LEAKY")],
                 env=env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile,
                              "HEAPPROF_RATE": "1"}))
    h.check(proc.returncode == 0, h.describe(proc))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    go = shutil.which("go")
    env = env_for({})
    home = os.path.join(tmp, "gohome")
    os.makedirs(home, exist_ok=True)
    env.update({"HOME": home, "GOCACHE": os.path.join(home, "cache"), "PPROF_TMPDIR": home,
                "PPROF_BINARY_PATH": home, "BROWSER": "true"})
    server = subprocess.Popen([go, "tool", "pprof", "-no_browser",
                               f"-http=127.0.0.1:{port}", profile], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/ui/flamegraph?si=inuse_space"

        def up():
            h.check(server.poll() is None, f"go tool pprof -http exited: {server.returncode}")
            try:
                return get(url, timeout=10)[0] == 200
            except OSError:
                return False
        h.wait_for("go tool pprof -http to serve", up)
        profile_dir = os.path.join(tmp, "chrome")
        shot = os.path.join(tmp, "flame.png")
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile_dir}", "--virtual-time-budget=5000",
                 "--window-size=1400,900"]
        dom = h.run([chromium] + flags + ["--dump-dom", url], env=env, timeout=120)
        h.run([chromium] + flags + [f"--screenshot={shot}", url], env=env, timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=10)
    h.check(dom.returncode == 0, f"chromium failed: {dom.stderr[-1500:]}")
    page = dom.stdout
    # The flame graph draws one box per frame; d3-flame-graph gives each box
    # a <title> (and a label when wide enough) with the function's name.
    for name in ("leak_buffers", "grow_log", "main"):
        h.check(re.search(r"<(title|text|div)[^>]*>[^<]*" + name, page) is not None,
                f"the rendered flame graph does not show {name}")
    h.check(os.path.exists(shot) and os.path.getsize(shot) > 1000, "no screenshot")
    print(f"screenshot: {shot}")


def check_api():
    """The public API, linked, with profiling on (and the peak tracked) and
    off."""
    tmp = h.tempdir()
    exe = h.env_path("HEAPPROF_API_EXE")
    on = h.run([exe], env=env_for({"HEAPPROF": "api.pb.gz", "HEAPPROF_RATE": "1",
                                   "HEAPPROF_PEAK": "1", "HEAPPROF_LEAKS": "off"}), cwd=tmp)
    h.check(on.returncode == 0, h.describe(on))
    lines = on.stdout.splitlines()
    codes = dict(ln.split(" ", 1) for ln in lines if not ln.startswith("ENOTSUP"))
    errs = dict(zip(*[iter(lines[-1].split())] * 2))
    h.check(codes["enabled"] == "1" and codes["rate"] == "1", f"enabled/rate: {lines}")
    h.check(codes["dump"] == "0", f"heapprof_dump: {codes['dump']}")
    h.check(codes["dump-empty"] == errs["EINVAL"], f"heapprof_dump(\"\"): {codes['dump-empty']}")
    snaps = [ln.split()[1] for ln in lines if ln.startswith("snapshot ")]
    h.check(snaps == ["1", "2"], f"heapprof_snapshot returned {snaps}")
    h.check(codes["peak"] == "0", f"heapprof_dump_peak: {codes['peak']}")
    for name in ("api-dump.pb.gz", "api.0001.pb.gz", "api.0002.pb.gz", "api-peak.pb.gz",
                 "api.pb.gz"):
        path = os.path.join(tmp, name)
        h.check(os.path.exists(path), f"{name} missing: {os.listdir(tmp)}")
        h.decode_ok(path)
    table = flat_names(h.functions(os.path.join(tmp, "api-dump.pb.gz"), "cum"))
    h.check(table.get("api_site", [0, 0, 0, 0])[3] == 16 * 4096, f"api_site in the dump: {table}")
    off = h.run([exe], env=env_for({}), cwd=tmp)
    lines = off.stdout.splitlines()
    codes = dict(ln.split(" ", 1) for ln in lines if not ln.startswith("ENOTSUP"))
    h.check(off.returncode == 0 and codes["enabled"] == "0" and codes["rate"] == "0",
            f"profiling off: {lines}")
    for key in ("dump", "peak"):
        h.check(codes[key] == errs["ENOTSUP"], f"{key} with profiling off: {codes[key]}")
    h.check(all(ln.split()[1] == errs["ENOTSUP"] for ln in lines if ln.startswith("snapshot")),
            f"snapshot with profiling off: {lines}")


# ---- what a new user trips over -------------------------------------------

def index_text(svc):
    st, _, body = get(svc.base)
    h.check(st == 200, f"the index answered {st}")
    return body.decode()


wait_for = h.wait_for


def check_window_disconnect():
    """A client that goes away during a ?seconds=N window ends it at once,
    as Go's handlers end on the request's context (curl --max-time 2 on a
    40 s profile): a CPU profile's window releases the profiler, so the next
    profile request is served, not answered 500 for the rest of the 40 s.
    Also for heap and allocs deltas, and for a client that resets the
    connection. Each step waits for its condition on the index page (which
    lists the windows in progress), never for a time."""
    tmp = h.tempdir()
    svc = Service(tmp, seconds=0, phase_ms=200)  # works until finish()
    host, port = svc.addr.split(":")
    for path, listed, reset in (("profile?seconds=40", "a CPU profile (profile) over 40 s",
                                 False),
                                ("heap?seconds=40", "a heap delta over 40 s", False),
                                ("allocs?seconds=40", "an allocs delta over 40 s", True),
                                ("profile?seconds=40", "a CPU profile (profile) over 40 s",
                                 True)):
        c = socket.create_connection((host, int(port)), timeout=10)
        c.sendall(f"GET /debug/pprof/{path} HTTP/1.1\r\nHost: {svc.addr}\r\n\r\n"
                  .encode())
        wait_for(f"{path} to be listed in progress", lambda: listed in index_text(svc))
        if path.startswith("profile"):
            st, _, body = get(svc.base + "profile?seconds=1")
            h.check(st == 500 and b"already in use" in body,
                    f"a second profile during the window: {st} {body!r}")
        t0 = time.monotonic()
        if reset:  # RST, not FIN
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        wait_for(f"{path} to end when its client left",
                 lambda: "In progress" not in index_text(svc))
        took = time.monotonic() - t0
        # The window was 40 s; its end must owe nothing to that.
        h.check(took < 20, f"{path}: the window ended {took:.1f} s after its client left")
        if path.startswith("profile"):
            st, _, body = get(svc.base + "profile?seconds=1")
            h.check(st == 200, f"a profile after the client left: {st} {body[:200]!r}")
            p = os.path.join(tmp, "after.pb.gz")
            with open(p, "wb") as f:
                f.write(body)
            h.decode_ok(p)
    code, out, err = svc.finish()
    h.check(code == 0 and out.startswith("service: done"), f"service: {code} {out!r} {err!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def announced(stderr):
    """{file: [its wrote lines]} and every heapprof: line that is neither a
    wrote line nor the serving line."""
    files, other = {}, []
    for line in stderr.splitlines():
        m = re.match(r"heapprof: wrote (\S+) \(see it with: go tool pprof -http=: (\S+)\)$",
                     line)
        if m and m.group(1) == m.group(2):
            files.setdefault(m.group(1), []).append(line)
        elif line.startswith("heapprof: ") and "serving http://" not in line:
            other.append(line)
    return files, other


def check_http_children():
    """Only the process started with HEAPPROF_HTTP serves it. The programs
    it runs inherit the variable but neither serve nor say anything about it
    (`heapprof --http :PORT bash -c 'ls; /bin/true; sleep'` printed "cannot
    serve on :PORT: Address already in use" into each program's stderr),
    nor do exec'd grandchildren (rb_fork exec) or forked children (rb_fork
    fork). Every process's exit profile is announced by one line of the same
    form, forked or exec'd, even by a program that closes stderr before it
    exits (ls, sleep). A program whose parent merely has the variable, not
    heapprof, serves."""
    tmp = h.tempdir()
    rb = os.path.join(h.env_path("RB_BIN"), "rb_fork")
    runs = {
        "bash": ["bash", "-c", "ls / >/dev/null; /bin/true; sleep 0.2; true"],
        "exec": [rb, "exec"],
        "fork": [rb, "fork", "2"],
    }
    for addr in (f"127.0.0.1:{free_port()}", "127.0.0.1:0"):
        for what, argv in runs.items():
            d = os.path.join(tmp, f"{what}-{addr.split(':')[1]}")
            os.mkdir(d)
            out = os.path.join(d, "p.pb.gz")
            r = h.run([wrapper(), "--http", addr, "--leaks", "off", "-o", out, "--"] + argv,
                      env=env_for({}), timeout=120)
            h.check(r.returncode == 0, f"{what} on {addr}: {h.describe(r)}")
            serving = [ln for ln in r.stderr.splitlines() if "serving http://" in ln]
            h.check(len(serving) == 1, f"{what} on {addr}: want one process serving: "
                    f"{r.stderr!r}")
            files, other = announced(r.stderr)
            h.check(not other, f"{what} on {addr}: other heapprof: lines: {other}")
            written = sorted(os.path.join(d, f) for f in os.listdir(d))
            h.check(len(written) >= 3 and all(re.fullmatch(r"p(\.\d+)?\.pb\.gz",
                                                           os.path.basename(f))
                                              for f in written),
                    f"{what} on {addr}: files {written}")
            h.check(sorted(files) == written and all(len(v) == 1 for v in files.values()),
                    f"{what} on {addr}: files {written}, announced {files}")
    # A shell without heapprof but with the variable: its child serves.
    addr = f"127.0.0.1:{free_port()}"
    r = h.run(["sh", "-c", f"LD_PRELOAD={h.lib_path()} /bin/true; true"],
              env=env_for({"HEAPPROF_HTTP": addr}))
    h.check(r.returncode == 0 and r.stderr == f"heapprof: serving http://{addr}/debug/pprof/\n",
            f"a program under an unprofiled shell: {h.describe(r)}")


def check_timeline_nothing():
    """A program that allocates less than the sampling rate: the timeline
    page says that nothing was sampled and how to lower HEAPPROF_RATE, on the
    endpoint and in the exit file, rather than an empty chart alone."""
    tmp = h.tempdir()
    hint = re.compile(r"Nothing was sampled.*HEAPPROF_RATE=1\b", re.S)
    # cat: a program that allocates next to nothing and ends with its stdin.
    svc = Service(tmp, argv=["cat"], extra={"HEAPPROF_RATE": str(1 << 30)})
    # At least one tick: the page says how many points it has.
    wait_for("a timeline point", lambda: json.loads(
        get(svc.base + "timeline?format=json")[2])["points"] >= 1)
    st, _, page = get(svc.base + "timeline")
    svc.finish()
    page = page.decode()
    h.check(st == 200 and hint.search(page) and "nothing sampled" in page,
            f"the endpoint's timeline of an idle program:\n{page[:2000]}")
    profile = os.path.join(tmp, "t.pb.gz")
    r = h.run(["/bin/true"], env=env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile,
                                           "HEAPPROF_LEAKS": "off", "HEAPPROF_TIMELINE": "1"}))
    h.check(r.returncode == 0, h.describe(r))
    with open(os.path.join(tmp, "t.timeline.html")) as f:
        page = f.read()
    h.check(hint.search(page), f"the exit timeline of /bin/true:\n{page[:2000]}")
    # A program that is sampled gets no such line.
    _, env = grower_env(tmp, {"HEAPPROF_TIMELINE": "1"})
    r = h.run([h.env_path("HEAPPROF_GROWER"), "0.5"], env=env)
    with open(os.path.join(tmp, "grow.timeline.html")) as f:
        page = f.read()
    h.check(r.returncode == 0 and "Nothing was sampled" not in page and "grow_site" in page,
            f"the grower's timeline: {h.describe(r)}")


def check_timeline_twins():
    """Series whose stacks read alike by function names are told apart in
    the stack column, as the leak summary does: the call's offset where the
    addresses differ (two malloc calls in grow_twins), or the first
    differing frame past the eight shown (deep_a and deep_b under nine
    frames of chain)."""
    tmp = h.tempdir()
    _, env = grower_env(tmp, {"HEAPPROF_TIMELINE": "1"})
    r = h.run([h.env_path("HEAPPROF_GROWER"), "1.5", "twins"], env=env)
    h.check(r.returncode == 0, h.describe(r))
    with open(os.path.join(tmp, "grow.timeline.json")) as f:
        doc = json.load(f)
    frames = [s["frames"] for s in doc["series"]]
    h.check(len(set(frames)) == len(frames), f"two series read alike: {frames}")
    twins = [f for f in frames if f.startswith("grow_twins")]
    h.check(len(twins) == 2 and all(re.match(r"grow_twins\+0x[0-9a-f]+ < main", f)
                                    for f in twins), f"grow_twins' series: {twins}")
    deep = sorted(f for f in frames if f.startswith("chain"))
    h.check(len(deep) == 2 and re.search(r" < \.\.\. < deep_a\+0x[0-9a-f]+$", deep[0])
            and re.search(r" < \.\.\. < deep_b\+0x[0-9a-f]+$", deep[1]),
            f"the deep series: {deep}")
    with open(os.path.join(tmp, "grow.timeline.html")) as f:
        page = f.read()
    for f in twins + deep:
        h.check(f.replace("<", "&lt;") in page, f"the page's legend lacks {f}")


# ---- the heap over time --------------------------------------------------

def timeline_series(doc, function):
    """The values of the series whose function is `function` (summed when
    several stacks end there)."""
    found = [s["values"] for s in doc["series"] if s["function"] == function]
    h.check(found, f"no series for {function}: "
                   f"{[s['name'] for s in doc['series']]}")
    return [sum(v) for v in zip(*found)]


def check_timeline_doc(doc, seconds):
    """What every timeline of grower SECONDS must show: grow_site rising
    through the run, flat_site flat once allocated, and each point's series
    and other adding up to its total."""
    n = doc["points"]
    times = doc["times_s"]
    h.check(n >= 5 and len(times) == n and len(doc["total"]) == n,
            f"{n} points over a {seconds} s run: {doc}")
    h.check(times == sorted(times), f"times out of order: {times}")
    h.check(times[-1] >= seconds * 0.8, f"the series ends at {times[-1]} s of a {seconds} s run")
    grow = timeline_series(doc, "grow_site")
    flat = timeline_series(doc, "flat_site")
    # grow_site adds 64 KiB every 10 ms: about 6.4 MB/s (less on a busy
    # machine). Its values at the quarters of the run must rise.
    q = [grow[min(n - 1, int(n * f))] for f in (0.25, 0.5, 0.75)] + [grow[-1]]
    h.check(q[0] < q[1] < q[2] < q[3], f"grow_site does not grow: quarters {q}")
    h.check(q[3] > 2 * q[0] and q[3] >= 4 << 20,
            f"grow_site ends at {q[3]} bytes, from {q[0]} at a quarter of the run")
    late = [v for v in flat[n // 4:]]
    h.check(min(late) > 0 and max(late) <= min(late) * 1.02,
            f"flat_site is not flat after it was allocated: {min(late)}..{max(late)}")
    # Exact 4 MiB, estimated at rate 65536 from 64 KiB blocks: within 40%.
    h.check(0.6 * (4 << 20) <= late[-1] <= 1.4 * (4 << 20), f"flat_site holds {late[-1]}")
    for i in range(n):
        parts = doc["other"][i] + sum(s["values"][i] for s in doc["series"])
        h.check(abs(parts - doc["total"][i]) <= len(doc["series"]) + 2,
                f"point {i}: series and other add up to {parts}, total {doc['total'][i]}")


def grown_for(doc, seconds):
    """True when a timeline of the grower (running until told) can be held
    to check_timeline_doc(doc, seconds): it spans that long, and grow_site
    holds 4 MiB (the rounds are slower on a busy machine)."""
    if doc.get("points", 0) < 5 or doc["times_s"][-1] < seconds:
        return False
    grow = [s["values"][-1] for s in doc["series"] if s["function"] == "grow_site"]
    return sum(grow) >= 4 << 20


def grower_env(tmp, extra):
    profile = os.path.join(tmp, "grow.pb.gz")
    return profile, env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile,
                             "HEAPPROF_RATE": "65536", "HEAPPROF_LEAKS": "off", **extra})


def check_timeline_exit():
    """HEAPPROF_TIMELINE=1 leaves NAME.timeline.html and .json beside the
    profile, named in the wrote line; so does the wrapper's --timeline; a
    bad spelling gets one line and no timeline."""
    tmp = h.tempdir()
    grower = h.env_path("HEAPPROF_GROWER")
    plain = h.run([grower, "2.5"], env=env_for({}))
    profile, env = grower_env(tmp, {"HEAPPROF_TIMELINE": "yes", "HEAPPROF_ANNOUNCE": "1"})
    proc = h.run([grower, "2.5"], env=env)
    h.check(proc.returncode == plain.returncode == 0 and proc.stdout == plain.stdout,
            h.describe(proc))
    html = os.path.join(tmp, "grow.timeline.html")
    js = os.path.join(tmp, "grow.timeline.json")
    h.check(f"wrote {profile}, {html} and {js}" in proc.stderr,
            f"the wrote line does not name the timeline files:\n{proc.stderr[-1000:]}")
    with open(js) as f:
        doc = json.load(f)
    check_timeline_doc(doc, 2.5)
    with open(html) as f:
        page = f.read()
    h.check("<svg" in page and 'class="area"' in page and "grow_site" in page
            and "flat_site" in page, "the HTML file lacks the chart or the names")
    h.check(not [f for f in os.listdir(tmp) if ".tmp" in f], f"stray files: {os.listdir(tmp)}")
    # The wrapper's flag.
    out = os.path.join(tmp, "w.pb.gz")
    wrapped = h.run([wrapper(), "-o", out, "--timeline", "--leaks", "off", "--", grower, "1"],
                    env=env_for({}))
    whtml, wjs = os.path.join(tmp, "w.timeline.html"), os.path.join(tmp, "w.timeline.json")
    h.check(wrapped.returncode == 0 and os.path.exists(whtml) and os.path.exists(wjs)
            and f"wrote {out}, {whtml} and {wjs}" in wrapped.stderr,
            f"heapprof --timeline: {h.describe(wrapped)}")
    # A bad spelling: one heapprof: line, no timeline, the program unchanged.
    bad_tmp = os.path.join(tmp, "bad")
    os.mkdir(bad_tmp)
    _, env = grower_env(bad_tmp, {"HEAPPROF_TIMELINE": "maybe"})
    bad = h.run([grower, "0.3"], env=env)
    h.check(bad.returncode == 0 and bad.stdout == "grower: done\n"
            and bad.stderr.count("heapprof:") == 1 and "HEAPPROF_TIMELINE" in bad.stderr,
            f"HEAPPROF_TIMELINE=maybe: {h.describe(bad)}")
    h.check(sorted(os.listdir(bad_tmp)) == ["grow.pb.gz"], f"files: {os.listdir(bad_tmp)}")


def check_timeline_endpoint():
    """/debug/pprof/timeline, linked from the index: HTML with the chart,
    and ?format=json with the grower rising while the program runs."""
    tmp = h.tempdir()
    # Grows until finish(); the timeline is read once it spans 2 s of the
    # run and grow_site holds 4 MiB (however long a busy machine takes).
    svc = Service(tmp, argv=[h.env_path("HEAPPROF_GROWER"), "0"],
                  extra={"HEAPPROF_LEAKS": "off"})

    def grown():
        st, hd, body = get(svc.base + "timeline?format=json")
        return (st, hd, body) if st == 200 and grown_for(json.loads(body), 2) else None
    st_js, hd_js, body_js = wait_for("the timeline to span 2 s and 4 MiB of growth", grown)
    st_html, hd_html, body_html = get(svc.base + "timeline")
    st_idx, _, index = get(svc.base)
    st_bad, _, _ = get(svc.base + "timeline?format=xml")
    code, out, err = svc.finish()
    h.check(st_js == 200 and hd_js.get("Content-Type") == "application/json",
            f"timeline?format=json: {st_js} {hd_js}")
    doc = json.loads(body_js)
    check_timeline_doc(doc, 2)
    page = body_html.decode()
    h.check(st_html == 200 and "text/html" in hd_html.get("Content-Type", "")
            and "<svg" in page and "grow_site" in page, f"timeline page: {st_html}")
    h.check(st_idx == 200 and "href='timeline'" in index.decode(),
            "the index does not link the timeline")
    h.check(st_bad == 400, f"format=xml answered {st_bad}")
    h.check(code == 0 and out == "grower: done\n", f"grower disturbed: {code} {out!r}")
    h.check(not os.path.exists(os.path.join(tmp, "service.timeline.html")),
            "a timeline file was written without HEAPPROF_TIMELINE")


def check_timeline_bounded():
    """Ticks every millisecond for at least 3 s and until there are more
    ticks than the buffer holds (the endpoint says how many: a busy machine
    wakes the ticker less often), yet the exit timeline's points stay under
    the cap and still span the run."""
    tmp = h.tempdir()
    t0 = time.monotonic()
    svc = Service(tmp, argv=[h.env_path("HEAPPROF_GROWER"), "0"],
                  extra={"HEAPPROF": os.path.join(tmp, "grow.pb.gz"), "HEAPPROF_LEAKS": "off",
                         "HEAPPROF_TIMELINE": "1", "HEAPPROF_TIMELINE_MS": "1"})

    def full():
        doc = json.loads(get(svc.base + "timeline?format=json")[2])
        return doc["ticks"] > doc["max_points"] and grown_for(doc, 3)
    wait_for("more ticks than the buffer holds, over 3 s and 4 MiB of growth", full)
    code, out, err = svc.finish()
    took = time.monotonic() - t0
    h.check(code == 0 and out == "grower: done\n", f"status {code}, {out!r}, {err[-1000:]}")
    with open(os.path.join(tmp, "grow.timeline.json")) as f:
        doc = json.load(f)
    cap = doc["max_points"]
    h.check(doc["ticks"] > cap, f"only {doc['ticks']} ticks: the buffer never filled")
    h.check(doc["points"] <= cap, f"{doc['points']} points, cap {cap}")
    h.check(doc["merges"] >= 1 and doc["ticks_per_point"] == 2 ** doc["merges"],
            f"merges {doc['merges']}, ticks per point {doc['ticks_per_point']}")
    # Every tick is in some point: points times ticks per point covers them.
    h.check(doc["points"] * doc["ticks_per_point"] >= doc["ticks"],
            f"{doc['points']} points of {doc['ticks_per_point']} cover fewer than "
            f"{doc['ticks']} ticks")
    times = doc["times_s"]
    h.check(times[0] < 0.5 and times[-1] >= 2.7 and times[-1] <= took + 0.5,
            f"points span {times[0]}..{times[-1]} s of a {took:.2f} s run")
    check_timeline_doc(doc, 3)


def check_timeline_cxx():
    """C++: every allocation is made inside std::vector's and std::string's
    templates; the series are named by the program's functions that called
    them."""
    tmp = h.tempdir()
    profile = os.path.join(tmp, "cxx.pb.gz")
    env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile, "HEAPPROF_RATE": "65536",
                   "HEAPPROF_LEAKS": "off", "HEAPPROF_TIMELINE": "1"})
    proc = h.run([h.env_path("HEAPPROF_GROWER_CXX"), "1.5"], env=env)
    h.check(proc.returncode == 0 and proc.stdout == "grower_cxx: done\n", h.describe(proc))
    with open(os.path.join(tmp, "cxx.timeline.json")) as f:
        doc = json.load(f)
    functions = {s["function"] for s in doc["series"]}
    for name in ("grow_vector", "grow_names"):
        h.check(name in functions, f"no series named {name}: {sorted(functions)}")
    h.check(not [f for f in functions if "std::" in f],
            f"a series is named by a standard library template: {sorted(functions)}")
    names = [s["name"] for s in doc["series"]]
    h.check(len(set(names)) == len(names), f"two series with one label: {names}")


def chromium_or_skip(tmp):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        h.skip("chromium is not installed (Debian package chromium)")
    try:
        ver = subprocess.run([chromium, "--headless", "--no-sandbox", "--version"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        h.skip(f"chromium cannot run here: {e}")
    if ver.returncode != 0:
        h.skip(f"chromium cannot run here: {ver.stderr.strip()[-300:]}")
    return chromium


def render_dom(chromium, url, tmp, shot):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={os.path.join(tmp, 'chrome')}", "--virtual-time-budget=3000",
             "--window-size=1100,900"]
    dom = h.run([chromium] + flags + ["--dump-dom", url], env=env_for({}), timeout=120)
    if dom.returncode != 0 and not dom.stdout:
        h.skip(f"chromium could not render a page here: {dom.stderr.strip()[-300:]}")
    h.run([chromium] + flags + [f"--screenshot={shot}", url], env=env_for({}), timeout=120)
    return dom.stdout


def check_rendered_chart(dom, what):
    """The chart as Chromium built it: an svg with filled area paths, the
    functions' names in the legend and the paths' titles."""
    m = re.search(r"<svg[^>]*id=\"timeline\".*?</svg>", dom, re.S)
    h.check(m is not None, f"{what}: no timeline svg in the rendered DOM:\n{dom[:1500]}")
    svg = m.group(0)
    areas = re.findall(r"<path class=\"area\"[^>]* d=\"M[^\"]+Z\"", svg)
    h.check(len(areas) >= 3, f"{what}: {len(areas)} area paths in the chart")
    for name in ("grow_site", "flat_site"):
        h.check(re.search(r"<title>" + name, svg) is not None,
                f"{what}: no area titled {name}")
        h.check(re.search(r"<td class=\"n\">" + name, dom) is not None,
                f"{what}: {name} missing from the legend")


def check_timeline_browser():
    """Headless Chromium loads the endpoint's page and the exit file and
    finds the chart with the grower's function names."""
    tmp = h.tempdir()
    chromium = chromium_or_skip(tmp)
    svc = Service(tmp, argv=[h.env_path("HEAPPROF_GROWER"), "1.5"],
                  extra={"HEAPPROF_LEAKS": "off", "HEAPPROF_TIMELINE": "1"})
    svc.wait_holding()  # grown; it stays up until finish(), however slow Chromium is
    shot = os.path.join(tmp, "live.png")
    dom = render_dom(chromium, svc.base + "timeline", tmp, shot)
    code, out, err = svc.finish()
    h.check(code == 0, f"grower exit status {code}: {err[-1000:]}")
    check_rendered_chart(dom, "/debug/pprof/timeline")
    h.check(os.path.getsize(shot) > 1000, "no screenshot of the endpoint's page")
    page = os.path.join(tmp, "service.timeline.html")
    h.check(os.path.exists(page), f"no {page}: {os.listdir(tmp)}")
    shot2 = os.path.join(tmp, "exit.png")
    dom = render_dom(chromium, "file://" + page, tmp, shot2)
    check_rendered_chart(dom, page)
    print(f"screenshots: {shot} {shot2}")


class Stuck:
    """tests/live/stuck.c under the preloaded library: threads deadlocked,
    blocked and spinning in known functions, alive until its stdin closes."""

    def __init__(self, tmp):
        env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF": os.path.join(tmp, "stuck.pb.gz"),
                       "HEAPPROF_HTTP": "127.0.0.1:0"})
        self.proc = subprocess.Popen([h.env_path("HEAPPROF_STUCK")], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, universal_newlines=True)
        self.addrs = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line or line.strip() == "ready":
                break
            f = line.split()
            if len(f) == 3 and f[0] == "addr":
                self.addrs[f[1]] = int(f[2], 16)
        line = ""
        ready, _, _ = select.select([self.proc.stderr], [], [], 10)
        if ready:
            line = self.proc.stderr.readline()
        m = re.search(r"serving http://(127\.0\.0\.1:\d+)/debug/pprof/", line)
        if not m:
            self.proc.kill()
            raise h.Failure(f"stuck did not announce its endpoint: {line!r}")
        self.base = f"http://{m.group(1)}/debug/pprof/"

    def finish(self):
        out, err = self.proc.communicate(input="", timeout=60)
        return self.proc.returncode, out, err


def goroutine_blocks(text):
    """{thread name: (header, [function names, leaf first])} from debug=2."""
    blocks = {}
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        m = re.match(r'goroutine (\d+) \[(.*), "([^"]*)"\]:$', lines[0])
        h.check(m, f"bad goroutine header: {lines[0]!r}")
        funcs = [ln[:-5] for ln in lines[1:] if ln.endswith("(...)")]
        blocks[m.group(3)] = (lines[0], funcs, block)
    return blocks


def wait_for_stacks(stuck):
    """debug=2 once both lockers are inside pthread_mutex_lock and the other
    three threads have named themselves and reached their functions (the
    deadline is a bound, not a wait: they get there as soon as they are
    scheduled; on a loaded machine the spinner, created last, could still
    be unnamed when the lockers were already stuck)."""
    deadline = time.monotonic() + 60
    where = {"lock-ab": "pthread_mutex_lock", "lock-ba": "pthread_mutex_lock",
             "poller": "wait_in_poll", "sleeper": "wait_in_sleep", "spinner": "spin_here"}
    while True:
        st, _, body = get(stuck.base + "goroutine?debug=2")
        text = body.decode()
        h.check(st == 200, f"goroutine?debug=2: {st} {text[:300]!r}")
        blocks = goroutine_blocks(text)
        if all(n in blocks and f in blocks[n][1] for n, f in where.items()) \
                or time.monotonic() > deadline:
            return text, blocks
        time.sleep(0.05)


def check_goroutine():
    tmp = h.tempdir()
    stuck = Stuck(tmp)
    try:
        text, blocks = wait_for_stacks(stuck)
        st1, _, g1 = get(stuck.base + "goroutine?debug=1")
        st0, _, g0 = get(stuck.base + "goroutine")
        st_alias, _, alias = get(stuck.base + "threads?debug=2")
    finally:
        code, out, err = stuck.finish()
    h.check(code == 0 and "eintr 0" in out,
            f"the program saw EINTR or failed under heapprof: {code} {out!r} {err[-500:]!r}")
    for name, caller in (("lock-ab", "take_ab"), ("lock-ba", "take_ba")):
        h.check(name in blocks, f"no block for thread {name}:\n{text}")
        head, funcs, block = blocks[name]
        h.check("sleeping" in head and "futex" in head, f"{name}'s state: {head!r}")
        h.check("pthread_mutex_lock" in funcs and caller in funcs
                and funcs.index(caller) == funcs.index("pthread_mutex_lock") + 1
                and "locker" in funcs,
                f"{name} is not shown inside pthread_mutex_lock called from {caller}:\n{block}")
        h.check("stuck.c:" in block, f"{name}'s stack has no file:line:\n{block}")
    head, funcs, block = blocks.get("poller", ("", [], ""))
    h.check("poll" in head and "wait_in_poll" in funcs, f"the poller:\n{block}\n{text}")
    head, funcs, block = blocks.get("sleeper", ("", [], ""))
    h.check("nanosleep" in head and "wait_in_sleep" in funcs, f"the sleeper:\n{block}")
    head, funcs, block = blocks.get("spinner", ("", [], ""))
    h.check(funcs[:1] == ["spin_here"] and "other" in funcs, f"the spinner:\n{block}")
    h.check(st_alias == 200 and b'"lock-ab"' in alias, "threads?debug=2 is not the same page")
    # debug=1: Go's grouped text, each group labelled with its thread.
    g1 = g1.decode()
    h.check(st1 == 200 and g1.startswith("goroutine profile: total "), f"debug=1: {g1[:200]!r}")
    h.check(re.search(r"^1 @( 0x[0-9a-f]+)+$", g1, re.M)
            and re.search(r"^#\t0x[0-9a-f]+\ttake_ab\+0x[0-9a-f]+\t\S*stuck\.c:\d+$", g1, re.M)
            and '# labels: {"thread":"lock-ba"}' in g1, f"debug=1:\n{g1}")
    # The profile, read by heapprof-decode and go tool pprof.
    path = os.path.join(tmp, "goroutine.pb.gz")
    with open(path, "wb") as f:
        f.write(g0)
    h.check(st0 == 200, f"goroutine: {st0}")
    prof = h.decode_json(path)
    h.check(prof.get("sample_types") == [["goroutine", "count"]],
            f"sample types: {prof.get('sample_types')}")
    funcs = h.functions(path)
    for fn in ("take_ab", "take_ba", "wait_in_poll", "spin_here", "pthread_mutex_lock"):
        h.check(funcs.get(fn, [0])[0] >= 1, f"{fn} not in the profile: {sorted(funcs)}")
    if shutil.which("go"):
        top = h.pprof_top(path, "goroutine", tmp)
        h.check(top.get("pthread_mutex_lock", (0, 0))[1] == 2 and "spin_here" in top,
                f"go tool pprof -top: {top}")


def check_threadcreate():
    tmp = h.tempdir()
    stuck = Stuck(tmp)
    try:
        st1, _, t1 = get(stuck.base + "threadcreate?debug=1")
        st0, _, t0 = get(stuck.base + "threadcreate")
    finally:
        stuck.finish()
    t1 = t1.decode()
    h.check(st1 == 200 and t1.startswith("threadcreate profile: total 5\n"), f"debug=1:\n{t1}")
    path = os.path.join(tmp, "threadcreate.pb.gz")
    with open(path, "wb") as f:
        f.write(t0)
    h.check(st0 == 200, f"threadcreate: {st0}")
    funcs = h.functions(path)
    h.check(funcs.get("start_lockers", [0])[0] == 2 and funcs.get("start_others", [0])[0] == 3
            and funcs.get("main", [0])[0] == 5, f"threadcreate's counts: {funcs}")
    if shutil.which("go"):
        top = h.pprof_top(path, "threadcreate", tmp)
        h.check(top.get("start_others", (0, 0))[1] == 3, f"go tool pprof -top: {top}")


def check_symbol():
    tmp = h.tempdir()
    stuck = Stuck(tmp)
    try:
        st, _, empty = get(stuck.base + "symbol")
        a = stuck.addrs
        q = "+".join(hex(a[n]) for n in ("take_ab", "spin_here")) + "+0x1"
        st_get, _, by_get = get(stuck.base + "symbol?" + q)
        req = urllib.request.Request(stuck.base + "symbol", data=q.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=20) as r:
            st_post, by_post = r.status, r.read()
    finally:
        stuck.finish()
    h.check(st == 200 and empty == b"num_symbols: 1\n", f"GET symbol: {st} {empty!r}")
    want = f"num_symbols: 1\n{hex(a['take_ab'])} take_ab\n{hex(a['spin_here'])} spin_here\n"
    h.check(st_get == 200 and by_get.decode() == want, f"GET symbol?{q}: {by_get!r}")
    h.check(st_post == 200 and by_post.decode() == want, f"POST symbol: {by_post!r}")


CHECKS = {
    "goroutine": check_goroutine,
    "threadcreate": check_threadcreate,
    "symbol": check_symbol,
    "heap-allocs": check_heap_and_allocs,
    "delta": check_delta,
    "text-index": check_text_index_cmdline,
    "methods": check_methods,
    "bad-clients": check_bad_clients,
    "signal": check_signal_snapshot,
    "interval-diff": check_interval_diff,
    "peak": check_peak,
    "wrapper": check_wrapper,
    "leak-gate": check_leak_gate,
    "browser": check_browser,
    "api": check_api,
    "timeline-exit": check_timeline_exit,
    "timeline-endpoint": check_timeline_endpoint,
    "timeline-bounded": check_timeline_bounded,
    "timeline-browser": check_timeline_browser,
    "timeline-cxx": check_timeline_cxx,
    "window-disconnect": check_window_disconnect,
    "http-children": check_http_children,
    "timeline-nothing": check_timeline_nothing,
    "timeline-twins": check_timeline_twins,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        print("usage: test_live.py " + "|".join(CHECKS))
        sys.exit(2)
    if sys.argv[1] not in ("wrapper", "leak-gate", "peak", "signal", "api", "window-disconnect",
                           "http-children") and \
            not sys.argv[1].startswith("timeline-"):
        h.go_or_skip()
    h.main(CHECKS[sys.argv[1]])
