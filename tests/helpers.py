"""Shared helpers for heapprof's test scripts: running programs with and
without the profiler, reading profiles through heapprof-decode and
`go tool pprof`, and parsing the leak summary.

The scripts run under `meson test`, which passes paths in the environment:
HEAPPROF_LIB (libheapprof.so) and HEAPPROF_DECODE (the decoder). Exit status
77 tells meson a test was skipped. Set HEAPPROF_KEEP_TEMP=1 to keep the
temporary directories for a post-mortem.
"""

import atexit
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77


def _header_define(name):
    """A number #defined in include/heapprof.h, where heapprof's defaults
    are written once."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "include", "heapprof.h")
    with open(path, encoding="utf-8") as f:
        m = re.search(r"^#define %s (\d+)$" % name, f.read(), re.M)
    return int(m.group(1))


DEFAULT_RATE = _header_define("HEAPPROF_DEFAULT_RATE")
DEFAULT_CPU_HZ = _header_define("HEAPPROF_DEFAULT_CPU_HZ")


def _heapprof_var(name):
    """HEAPPROF or HEAPPROF_*: a variable the library reads, or one it would
    name as unknown at start-up (the paths meson passes the tests, such as
    HEAPPROF_LIB, are read by the scripts, never by the programs)."""
    return name == "HEAPPROF" or name.startswith("HEAPPROF_")


class Failure(Exception):
    """A check that did not hold; the message says what and why."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


def main(func, *args):
    """Runs one test function: exit 0 when it returns, 1 with the message on
    a Failure, 77 when it skips."""
    try:
        func(*args)
    except Failure as e:
        print("FAIL: " + str(e))
        sys.exit(1)
    print("ok")
    sys.exit(0)


def env_path(name):
    value = os.environ.get(name)
    if not value:
        print(f"FAIL: {name} is not set: run this through `meson test`")
        sys.exit(1)
    return value


def lib_path():
    return os.path.abspath(env_path("HEAPPROF_LIB"))


def decoder_path():
    return os.path.abspath(env_path("HEAPPROF_DECODE"))


def tempdir():
    path = tempfile.mkdtemp(prefix="heapprof-test-")
    if not os.environ.get("HEAPPROF_KEEP_TEMP"):
        atexit.register(shutil.rmtree, path, True)
    else:
        print("keeping " + path)
    return path


def base_env():
    # Cleared so that neither the caller's shell nor meson's variables leak
    # into a test.
    env = {k: v for k, v in os.environ.items() if not _heapprof_var(k) and k != "LD_PRELOAD"}
    # meson randomises MALLOC_PERTURB_ by default; the tests ask for 0 and
    # keep it so, so runs with and without the profiler see the same heap.
    env["MALLOC_PERTURB_"] = "0"
    # These suites hold the leak summary to "memory never freed" (every
    # live object listed): the leak check's verdicts have their own tests
    # (tests/leaks/), which turn it back on.
    env["HEAPPROF_LEAK_SCAN"] = "0"
    return env


def run(argv, env=None, cwd=None, timeout=60, stdin=subprocess.DEVNULL):
    try:
        return subprocess.run(argv, env=env, cwd=cwd, timeout=timeout, stdin=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, errors="replace")
    except subprocess.TimeoutExpired:
        raise Failure(f"timed out after {timeout}s: {' '.join(argv)}")


# ---- waiting for conditions, not for times ---------------------------------
# The suite runs beside other work on a 2-CPU machine: a test that sleeps
# and then assumes a program has done something, or is still running, fails
# there. Tests wait for what they need instead; the limits below only bound
# a hang, far beyond what a busy machine needs.

WAIT_LIMIT = 60


def wait_for(what, cond, limit=WAIT_LIMIT):
    """Polls cond() until it returns something true, and returns that;
    fails after `limit` seconds (a bound on a hang, not a wait)."""
    t0 = time.monotonic()
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() - t0 > limit:
            raise Failure(f"gave up waiting for {what} after {limit} s")
        time.sleep(0.05)


