"""Execution traces (Chrome Trace Event JSON): tests/live/tracer.c runs three
named threads in known label scopes with known CPU work and allocations.

  api        heapprof_trace_start/stop around one round: thread names exact,
             region counts exact, durations in the ratio of their work, CPU
             samples naming the burning functions, the heap in-use and
             allocation-rate counters moving.
  env        HEAPPROF_TRACE=FILE.gz without HEAPPROF: gzipped, valid.
  endpoint   /debug/pprof/trace: seconds missing, 0, negative, garbage (1 s,
             as Go's), huge (400); two clients (the second 500); a client
             that disconnects ends the trace (the next one is served);
             Accept-Encoding: gzip.
  blocked    blocking calls and a contended mutex as slices of the lengths
             the program measured, with the stack that blocked.
  lifecycle  fork and exec instants; the trace written before the exec.
  viewer     headless Chromium imports a trace into the catapult viewer of
             golang-1.19-src and shows the thread tracks and a region slice.
"""
import gzip
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402

NAMES = ("trc-light", "trc-heavy", "trc-alloc")


def tracer():
    return h.env_path("HEAPPROF_TRACER")


def env_for(extra):
    env = h.base_env()
    env.update(extra)
    return env


def wait_for(what, cond, limit=60):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            raise h.Failure(f"gave up waiting for {what} after {limit} s")
        time.sleep(0.05)


def by_thread(doc):
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    out = {}
    for e in doc["traceEvents"]:
        if e["ph"] != "M" and e.get("tid") in names:
            out.setdefault(names[e["tid"]], []).append(e)
    return names, out


def regions(events):
    """(name, duration in us) of each B/E pair, nested ones included."""
    stack, done = [], []
    for e in events:
        if e["ph"] == "B":
            stack.append(e)
        elif e["ph"] == "E" and stack:
            b = stack.pop()
            done.append((b["name"], e["ts"] - b["ts"]))
    return done


def stack_names(doc, sf):
    out, frames = [], doc["stackFrames"]
    while sf is not None and sf in frames:
        out.append(frames[sf]["name"])
        sf = frames[sf].get("parent")
    return out


def check_round(doc, what):
    names, ev = by_thread(doc)
    for n in NAMES:
        h.check(n in names.values(), f"{what}: no track named {n}: {sorted(names.values())}")
    counts = {n: {} for n in NAMES}
    durs = {n: [] for n in NAMES}
    for n in NAMES:
        for name, d in regions(ev.get(n, [])):
            counts[n][name] = counts[n].get(name, 0) + 1
            if name.startswith("work="):
                durs[n].append(d)
    want = {"trc-light": {"work=light": 6}, "trc-heavy": {"work=heavy": 3},
            "trc-alloc": {"work=alloc": 4, "step=inner": 4}}
    h.check(counts == want, f"{what}: region counts {counts}, want {want}")
    # heavy burns 4 times light's CPU per region: on a loaded machine wall
    # time stretches both, so only the order is held, with a margin.
    light = sum(durs["trc-light"]) / len(durs["trc-light"])
    heavy = sum(durs["trc-heavy"]) / len(durs["trc-heavy"])
    h.check(heavy > 1.5 * light, f"{what}: heavy regions ({heavy:.0f} us) not longer than light "
            f"ones ({light:.0f} us)")
    for n, fn in (("trc-light", "burn_light"), ("trc-heavy", "burn_heavy")):
        samples = [e for e in ev.get(n, []) if e.get("cat") == "cpu"]
        h.check(samples, f"{what}: no CPU samples on {n}")
        hits = [s for s in samples if fn in stack_names(doc, s.get("sf"))]
        h.check(len(hits) >= len(samples) // 2,
                f"{what}: {len(hits)} of {len(samples)} samples on {n} name {fn}")
    return ev