def read_until(stream, pattern, limit=WAIT_LIMIT):
    """Reads a child's pipe (stream, from Popen) until a whole line matches
    the regex pattern, the pipe ends, or `limit` seconds pass. Returns
    (match or None, everything read but the matching line). Reads the file
    descriptor directly, as Popen.communicate does, so nothing is left in a
    Python buffer that communicate would not see."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + limit
    while True:
        lines = buf.decode(errors="replace").splitlines(keepends=True)
        for i, line in enumerate(lines):
            m = re.search(pattern, line) if line.endswith("\n") else None
            if m:
                return m, "".join(lines[:i] + lines[i + 1:])
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], left)[0] if left > 0 else []
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            return None, "".join(lines)
        buf += chunk


def kill_at_exit(proc):
    """Kills proc when the test script ends, if it is still running: a
    failed check must not leave a program behind."""
    def kill():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    atexit.register(kill)


# The other allocators heapprof is run over: name -> (Debian package, the
# library's possible file names).
ALLOCATORS = {
    "jemalloc": ("libjemalloc2", ["libjemalloc.so.2"]),
    "mimalloc": ("libmimalloc2.0", ["libmimalloc.so.2", "libmimalloc.so.2.0"]),
}


def allocator_lib(name):
    """The path of allocator `name` (a key of ALLOCATORS), or None when it
    is not installed."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        for f in ALLOCATORS[name][1]:
            if os.path.exists(os.path.join(d, f)):
                return os.path.join(d, f)
    return None


def set_heapprof(env, profile=None, rate=None, seed=None, leaks=None):
    """Sets HEAPPROF, HEAPPROF_RATE, HEAPPROF_SEED and HEAPPROF_LEAKS in env
    for each argument that is not None; returns env."""
    for key, value in (("HEAPPROF", profile), ("HEAPPROF_RATE", rate),
                       ("HEAPPROF_SEED", seed), ("HEAPPROF_LEAKS", leaks)):
        if value is not None:
            env[key] = str(value)
    return env


def run_program(exe, args=(), preload=False, profile=None, rate=1, seed=None, leaks=None,
                cwd=None, extra_env=None):
    """Runs an example. preload puts libheapprof.so in LD_PRELOAD (for the
    plain builds); profile sets HEAPPROF; rate None leaves HEAPPROF_RATE unset
    (the library's default); leaks sets HEAPPROF_LEAKS."""
    env = base_env()
    if preload:
        env["LD_PRELOAD"] = lib_path()
    set_heapprof(env, profile=profile, rate=rate, seed=seed, leaks=leaks)
    if extra_env:
        env.update(extra_env)
    return run([exe] + list(args), env=env, cwd=cwd)


def describe(proc):
    """A short account of a finished process for failure messages."""
    return (f"exit status {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}"
            f"--- stderr ---\n{proc.stderr[-3000:]}")


# ---- heapprof-decode ---------------------------------------------------------

def decode(path, *options):
    return run([decoder_path()] + list(options) + [path])


def decode_ok(path, *options):
    proc = decode(path, *options)
    check(proc.returncode == 0,
          f"heapprof-decode {' '.join(options)} rejected {path}: {proc.stderr.strip()}")
    return proc.stdout


def decode_json(path):
    text = decode_ok(path, "--json")
    try:
        return json.loads(text)
    except ValueError as e:
        raise Failure(f"heapprof-decode --json printed invalid JSON ({e}):\n{text[:2000]}")


def functions(path, mode="cum"):
    """{function name: [values...]} from heapprof-decode --functions=MODE."""
    out = {}
    for line in decode_ok(path, "--functions=" + mode).splitlines():
        fields = line.split("\t")
        check(len(fields) >= 2, f"bad --functions line: {line!r}")
        out[fields[-1]] = [int(v) for v in fields[:-1]]
    return out


def short_name(name):
    """A function name without its parameter list, so `app::leak_nodes(int)`
    and `app::leak_nodes` compare equal (pprof may print either)."""
    paren = name.find("(")
    return name[:paren] if paren > 0 else name


def by_short_name(table):
    """Sums a {name: values} table by short name."""
    out = {}
    for name, values in table.items():
        key = short_name(name)
        if key in out:
            out[key] = [a + b for a, b in zip(out[key], values)]
        else:
            out[key] = list(values)
    return out


# ---- go tool pprof -----------------------------------------------------------

def go_or_skip():
    go = shutil.which("go")
    if not go:
        skip("`go` is not installed, so `go tool pprof` cannot be run")
    return go


def go_or_skip_soft():
    """True when `go` can be run; for checks that add a pprof cross-check to
    a test that means something without it."""
    if shutil.which("go"):
        return True
    print("note: `go` is not installed; skipping the go tool pprof part")
    return False


def pprof(args, workdir):
    """Runs `go tool pprof ARGS` in a sandboxed Go environment. Its stderr
    (e.g. "Main binary filename not available") is returned but not judged."""
    go = go_or_skip()
    env = base_env()
    for var in ("GOFLAGS", "GO111MODULE", "GOROOT", "GOENV", "PPROF_BINARY_PATH"):
        env.pop(var, None)
    home = os.path.join(workdir, "gohome")
    os.makedirs(home, exist_ok=True)
    env.update({
        "HOME": home,
        "GOCACHE": os.path.join(home, "cache"),
        "GOPATH": os.path.join(home, "path"),
        "GOENV": "off",
        "PPROF_TMPDIR": home,
        # pprof would otherwise look for binaries to symbolize with; the
        # profile has to carry its own symbols.
        "PPROF_BINARY_PATH": home,
    })
    return run([go, "tool", "pprof"] + list(args), env=env, cwd=workdir, timeout=120)


_TOP_LINE = re.compile(r"^\s*(\S+)\s+(\S+)%\s+(\S+)%\s+(\S+)\s+(\S+)%\s+(.+?)\s*$")
_UNIT = re.compile(r"^(-?[0-9.]+)([A-Za-z]*)$")


def _top_value(text):
    m = _UNIT.match(text)
    check(m is not None, f"unexpected value {text!r} in pprof -top output")
    value = float(m.group(1))
    return int(value) if value == int(value) else value


def pprof_top(path, sample_index, workdir):
    """{name: (flat, cum)} from `go tool pprof -top -sample_index=I -unit=B`,
    with every node shown (nodefraction 0), values in bytes or counts."""
    unit = ["-unit=B"] if sample_index.endswith("space") else []
    proc = pprof(["-top", "-sample_index=" + sample_index] + unit +
                 ["-nodefraction=0", "-nodecount=100000", path], workdir)
    check(proc.returncode == 0,
          f"go tool pprof -top rejected the profile:\n{proc.stderr[-2000:]}")
    rows = {}
    header_seen = False
    for line in proc.stdout.splitlines():
        if not header_seen:
            header_seen = line.split()[:2] == ["flat", "flat%"]
            continue
        m = _TOP_LINE.match(line)
        check(m is not None, f"unexpected pprof -top line: {line!r}")
        rows[m.group(6)] = (_top_value(m.group(1)), _top_value(m.group(4)))
    check(header_seen, f"no table in pprof -top output:\n{proc.stdout[:2000]}")
    return rows


# ---- leak summary ------------------------------------------------------------

_LEAK_HEADER = re.compile(
    r"^heapprof: (\d+) bytes in (\d+) objects never freed, from (\d+) stacks? "
    r"\((exact|estimated), rate (\d+)\)$")