def run_api(extra, path):
    env = env_for({"LD_PRELOAD": h.lib_path(), **extra})
    p = subprocess.Popen([tracer(), path], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    p.stdin.write("go\n")
    p.stdin.flush()
    line = ""
    while not line.startswith("done"):
        line = p.stdout.readline()  # the test's timeout bounds a hang
        if not line:
            raise h.Failure(f"the tracer ended early: {p.stderr.read()[-1500:]}")
    h.check(line.strip() == "done 0", f"heapprof_trace_stop: {line!r}")
    p.stdin.close()
    p.wait(60)
    h.check(p.returncode == 0, f"tracer exit {p.returncode}: {p.stderr.read()[-1500:]}")
    return p


def check_api():
    tmp = h.tempdir()
    path = os.path.join(tmp, "t.json")
    run_api({"HEAPPROF": os.path.join(tmp, "h.pb.gz"), "HEAPPROF_RATE": "65536",
             "HEAPPROF_LEAKS": "off"}, path)
    with open(path) as f:
        doc = json.load(f)
    h.check(doc.get("displayTimeUnit") == "ns", "no displayTimeUnit ns")
    ev = check_round(doc, "api")
    counters = [e["args"]["bytes"] for e in doc["traceEvents"]
                if e["ph"] == "C" and e["name"] == "heap in-use (estimated)"]
    h.check(len(counters) > 2 and max(counters) - counters[0] >= 4 << 20,
            f"the heap counter did not grow by the 8 MiB kept: {counters[:5]}..{counters[-3:]}")
    # The allocation rate moves: up while trc-alloc allocates, back to 0.
    rate = [(e["ts"], e["args"]["bytes/s"]) for e in doc["traceEvents"]
            if e["ph"] == "C" and e["name"] == "allocation rate (estimated)"]
    h.check(len(rate) > 2 and max(v for _, v in rate) > 0 and rate[-1][1] == 0,
            f"the allocation rate does not move: {rate[:6]}..{rate[-3:]}")
    h.check(all(b[0] - a[0] >= 1000 for a, b in zip(rate, rate[1:-1])),
            f"allocation rate points closer than 1 ms: {rate[:10]}")
    allocs = [e for e in ev.get("trc-alloc", []) if e.get("cat") == "heap"]
    h.check(allocs and all("alloc_block" in stack_names(doc, e.get("sf")) for e in allocs),
            f"sampled allocations without alloc_block in their stack: {allocs[:3]}")
    h.check(doc["otherData"]["dropped_events"] == "0", f"dropped: {doc['otherData']}")


def check_env():
    """HEAPPROF_TRACE without HEAPPROF: the run's first seconds, gzipped."""
    tmp = h.tempdir()
    path = os.path.join(tmp, "run.json.gz")
    env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF_TRACE": path,
                   "HEAPPROF_TRACE_SECONDS": "0"})
    p = subprocess.Popen([tracer(), "-"], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    h.check(p.stdout.readline().startswith("truth"), "no truth line")
    time.sleep(1)  # the threads run: what the trace shows, not a wait for a condition
    p.stdin.close()
    p.wait(60)
    h.check(p.returncode == 0, f"tracer exit {p.returncode}: {p.stderr.read()[-1500:]}")
    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    names, ev = by_thread(doc)
    for n in NAMES:
        h.check(n in names.values(), f"env: no track {n}: {sorted(names.values())}")
    h.check(any(e["ph"] == "B" for e in ev.get("trc-heavy", [])), "env: no region on trc-heavy")


class Service:
    def __init__(self):
        env = env_for({"LD_PRELOAD": h.lib_path(), "HEAPPROF_HTTP": "127.0.0.1:0",
                       "HEAPPROF_RATE": "65536"})
        self.proc = subprocess.Popen([tracer(), "-"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     universal_newlines=True)
        ready, _, _ = select.select([self.proc.stderr], [], [], 20)
        line = self.proc.stderr.readline() if ready else ""
        m = re.search(r"serving http://(127\.0\.0\.1:\d+)/debug/pprof/", line)
        if not m:
            self.proc.kill()
            raise h.Failure(f"no endpoint announced: {line!r}")
        self.addr = m.group(1)
        self.base = f"http://{self.addr}/debug/pprof/"

    def finish(self):
        self.proc.stdin.close()
        self.proc.wait(60)
        return self.proc.returncode


def get(url, headers=None, timeout=60):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check_endpoint():
    svc = Service()
    try:
        for q in ("", "?seconds=0", "?seconds=-5", "?seconds=abc"):
            t0 = time.monotonic()
            st, hd, body = get(svc.base + "trace" + q)
            took = time.monotonic() - t0
            h.check(st == 200, f"trace{q}: {st} {body[:200]!r}")
            doc = json.loads(body)
            dur = int(doc["otherData"]["duration_ns"]) / 1e9
            h.check(0.9 < dur < 5, f"trace{q}: {dur:.2f} s, want Go's 1 s (took {took:.1f})")
            names, _ = by_thread(doc)
            for n in NAMES:
                h.check(n in names.values(), f"trace{q}: no track {n}")
        st, _, body = get(svc.base + "trace?seconds=100000")
        h.check(st == 400, f"seconds=100000: {st} {body!r}")
        st, hd, body = get(svc.base + "trace?seconds=1", {"Accept-Encoding": "gzip"})
        h.check(st == 200 and hd.get("Content-Encoding") == "gzip", f"gzip: {st} {hd}")
        json.loads(gzip.decompress(body))
        # Two clients: the second gets Go's 500 while the first runs.
        host, port = svc.addr.split(":")
        c = socket.create_connection((host, int(port)), timeout=10)
        c.sendall(f"GET /debug/pprof/trace?seconds=40 HTTP/1.1\r\nHost: {svc.addr}\r\n\r\n"
                  .encode())

        def second():
            st, _, body = get(svc.base + "trace?seconds=1")
            return st, body
        wait_for("the first trace to run", lambda: second()[0] == 500)
        st, body = second()
        h.check(b"already enabled" in body, f"the second client: {st} {body!r}")
        # It goes away: the trace ends at once, and the next one is served.
        c.close()
        wait_for("the trace to end when its client left", lambda: second()[0] == 200, limit=20)
    finally:
        code = svc.finish()
    h.check(code == 0, f"tracer exit {code}: {svc.proc.stderr.read()[-1500:]}")


def viewer_dir():
    for d in ("/usr/share/go-1.19/src/cmd/trace/static", "/usr/lib/go-1.19/src/cmd/trace/static"):
        if os.path.exists(os.path.join(d, "trace_viewer_full.html")):
            return d
    h.skip("the catapult trace viewer is not installed (Debian package golang-1.19-src)")


PAGE = """<!DOCTYPE html><html><head>
<script src="webcomponents.min.js"></script>
<link rel="import" href="trace_viewer_full.html">
</head><body><div id="status">loading</div><script>
var TRACE = %s;
function go() {
  var model = new tr.Model();
  var i = new tr.importer.Import(model);
  i.importTracesWithProgressDialog([TRACE]).then(function() {
    var names = [], slices = [];
    model.getAllThreads().forEach(function(t) {
      names.push(t.name);
      t.sliceGroup.slices.forEach(function(s) { slices.push(t.name + ':' + s.title); });
    });
    var out = document.createElement('pre');
    out.id = 'result';
    out.textContent = JSON.stringify({threads: names, slices: slices});
    document.body.appendChild(out);
    document.getElementById('status').textContent = 'imported';
  }, function(err) {
    document.getElementById('status').textContent = 'failed: ' + err;
  });
}
if (window.tr && tr.importer) go(); else document.addEventListener('WebComponentsReady', go);
window.addEventListener('load', function() { if (!document.getElementById('result')) go(); });
</script></body></html>
"""


DRIVER = r"""
const puppeteer = require('puppeteer-core');
(async () => {
  const b = await puppeteer.launch({executablePath: process.argv[2], headless: 'new',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--disable-quic']});
  try {
    const p = await b.newPage();
    await p.goto(process.argv[3]);
    // The viewer imports the trace asynchronously: wait for the page to say
    // it is done (the timeout only bounds a hang).
    await p.waitForSelector('#result', {timeout: 120000});
    console.log('RESULT ' + await p.$eval('#result', e => e.textContent));
  } catch (e) {
    const st = await b.pages().then(ps => ps[ps.length - 1].$eval('#status', e => e.textContent))
      .catch(() => '?');
    console.log('STATUS ' + st + ' ' + e);
  }
  await b.close();
})();
"""


def puppeteer_or_skip(tmp):
    """puppeteer-core from the npm registry (once, kept beside the build),
    to drive Debian's Chromium: the viewer needs a browser that waits for
    its asynchronous import, which --dump-dom does not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        h.skip("node and npm are not installed (they drive Chromium through puppeteer-core)")
    cache = os.path.join(os.path.dirname(h.env_path("HEAPPROF_LIB")), "..", "npm-cache")
    cache = os.path.abspath(cache)
    mod = os.path.join(cache, "node_modules", "puppeteer-core")
    if not os.path.isdir(mod):
        os.makedirs(cache, exist_ok=True)
        r = h.run([npm, "install", "--prefix", cache, "--no-audit", "--no-fund",
                   "puppeteer-core@22"], env=dict(os.environ), timeout=600)
        if r.returncode != 0 or not os.path.isdir(mod):
            h.skip(f"cannot install puppeteer-core from the npm registry: {r.stderr[-300:]}")
    return node, cache


def check_viewer():
    """The trace opens in catapult's trace viewer (Go's, from golang-1.19-src)
    in headless Chromium: the named thread tracks and a region slice are on
    the page once the import is done."""
    tmp = h.tempdir()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        h.skip("chromium is not installed (Debian package chromium)")
    static = viewer_dir()
    node, cache = puppeteer_or_skip(tmp)
    path = os.path.join(tmp, "t.json")
    run_api({}, path)
    site = os.path.join(tmp, "site")
    os.mkdir(site)
    for f in ("webcomponents.min.js", "trace_viewer_full.html"):
        shutil.copy(os.path.join(static, f), site)
    with open(path) as f:
        trace = f.read()
    with open(os.path.join(site, "view.html"), "w") as f:
        f.write(PAGE % json.dumps(trace))
    driver = os.path.join(tmp, "drive.js")
    with open(driver, "w") as f:
        f.write(DRIVER)
    import http.server
    import threading
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=site)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/view.html"
    env = dict(os.environ, NODE_PATH=os.path.join(cache, "node_modules"))
    try:
        out = h.run([node, driver, chromium, url], env=env, timeout=300)
    finally:
        srv.shutdown()
    m = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    h.check(m is not None, f"the viewer did not finish the import: {out.stdout[-800:]} "
            f"{out.stderr[-800:]}")
    res = json.loads(m.group(1))
    for n in NAMES:
        h.check(n in res["threads"], f"viewer: no thread track {n}: {res['threads']}")
    h.check("trc-heavy:work=heavy" in res["slices"],
            f"viewer: no work=heavy slice on trc-heavy: {res['slices'][:20]}")


def check_blocked():
    """Blocking calls and a contended mutex during a trace are slices named
    by the call on the thread's track, each as long as the program measured
    it (within 2 ms and 10%: the program's clock reads sit just outside the
    hook's), with the stack that blocked."""
    tmp = h.tempdir()
    path = os.path.join(tmp, "b.json")
    p = h.run([h.env_path("HEAPPROF_TRACER_BLOCK"), path], env=h.base_env(), timeout=120)
    h.check(p.returncode == 0, f"tracer_block: {p.returncode}: {p.stderr[-1000:]}")
    measured = [(line.split()[0], int(line.split()[1])) for line in p.stdout.splitlines()]
    with open(path) as f:
        doc = json.load(f)
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"]
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    slices = [(e["name"], e["dur"]) for e in doc["traceEvents"]
              if e.get("ph") == "X" and names.get(e.get("tid")) == "trc-wait"]
    h.check([n for n, _ in slices] == [n for n, _ in measured],
            f"slices on trc-wait {slices}, want the calls {measured}")
    for (name, dur), (_, us) in zip(slices, measured):
        h.check(abs(dur - us) <= 2000 + us / 10, f"{name}: {dur:.0f} us in the trace, {us} measured")
    # Each wait carries the stack that blocked: the waiter's function.
    for e in doc["traceEvents"]:
        if e.get("ph") == "X" and names.get(e.get("tid")) == "trc-wait":
            st = stack_names(doc, e.get("sf"))
            h.check("waiter" in st, f"{e['name']}: its stack {st} does not name waiter")


def check_lifecycle():
    """A fork and an exec during a trace are instants on the thread that
    made them; the trace going to a file is written before the exec, its
    name tagged with the pid and "exec" (the new image may trace to the
    same name). Execs that cannot start anything (tried before the fork)
    neither end the trace nor appear in it."""
    tmp = h.tempdir()
    path = os.path.join(tmp, "x.json")
    p = h.run([h.env_path("HEAPPROF_TRACER_BLOCK"), "--exec", path], env=h.base_env(), timeout=120)
    h.check(p.returncode == 0, f"tracer_block --exec: {p.returncode}: {p.stderr[-1000:]}")
    m = re.search(r"^pid (\d+)$", p.stdout, re.M)
    h.check(m is not None, f"no pid line: {p.stdout!r}")
    files = sorted(os.listdir(tmp))
    want = f"x.{m.group(1)}.exec.json"
    h.check(files == [want], f"files {files}, want the trace written before the exec as {want}")
    with open(os.path.join(tmp, want)) as f:
        doc = json.load(f)
    life = [(e["name"], e.get("args", {})) for e in doc["traceEvents"]
            if e.get("cat") == "lifecycle"]
    h.check(("fork", {}) in [(n, a) for n, a in life], f"no fork instant: {life}")
    execs = [a for n, a in life if n == "exec"]
    h.check(execs == [{"program": "/bin/true"}], f"exec instants {execs}: {life}")
    forks = [e for e in doc["traceEvents"] if e.get("name") == "fork"]
    ex = [e for e in doc["traceEvents"] if e.get("name") == "exec"]
    h.check(forks[0]["tid"] == ex[0]["tid"] == int(m.group(1)),
            f"fork and exec not on the main thread: {forks} {ex}")
    h.check(forks[0]["ts"] <= ex[0]["ts"], "the exec comes before the fork")


if __name__ == "__main__":
    checks = {"api": check_api, "env": check_env, "endpoint": check_endpoint,
              "blocked": check_blocked, "lifecycle": check_lifecycle, "viewer": check_viewer}
    h.main(checks[sys.argv[1]])