# The leak summary's first line, and the line that opens each stack.
LEAK_HEADER = re.compile(
    r"^heapprof: (\d+) bytes in (\d+) objects? lost, from (\d+) stacks? \((exact|estimated), "
    r"rate (\d+)\): definitely (\d+) bytes in (\d+) objects?, indirectly (\d+) bytes in "
    r"(\d+) objects?$")
LEAK_STACK = re.compile(
    r"^heapprof: leak #(\d+): (\d+) bytes(?: \(± (\d+), (\d+) samples?\))? in (\d+) objects? "
    r"(definitely lost|indirectly lost|still reachable|still referenced), allocated from:$")


def leak_header(line):
    """The summary's first line parsed: {"bytes", "objects", "stacks", "kind",
    "rate", "def_bytes", "def_objects", "ind_bytes", "ind_objects"}, or None."""
    m = LEAK_HEADER.match(line)
    if not m:
        return None
    g = [int(x) if x.isdigit() else x for x in m.groups()]
    return dict(zip(["bytes", "objects", "stacks", "kind", "rate", "def_bytes", "def_objects",
                     "ind_bytes", "ind_objects"], g))


# "No leaks", with or without the leak check (with it: "no memory lost"),
# and in sampled mode what it rests on; or, when the run allocated too
# little for the sample to tell, "no leak seen" (src/report/leaks.c).
_NO_LEAKS = re.compile(
    r"^heapprof: no leaks: (?:every sampled allocation was freed|no memory lost) "
    r"\((?P<kind>exact|estimated), rate (?P<rate>\d+)\)"
    r"(?:: (?P<samples>\d+) samples of (?P<allocated>[\d.]+ (?:bytes|KiB|MiB|GiB|TiB)) allocated; "
    r"a leak under ~(?P<floor>[\d.]+ (?:bytes|KiB|MiB|GiB|TiB)) in all is missed more than 5% of "
    r"the time \(exact mode, HEAPPROF_RATE=1, misses none\))?$")
_NO_LEAK_SEEN = re.compile(
    r"^heapprof: no leak seen in (?P<samples>\d+) samples of "
    r"(?P<allocated>[\d.]+ (?:bytes|KiB|MiB|GiB|TiB)) allocated \(rate (?P<rate>\d+)\): too few "
    r"to tell; had all of it leaked, it would have gone unseen (?P<missed>\d+)% of the time "
    r"\(a leak is seen 95% of the time from ~(?P<floor>[\d.]+ (?:bytes|KiB|MiB|GiB|TiB))\); "
    r"for a CI gate use exact mode, HEAPPROF_RATE=1$")


def no_leaks_line(line):
    """The "no leaks" line parsed: {"kind", "rate", "samples", "allocated",
    "floor", "told"} (told: False when the sample was too small to tell, and
    the line says "no leak seen"), or None."""
    m = _NO_LEAKS.match(line)
    if m:
        return {"kind": m.group("kind"), "rate": int(m.group("rate")),
                "samples": int(m.group("samples")) if m.group("samples") else None,
                "allocated": m.group("allocated"), "floor": m.group("floor"), "told": True}
    m = _NO_LEAK_SEEN.match(line)
    if m:
        return {"kind": "estimated", "rate": int(m.group("rate")),
                "samples": int(m.group("samples")), "allocated": m.group("allocated"),
                "floor": m.group("floor"), "missed": int(m.group("missed")), "told": False}
    return None


_LEAK = re.compile(r"^heapprof: leak #(?P<n>\d+): (?P<bytes>\d+) bytes"
                   r"(?: \(± (?P<sd>\d+), (?P<samples>\d+) samples?\))?"
                   r" in (?P<objects>\d+) objects? allocated from:$")
_MORE = re.compile(r"^heapprof: \.\.\. and (\d+) more stacks?: (\d+) bytes in (\d+) objects?$")
# Not in the documented format, but written by the library: how many stacks
# the built-in suppressions hid. Accepted and otherwise ignored.
_SUPPRESSED = re.compile(r"^heapprof: (\d+) runtime or suppressed stacks? not shown$")
_FRAME = re.compile(r"^    #(\d+) (.*)$")
_THREADS = re.compile(r"^    threads: (.*)$")
_CUT = re.compile(r"^    \.\.\. (\d+) more frames? \(HEAPPROF_LEAK_FRAMES=\d+\)$")
_AT = re.compile(r"^(.*) at (.+):(\d+)$")
_IN = re.compile(r"^(.*) in (\S+)$")


def is_summary_line(line):
    """True for a line the leak summary writes (the heapprof: lines, and the
    indented frames and thread names under them)."""
    return (line.startswith("heapprof: ") or _FRAME.match(line) is not None
            or _THREADS.match(line) is not None or _CUT.match(line) is not None)


def parse_leaks(text):
    """Parses the leak summary out of text (other lines are ignored).
    Returns {"header": dict or None, "no_leaks": bool, "no_leaks_line": dict
    or None (no_leaks_line's), "stacks": [...], "more": dict or None}; each stack is {"bytes", "objects", "frames"} and
    each frame {"func", "file", "line", "module"} (missing parts None)."""
    out = {"header": None, "no_leaks": False, "stacks": [], "more": None, "suppressed": 0,
           "no_leaks_line": None}
    current = None
    for line in text.splitlines():
        m = _LEAK_HEADER.match(line)
        if m:
            check(out["header"] is None and not out["no_leaks"],
                  "two leak summary headers:\n" + text)
            out["header"] = {"bytes": int(m.group(1)), "objects": int(m.group(2)),
                             "stacks": int(m.group(3)), "kind": m.group(4),
                             "rate": int(m.group(5))}
            continue
        none = no_leaks_line(line)
        if none:
            check(out["header"] is None and not out["no_leaks"],
                  "two leak summary headers:\n" + text)
            out["no_leaks"] = True
            out["no_leaks_line"] = none
            continue
        m = _LEAK.match(line)
        if m:
            check(int(m.group("n")) == len(out["stacks"]) + 1,
                  f"leak numbers out of order at {line!r}")
            current = {"bytes": int(m.group("bytes")), "objects": int(m.group("objects")),
                       "frames": [], "threads": [],
                       "sd": int(m.group("sd")) if m.group("sd") else None,
                       "samples": int(m.group("samples")) if m.group("samples") else None,
                       "frames_left_out": 0}
            out["stacks"].append(current)
            continue
        m = _MORE.match(line)
        if m:
            out["more"] = {"stacks": int(m.group(1)), "bytes": int(m.group(2)),
                           "objects": int(m.group(3))}
            current = None
            continue
        m = _SUPPRESSED.match(line)
        if m:
            out["suppressed"] = int(m.group(1))
            current = None
            continue
        m = _THREADS.match(line)
        if m and current is not None:
            current["threads"] = [t.strip() for t in m.group(1).split(",")]
            continue
        m = _CUT.match(line)
        if m and current is not None:
            current["frames_left_out"] = int(m.group(1))
            continue
        m = _FRAME.match(line)
        if m and current is not None:
            check(int(m.group(1)) == len(current["frames"]),
                  f"frame numbers out of order at {line!r}")
            body = m.group(2)
            frame = {"func": None, "file": None, "line": None, "module": None}
            at = _AT.match(body)
            inm = _IN.match(body)
            if at:
                frame.update(func=at.group(1), file=at.group(2), line=int(at.group(3)))
            elif inm:
                frame.update(func=inm.group(1), module=inm.group(2))
            else:
                raise Failure(f"leak frame in neither form `F at FILE:LINE` nor "
                              f"`F in MODULE`: {line!r}")
            current["frames"].append(frame)
            continue
        check(not line.startswith("heapprof: "), f"unrecognised heapprof line: {line!r}")
        current = None
    return out
