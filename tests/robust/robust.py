"""Robustness tests: heapprof under fork and exec, every way a process can
end, many threads, dlopen/dlclose, bad configuration, failing writes,
hostile output paths, setuid programs, a stress run, and the stack table's
bounds (size classes, HEAPPROF_MAX_MEMORY). Each check runs one
of the C helpers in this directory (built by meson.build here; each file
says what truth it produces) and holds heapprof to its contract.

Usage: robust.py CHECK     (see CHECKS at the end; meson runs one test each)

Environment (set by meson.build): HEAPPROF_LIB, HEAPPROF_DECODE, RB_BIN (the
helpers' build directory), RB_PLUGIN and RB_PLUGIN2 (librb_plugin.so,
librb_plugin2.so), RB_PIDLOG_LIB (librb_pidlog.so), HEAPPROF_WRAPPER (the
heapprof command). HEAPPROF_KEEP_TEMP=1
keeps the temporary directories. When a program hangs, the failure lists
the processes left and, if gdb is installed, their threads' stacks.
"""

import ctypes.util
import gzip
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import zlib

import helpers
from helpers import Failure, check

DEFAULT_RATE = helpers.DEFAULT_RATE
NOBODY = 65534


# ---- running programs -------------------------------------------------------

def exe(name):
    return os.path.join(helpers.env_path("RB_BIN"), name)


def plugin():
    return helpers.env_path("RB_PLUGIN")


def pidlog_lib():
    return helpers.env_path("RB_PIDLOG_LIB")


def clean_env():
    """The caller's environment without any variable heapprof reads."""
    env = helpers.base_env()
    for key in list(env):
        if key.startswith("HEAPPROF") or key in ("LD_PRELOAD", "RB_PROFILE", "RB_PIDLOG"):
            del env[key]
    return env


def hp_env(profile, rate=None, leaks="off", preload=True, pidlog=None, extra=None):
    """An environment that runs a program under heapprof. rate None leaves
    the library's default; leaks None sends the leak summary to stderr;
    pidlog names a file in which rb_pidlog lists every process that exits."""
    env = clean_env()
    # The never-freed summary (see helpers.base_env); ROBUST_LEAK_SCAN=1 runs
    # these programs under the leak check instead, to look for hangs and crashes.
    env["HEAPPROF_LEAK_SCAN"] = os.environ.get("ROBUST_LEAK_SCAN", "0")
    libs = []
    if preload:
        libs.append(helpers.lib_path())
    if pidlog:
        libs.append(pidlog_lib())
        env["RB_PIDLOG"] = pidlog
    if libs:
        env["LD_PRELOAD"] = " ".join(libs)
    helpers.set_heapprof(env, profile=profile, rate=rate, leaks=leaks)
    if extra:
        env.update(extra)
    return env


class Result:
    def __init__(self, argv, pid, returncode, stdout, stderr):
        self.argv = argv
        self.pid = pid
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _group_members(pgid):
    """`pid comm state` of the processes still in a process group."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        # comm may hold spaces: fields after the last ')' are fixed.
        rest = text[text.rfind(")") + 2:].split()
        if len(rest) > 2 and int(rest[2]) == pgid:
            out.append(f"{entry} {text[text.find('(') + 1:text.rfind(')')]} {rest[0]}")
    return sorted(out, key=lambda m: int(m.split()[0]))


def _stacks(members):
    """Where each hung process is stuck, from gdb when it is installed (it is
    not a dependency: without it the failure still names the processes)."""
    gdb = shutil.which("gdb")
    if not gdb:
        return ""
    out = []
    # The newest processes (a hung child, usually) first; at most two, so
    # the report stays within the test's own time limit.
    for member in members[::-1][:2]:
        pid = member.split()[0]
        try:
            r = subprocess.run([gdb, "-p", pid, "-batch", "-nx", "-ex", "thread apply all bt"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=15, universal_newlines=True,
                               errors="replace")
        except subprocess.TimeoutExpired:
            continue
        frames = [line for line in r.stdout.splitlines() if line.startswith(("#", "Thread "))]
        out.append(f"--- gdb: threads of {member} ---\n" + "\n".join(frames[:80]))
    return "\n" + "\n".join(out) if out else ""


def run(argv, env, timeout=60, cwd=None, fsize=None, stdin=subprocess.DEVNULL, binary=False):
    """Runs argv in a process group of its own, with core dumps off (and a
    file-size limit if fsize is given). On a timeout the whole group is
    killed and the failure lists what was still running: a hang or a
    deadlock, which is what several checks look for."""
    def preexec():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=preexec, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        alive = _group_members(proc.pid)
        stacks = _stacks(alive)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise Failure(f"hung: still running after {timeout}s (deadlock?): {' '.join(argv)}\n"
                      "processes left in its group (pid comm state):\n  " + "\n  ".join(alive) +
                      stacks)
    if not binary:
        out = out.decode(errors="replace")
    return Result(argv, proc.pid, proc.returncode, out, err.decode(errors="replace"))


def describe(r):
    out = r.stdout if isinstance(r.stdout, str) else f"<{len(r.stdout)} bytes>"
    return (f"`{' '.join(r.argv)}`: exit status {r.returncode}\n--- stdout ---\n{out[-3000:]}"
            f"\n--- stderr ---\n{r.stderr[-3000:]}")


def hp_lines(text):
    """The lines heapprof wrote (its diagnostics and the leak summary)."""
    return [line for line in text.splitlines() if line.startswith("heapprof:")]


def not_hp(text):
    """stderr without heapprof's lines: what the program itself said."""
    return "\n".join(line for line in text.splitlines() if not helpers.is_summary_line(line))


def roles(stdout):
    """`ROLE PID` lines printed by the helpers: {role: [pid, ...]}."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out.setdefault(parts[0], []).append(int(parts[1]))
    return out


def pid_name(path, pid):
    """NAME.PID.pb.gz for NAME.pb.gz: the name a non-root process writes."""
    d, base = os.path.split(path)
    i = base.find(".pb")
    i = len(base) if i < 0 else i
    return os.path.join(d, f"{base[:i]}.{pid}{base[i:]}")


def read_pidlog(path):
    """{pid: exe} of the processes rb_pidlog saw exit normally."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                pid, _, exe_path = line.rstrip("\n").partition(" ")
                out[int(pid)] = exe_path
    return out


def temp_files(d):
    return sorted(f for f in os.listdir(d) if ".tmp." in f)


def read_text(path, what):
    check(os.path.exists(path), f"{what}: {path} was not written")
    with open(path, errors="replace") as f:
        return f.read()


def check_files(d, expected, why=""):
    """The directory holds exactly the expected file names (besides the pid
    log) and no temporary file."""
    have = sorted(f for f in os.listdir(d) if f != "pids.log")
    want = sorted(os.path.basename(p) for p in expected)
    check(not temp_files(d), f"temporary files left: {temp_files(d)} {why}")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    check(not missing and not extra,
          f"profiles: missing {missing}, unexpected {extra} (have {have}) {why}")


def cum(path):
    """{short function name: [alloc_objects, alloc_space, inuse_objects,
    inuse_space]}, cumulative over stacks."""
    return helpers.by_short_name(helpers.functions(path, "cum"))


def expect_values(path, want):
    """want: {function: (alloc_objects, alloc_space, inuse_objects,
    inuse_space)}, entries None meaning any value."""
    table = cum(path)
    wrong = []
    for fn, values in want.items():
        got = table.get(fn)
        if got is None or any(w is not None and g != w for g, w in zip(got, values)):
            wrong.append(f"  {fn}: got {got}, want {list(values)}")
    check(not wrong, f"{os.path.basename(path)}: per-function values (alloc_objects alloc_space "
          f"inuse_objects inuse_space, cumulative) differ from the truth:\n" + "\n".join(wrong))


def baseline(argv, **kw):
    return run(argv, clean_env(), **kw)


def same_output(base, got, what):
    check(got.returncode == base.returncode,
          f"{what}: exit status {got.returncode} under heapprof, {base.returncode} without\n" +
          describe(got))
    check(got.stdout == base.stdout,
          f"{what}: stdout differs under heapprof\n--- without ---\n{base.stdout}"
          f"\n--- with ---\n{got.stdout}")


def require_sane_machine():
    """Stops at once when /dev/null is not the null device: a root process
    that renamed a file over it (an old heapprof writing
    HEAPPROF_LEAKS=/dev/null did) breaks programs in ways that would
    otherwise look like heapprof's doing (git gc, for one, reads it)."""
    st = os.stat(os.devnull)
    check(stat.S_ISCHR(st.st_mode),
          f"{os.devnull} is not a character device on this machine (mode {oct(st.st_mode)}, "
          f"{st.st_size} bytes): something replaced it; as root: rm {os.devnull} && "
          f"mknod -m 666 {os.devnull} c 1 3")


# ---- fork and exec -------------------------------------------------------

def check_fork():
    """Forks from a multi-threaded parent while its threads allocate; each
    child and grandchild writes NAME.PID.pb.gz, the parent NAME.pb.gz."""
    for i, rate in enumerate([1, 1, None, 1, None]):
        d = os.path.join(helpers.tempdir(), f"run{i}")
        os.makedirs(d)
        profile = os.path.join(d, "fork.pb.gz")
        log = os.path.join(d, "pids.log")
        r = run([exe("rb_fork"), "fork", "6"], hp_env(profile, rate, pidlog=log), timeout=40)
        what = f"run {i} (rate {rate or 'default'})"
        check(r.returncode == 0 and "FAIL" not in r.stdout, f"{what}: " + describe(r))
        who = roles(r.stdout)
        parent = who["parent"][0]
        kids = who.get("child", []) + who.get("grandchild", [])
        check(len(who.get("child", [])) == 6 and len(who.get("grandchild", [])) == 1,
              f"{what}: expected 6 children and a grandchild: " + describe(r))
        exited = read_pidlog(log)
        check(set(exited) == {parent, *kids},
              f"{what}: processes that exited normally {sorted(exited)}, expected the parent "
              f"{parent} and {sorted(kids)}")
        check_files(d, [profile] + [pid_name(profile, p) for p in kids], what)
        helpers.decode_ok(profile)
        for p in kids:
            helpers.decode_ok(pid_name(profile, p))
        if rate == 1:
            expect_values(profile, {"parent_leak": (4, 384, 4, 384)})
            check("child_leak" not in cum(profile), "the parent's profile has child_leak")
            for p in who["child"]:
                expect_values(pid_name(profile, p), {"child_leak": (5, 240, 5, 240)})
            # The grandchild's heap also holds the first child's blocks.
            expect_values(pid_name(profile, who["grandchild"][0]),
                          {"child_leak": (10, 480, 10, 480)})


def check_fork_dlopen():
    """Forks while other threads dlopen and dlclose: a child that allocates
    at once must not hang on a loader lock inherited from the parent (taken
    there by dlopen, dlclose, or heapprof's own unwinding)."""
    forks = 120
    for i, rate in enumerate([1, None, 1]):
        d = os.path.join(helpers.tempdir(), f"run{i}")
        os.makedirs(d)
        profile = os.path.join(d, "f.pb.gz")
        r = run([exe("rb_fork"), "dlfork", str(forks), plugin()], hp_env(profile, rate),
                timeout=40)
        what = f"run {i} (rate {rate or 'default'})"
        check(r.returncode == 0 and "FAIL" not in r.stdout, f"{what}: " + describe(r))
        kids = re.findall(r"^child (\d+) (exit|_exit)$", r.stdout, re.M)
        check(len(kids) == forks, f"{what}: {len(kids)} children, want {forks}")
        dumped = [int(p) for p, how in kids if how == "exit"]
        check_files(d, [profile] + [pid_name(profile, p) for p in dumped], what)
        for p in dumped[:5]:
            helpers.decode_ok(pid_name(profile, p))


def check_fork_exec():
    """Programs exec'd by a profiled process, directly and through a shell,
    write NAME.PID.pb.gz."""
    d = helpers.tempdir()
    profile = os.path.join(d, "exec.pb.gz")
    log = os.path.join(d, "pids.log")
    r = run([exe("rb_fork"), "exec"], hp_env(profile, 1, pidlog=log))
    check(r.returncode == 0 and "FAIL" not in r.stdout, describe(r))
    who = roles(r.stdout)
    parent, child, shell = who["parent"][0], who["child"][0], who["shell"][0]
    leaves = who.get("leaf", [])
    check(len(leaves) == 2 and child in leaves, "expected two leaves, one the child: " +
          describe(r))
    exited = read_pidlog(log)
    # The shell may end with _exit (dash does): then it has no profile.
    check(set(exited) - {shell} == {parent, *leaves},
          f"processes that exited normally {exited}, expected {parent} and {leaves}")
    expected = [profile] + [pid_name(profile, p) for p in exited if p != parent]
    check_files(d, expected)
    expect_values(profile, {"parent_leak": (4, 384, 4, 384)})
    for p in leaves:
        path = pid_name(profile, p)
        expect_values(path, {"leaf_leak": (6, 144, 6, 144)})
        check("parent_leak" not in cum(path), f"leaf {p}'s profile has its parent's parent_leak")
    if shell in exited:
        helpers.decode_ok(pid_name(profile, shell))


def check_fork_pct():
    """%p expands to the pid in every process (no second pid added), and %%
    to %."""
    d = helpers.tempdir()
    r = run([exe("rb_fork"), "fork", "2"], hp_env(os.path.join(d, "p-%p.pb.gz"), 1))
    check(r.returncode == 0, describe(r))
    who = roles(r.stdout)
    pids = who["parent"] + who["child"] + who["grandchild"]
    expected = [os.path.join(d, f"p-{p}.pb.gz") for p in pids]
    check_files(d, expected, "(HEAPPROF=p-%p.pb.gz)")
    for path in expected:
        helpers.decode_ok(path)

    d = helpers.tempdir()
    r = run([exe("rb_fork"), "fork", "1"], hp_env(os.path.join(d, "a%%b.pb.gz"), 1))
    check(r.returncode == 0, describe(r))
    who = roles(r.stdout)
    base = os.path.join(d, "a%b.pb.gz")
    check_files(d, [base] + [pid_name(base, p) for p in who["child"] + who["grandchild"]],
                "(HEAPPROF=a%%b.pb.gz)")


# ---- leak summaries per process -------------------------------------------

# Every leaking stack in full, so each function's leaks can be added up.
ALL_LEAKS = {"HEAPPROF_LEAK_STACKS": "100000", "HEAPPROF_LEAK_FRAMES": "64"}


def leak_file(path, what):
    """The leak summary in the file at path, parsed: it must be one, from an
    exact-mode run."""
    text = read_text(path, what)
    s = helpers.parse_leaks(text)
    check(s["header"] is not None or s["no_leaks"],
          f"{what}: {os.path.basename(path)} holds no leak summary:\n{text[:2000]}")
    check(s["header"] is None or (s["header"]["kind"], s["header"]["rate"]) == ("exact", 1),
          f"{what}: {os.path.basename(path)} is not an exact-mode summary:\n{text[:500]}")
    return s


def leaked_by(summary, fn):
    """(bytes, objects) of the summary's stacks that pass through fn."""
    total = [0, 0]
    for st in summary["stacks"]:
        if any(f["func"] and helpers.short_name(f["func"]) == fn for f in st["frames"]):
            total[0] += st["bytes"]
            total[1] += st["objects"]
    return tuple(total)


def summary_count(text):
    return sum(1 for line in text.splitlines() if _SUMMARY_START.match(line))


def check_leaks_tree():
    """HEAPPROF_LEAKS=FILE in a process tree: the root writes FILE, every
    other process FILE with its pid added by the rule its profile is named by
    (leaks.txt.PID), each holding its own process's summary."""
    d = helpers.tempdir()
    profile = os.path.join(d, "exec.pb.gz")
    leaks = os.path.join(d, "leaks.txt")
    log = os.path.join(d, "pids.log")
    r = run([exe("rb_fork"), "exec"], hp_env(profile, 1, leaks=leaks, pidlog=log, extra=ALL_LEAKS))
    check(r.returncode == 0 and "FAIL" not in r.stdout, describe(r))
    check(not hp_lines(r.stderr), "heapprof wrote on stderr although HEAPPROF_LEAKS names a "
          "file:\n" + "\n".join(hp_lines(r.stderr)[:10]))
    who = roles(r.stdout)
    parent, shell, leaves = who["parent"][0], who["shell"][0], who.get("leaf", [])
    check(len(leaves) == 2, "expected two leaves: " + describe(r))
    exited = read_pidlog(log)
    # The shell may end with _exit (dash does): then it writes nothing.
    check(set(exited) - {shell} == {parent, *leaves},
          f"processes that exited normally {sorted(exited)}, expected {parent} and {leaves}")
    others = [p for p in exited if p != parent]
    check_files(d, [profile, leaks] + [pid_name(profile, p) for p in others] +
                [pid_name(leaks, p) for p in others], "(HEAPPROF_LEAKS=leaks.txt, rb_fork exec)")
    s = leak_file(leaks, f"the root {parent}")
    check(leaked_by(s, "parent_leak") == (384, 4) and leaked_by(s, "leaf_leak") == (0, 0),
          f"leaks.txt is not the root's summary: parent_leak {leaked_by(s, 'parent_leak')} "
          f"(want 384 bytes in 4 objects), leaf_leak {leaked_by(s, 'leaf_leak')} (want none)")
    for p in leaves:
        s = leak_file(pid_name(leaks, p), f"leaf {p}")
        check(leaked_by(s, "leaf_leak") == (144, 6) and leaked_by(s, "parent_leak") == (0, 0),
              f"leaks.txt.{p} is not leaf {p}'s summary: leaf_leak {leaked_by(s, 'leaf_leak')} "
              f"(want 144 bytes in 6 objects), parent_leak {leaked_by(s, 'parent_leak')} "
              f"(want none)")
    if shell in exited:
        leak_file(pid_name(leaks, shell), f"the shell {shell}")

    # A pipeline of programs whose pids are known only from rb_pidlog's list.
    bash, xz = shutil.which("bash"), shutil.which("xz")
    if not bash or not xz:
        print("note: bash or xz is not installed; skipping the pipeline part")
        return
    d = helpers.tempdir()
    profile = os.path.join(d, "out.pb.gz")
    leaks = os.path.join(d, "leaks.txt")
    log = os.path.join(d, "pids.log")
    r = run([bash, "-c", "seq 20000 | xz | xz -d | tail -1"],
            hp_env(profile, 1, leaks=leaks, pidlog=log, extra=ALL_LEAKS))
    check(r.returncode == 0 and r.stdout == "20000\n", describe(r))
    exited = read_pidlog(log)
    check(r.pid in exited and len(exited) >= 5,
          f"expected bash ({r.pid}), seq, xz, xz and tail to exit normally: {exited}")
    others = [p for p in exited if p != r.pid]
    check_files(d, [profile, leaks] + [pid_name(profile, p) for p in others] +
                [pid_name(leaks, p) for p in others],
                f"(HEAPPROF_LEAKS=leaks.txt, a pipeline; processes {exited})")
    for pid, exe_path in exited.items():
        path = leaks if pid == r.pid else pid_name(leaks, pid)
        s = leak_file(path, f"{os.path.basename(exe_path)} {pid}")
        # Stripped programs' frames read `F in MODULE`: some stack of each
        # process passes through its own executable (main, _start).
        modules = {f["module"] for st in s["stacks"] for f in st["frames"]}
        check(not s["stacks"] or os.path.basename(exe_path) in modules,
              f"{os.path.basename(path)} is not {exe_path}'s summary (pid {pid}): its frames "
              f"are in {sorted(m for m in modules if m)}")


def check_leaks_pct():
    """%p in HEAPPROF_LEAKS expands to each process's pid (no second pid is
    added), %% to %."""
    d = helpers.tempdir()
    profile = os.path.join(helpers.tempdir(), "f.pb.gz")
    r = run([exe("rb_fork"), "fork", "2"],
            hp_env(profile, 1, leaks=os.path.join(d, "leaks-%p-100%%.txt"), extra=ALL_LEAKS))
    check(r.returncode == 0 and "FAIL" not in r.stdout, describe(r))
    who = roles(r.stdout)
    parent, children, grandchildren = who["parent"][0], who["child"], who["grandchild"]
    path = {p: os.path.join(d, f"leaks-{p}-100%.txt")
            for p in [parent] + children + grandchildren}
    check_files(d, path.values(), "(HEAPPROF_LEAKS=leaks-%p-100%%.txt)")
    s = leak_file(path[parent], f"the parent {parent}")
    check(leaked_by(s, "parent_leak") == (384, 4) and leaked_by(s, "child_leak") == (0, 0),
          f"the parent's summary: parent_leak {leaked_by(s, 'parent_leak')} (want 384 bytes "
          f"in 4 objects), child_leak {leaked_by(s, 'child_leak')} (want none)")
    for p in children + grandchildren:
        # The grandchild's heap also holds the first child's blocks.
        want = (480, 10) if p in grandchildren else (240, 5)
        s = leak_file(path[p], f"process {p}")
        check(leaked_by(s, "child_leak") == want,
              f"process {p}'s summary: child_leak {leaked_by(s, 'child_leak')}, want {want}")


def run_reading_fifo(argv, env, fifo):
    """Runs argv while reading the FIFO it writes to: returns the run and
    what came through the FIFO. A writer of our own keeps the reader from
    seeing end-of-file before the program opens the FIFO; the pipe buffer
    holds a whole leak summary."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        r = run(argv, env, timeout=30)
        os.close(keep)
        keep = None
        chunks = []
        while True:
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if keep is not None:
            os.close(keep)
        os.close(reader)
    return r, b"".join(chunks)


def check_leaks_in_place():
    """A leak path naming a descriptor (/dev/stderr, /proc/self/fd/2,
    /dev/fd/2), whatever it is open on, or a node that is not a regular file
    (a FIFO), is written in place by every process of the tree, without a pid
    added and without being replaced: one summary per process."""
    argv = [exe("rb_fork"), "exec"]

    def tree(leaks, d, stdout, text):
        """Checks a run of rb_fork exec whose profiles went to d and whose
        leak summaries should all be in text."""
        exited = read_pidlog(os.path.join(d, "pids.log"))
        check(len(exited) >= 3, f"HEAPPROF_LEAKS={leaks}: too few processes exited normally: "
              f"{exited}")
        n = summary_count(text)
        check(n == len(exited) and "cannot write" not in text,
              f"HEAPPROF_LEAKS={leaks}: {n} leak summaries there, want one from each of the "
              f"{len(exited)} processes that exited:\n{text[-3000:]}")
        root = roles(stdout)["parent"][0]
        profile = os.path.join(d, "e.pb.gz")
        check_files(d, [profile] + [pid_name(profile, p) for p in exited if p != root],
                    f"(HEAPPROF_LEAKS={leaks}: profiles only)")

    # /dev/stderr on a pipe. The real /dev is looked at: a build that added
    # a pid would leave /dev/stderr.PID files there (as root), removed here.
    before = set(os.listdir("/dev"))
    d = helpers.tempdir()
    r = run(argv, hp_env(os.path.join(d, "e.pb.gz"), 1, leaks="/dev/stderr",
                         pidlog=os.path.join(d, "pids.log")))
    junk = sorted(f for f in set(os.listdir("/dev")) - before if f.startswith("stderr"))
    for f in junk:
        os.unlink(os.path.join("/dev", f))
    check(not junk, f"HEAPPROF_LEAKS=/dev/stderr: files made in /dev (removed): {junk}")
    check(os.path.islink("/dev/stderr"), "/dev/stderr is no longer a symlink")
    check(r.returncode == 0, describe(r))
    tree("/dev/stderr", d, r.stdout, r.stderr)

    # Descriptor names on a regular file (2>file): appended to, never renamed
    # over; what the file held stays.
    for leaks in ("/proc/self/fd/2", "/dev/fd/2"):
        d = helpers.tempdir()
        err_path = os.path.join(helpers.tempdir(), "stderr.txt")
        with open(err_path, "w") as err:
            err.write("before\n")
            err.flush()
            try:
                p = subprocess.run(argv, env=hp_env(os.path.join(d, "e.pb.gz"), 1, leaks=leaks,
                                                    pidlog=os.path.join(d, "pids.log")),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                   timeout=60)
            except subprocess.TimeoutExpired:
                raise Failure(f"HEAPPROF_LEAKS={leaks}: hung")
        text = read_text(err_path, f"HEAPPROF_LEAKS={leaks}")
        check(p.returncode == 0, f"HEAPPROF_LEAKS={leaks}: exit status {p.returncode}:\n" + text)
        check(text.startswith("before\n"),
              f"HEAPPROF_LEAKS={leaks}: what stderr's file held was overwritten:\n{text[:1000]}")
        tree(leaks, d, p.stdout.decode(errors="replace"), text)

    # A FIFO: the reader gets every process's summary; it stays a FIFO.
    d = helpers.tempdir()
    fifo_dir = helpers.tempdir()
    fifo = os.path.join(fifo_dir, "leaks.fifo")
    os.mkfifo(fifo)
    r, data = run_reading_fifo(argv, hp_env(os.path.join(d, "e.pb.gz"), 1, leaks=fifo,
                                            pidlog=os.path.join(d, "pids.log")), fifo)
    check(r.returncode == 0, describe(r))
    check(stat.S_ISFIFO(os.lstat(fifo).st_mode), "HEAPPROF_LEAKS=FIFO: no longer a FIFO")
    check(os.listdir(fifo_dir) == ["leaks.fifo"],
          f"HEAPPROF_LEAKS=FIFO: files made beside it: {sorted(os.listdir(fifo_dir))}")
    tree("FIFO", d, r.stdout, data.decode(errors="replace") + r.stderr)


# ---- ways to exit ----------------------------------------------------------

_SUMMARY_START = re.compile(r"^heapprof: (\d+ bytes in \d+ objects never freed|no leaks?)")


def one_dump(r, d, what):
    """Exactly one profile and one leak summary (its first line is either
    `N bytes in M objects never freed...`, `no leaks...` or `no leak seen...`)."""
    files = sorted(os.listdir(d))
    check(files == ["e.pb.gz"], f"{what}: files {files}, want one profile e.pb.gz")
    helpers.decode_ok(os.path.join(d, "e.pb.gz"))
    starts = [line for line in r.stderr.splitlines() if _SUMMARY_START.match(line)]
    check(len(starts) == 1, f"{what}: {len(starts)} leak summaries on stderr, want one (one "
          f"dump):\n{r.stderr[-2000:]}")


def check_exit_late():
    """main returns while threads allocate; a library destructor that runs
    after the dump allocates, reallocs and frees sampled blocks."""
    base = baseline([exe("rb_exit"), "normal"])
    for rate in (1, None):
        d = helpers.tempdir()
        profile = os.path.join(d, "e.pb.gz")
        r = run([exe("rb_exit"), "normal"],
                hp_env(profile, rate, leaks=None, extra={"RB_PROFILE": profile}))
        same_output(base, r, f"rate {rate}")
        check("rb_late: destructor ran after the dump" in r.stderr,
              "the test's premise failed: rb_late's destructor did not run after heapprof's "
              "dump:\n" + r.stderr[-2000:])
        one_dump(r, d, f"rate {rate}")


def check_exit_thread():
    """exit() from a non-main thread while three others allocate."""
    base = baseline([exe("rb_exit"), "thread-exit", "7"])
    check(base.returncode == 7, "without heapprof: " + describe(base))
    for i, rate in enumerate([1, 1, 1, None, None]):
        d = helpers.tempdir()
        profile = os.path.join(d, "e.pb.gz")
        r = run([exe("rb_exit"), "thread-exit", "7"],
                hp_env(profile, rate, leaks=None, extra={"RB_PROFILE": profile}))
        same_output(base, r, f"run {i}")
        one_dump(r, d, f"run {i}")


def check_exit_atexit():
    """The dump comes after atexit handlers: what they free is not in use."""
    d = helpers.tempdir()
    profile = os.path.join(d, "e.pb.gz")
    base = baseline([exe("rb_exit"), "atexit"])
    r = run([exe("rb_exit"), "atexit"], hp_env(profile, 1, leaks=None,
                                              extra={"RB_PROFILE": profile}))
    same_output(base, r, "atexit")
    one_dump(r, d, "atexit")
    expect_values(profile, {"atexit_site": (3, 3000, 0, 0)})
    check("atexit_site" not in r.stderr, "atexit_site reported as leaked:\n" + r.stderr)


def check_exit_statics():
    """The dump comes after C++ static destructors, which allocate and free
    while they run."""
    d = helpers.tempdir()
    profile = os.path.join(d, "e.pb.gz")
    base = baseline([exe("rb_statics")])
    r = run([exe("rb_statics")], hp_env(profile, 1, leaks=None))
    same_output(base, r, "rb_statics")
    one_dump(r, d, "rb_statics")
    got = cum(profile).get("statics_fill")
    check(got is not None and got[0] > 0 and got[2:] == [0, 0],
          f"statics_fill: {got}; want blocks allocated and none in use (the static "
          "destructors freed them before the dump)")


def check_exit_nodump(mode):
    """_exit, quick_exit, abort, SIGSEGV, SIGKILL: no hang, no profile, no
    temporary file, the same exit status."""
    args = {"_exit": ["_exit", "4"], "quick_exit": ["quick_exit", "6"]}.get(mode, [mode])
    argv = [exe("rb_exit")] + args
    base = baseline(argv)
    for rate in (1, None):
        d = helpers.tempdir()
        profile = os.path.join(d, "e.pb.gz")
        r = run(argv, hp_env(profile, rate, leaks=None, extra={"RB_PROFILE": profile}),
                timeout=30)
        same_output(base, r, f"{mode}, rate {rate}")
        check(os.listdir(d) == [], f"{mode}: files written: {os.listdir(d)}")
        check(not hp_lines(r.stderr), f"{mode}: heapprof spoke:\n{r.stderr[-2000:]}")


def _run_until_signal(argv, env, signals):
    """Runs argv until it prints `waiting`, sends it each signal in turn
    (each after the last has been seen to take effect: for an ignored one,
    the next is sent at once), and returns (returncode, stdout, stderr)."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL)
    out = []
    for line in p.stdout:
        out.append(line)
        if line == "waiting\n":
            break
    for sig in signals:
        p.send_signal(sig)
    try:
        rest, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, err = p.communicate()
        raise Failure(f"{argv}: still running 60 s after {signals}:\n{err[-2000:]}")
    return p.returncode, "".join(out) + rest, err


def check_exit_signal(name):
    """SIGTERM, SIGINT or SIGHUP where the program left the default action:
    the exit profile and leak summary are written, the program sees the
    default action, and the process still dies of the signal."""
    sig = getattr(signal, name)
    argv = [exe("rb_exit"), "wait"]
    base = _run_until_signal(argv, clean_env(), [sig])
    check(base[0] == -sig, f"without heapprof: status {base[0]}")
    for rate in (1, None):
        d = helpers.tempdir()
        profile = os.path.join(d, "e.pb.gz")
        got = _run_until_signal(argv, hp_env(profile, rate, leaks=None,
                                             extra={"RB_PROFILE": profile}), [sig])
        check(got[0] == -sig, f"{name}, rate {rate}: status {got[0]}, want {-sig}:\n"
              f"{got[2][-2000:]}")
        check(got[1] == base[1], f"{name}: stdout differs:\n{got[1]}\nwithout heapprof:\n{base[1]}")
        r = subprocess.CompletedProcess(argv, got[0], got[1], got[2])
        one_dump(r, d, f"{name}, rate {rate}")


def check_exit_signal_own():
    """The program's own SIGTERM handler is left alone (it exits with its
    code, and the normal exit dump runs); a SIGTERM it ignores stays
    ignored (SIGINT then ends it, with the profile)."""
    argv = [exe("rb_exit"), "wait-own", "3"]
    base = _run_until_signal(argv, clean_env(), [signal.SIGTERM])
    check(base[0] == 3 and "handled" in base[1], f"without heapprof: {base}")
    d = helpers.tempdir()
    profile = os.path.join(d, "e.pb.gz")
    got = _run_until_signal(argv, hp_env(profile, 1, leaks=None,
                                         extra={"RB_PROFILE": profile}), [signal.SIGTERM])
    check(got[0] == 3 and got[1] == base[1], f"own handler: {got[0]}, {got[1]!r}, want "
          f"{base[0]}, {base[1]!r}:\n{got[2][-2000:]}")
    argv = [exe("rb_exit"), "wait-ignore"]
    base = _run_until_signal(argv, clean_env(), [signal.SIGTERM, signal.SIGINT])
    check(base[0] == -signal.SIGINT, f"without heapprof: {base}")
    d = helpers.tempdir()
    profile = os.path.join(d, "e.pb.gz")
    got = _run_until_signal(argv, hp_env(profile, 1, leaks=None,
                                         extra={"RB_PROFILE": profile}),
                            [signal.SIGTERM, signal.SIGINT])
    check(got[0] == -signal.SIGINT and got[1] == base[1],
          f"SIGTERM ignored: {got[0]}, {got[1]!r}:\n{got[2][-2000:]}")
    r = subprocess.CompletedProcess(argv, got[0], got[1], got[2])
    one_dump(r, d, "SIGTERM ignored, SIGINT")


# ---- threads ----------------------------------------------------------------

def check_threads():
    rounds, nthreads = 60, 8
    n = rounds * nthreads
    argv = [exe("rb_threads"), str(rounds), str(nthreads)]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    d = helpers.tempdir()
    profile = os.path.join(d, "t.pb.gz")
    leaks = os.path.join(d, "leaks.txt")
    r = run(argv, hp_env(profile, 1, leaks=leaks))
    same_output(base, r, "exact mode")
    expect_values(profile, {
        "thread_churn": (50 * n, 3200 * n, 0, 0),
        "thread_handoff": (8 * n, 2048 * n, 0, 0),
        "thread_grow": (9 * n, 8176 * n, 0, 0),
        "thread_leak": (n, 40 * n, n, 40 * n),
    })
    text = read_text(leaks, "HEAPPROF_LEAKS")
    summary = helpers.parse_leaks(text)
    objs = sum(s["objects"] for s in summary["stacks"]
               if any(fr["func"] == "thread_leak" for fr in s["frames"]))
    nbytes = sum(s["bytes"] for s in summary["stacks"]
                 if any(fr["func"] == "thread_leak" for fr in s["frames"]))
    check((objs, nbytes) == (n, 40 * n),
          f"leak summary: thread_leak {objs} objects / {nbytes} bytes, want {n} / {40 * n}:\n" +
          text)
    r = run(argv, hp_env(os.path.join(d, "t2.pb.gz")))
    same_output(base, r, "default rate")
    helpers.decode_ok(os.path.join(d, "t2.pb.gz"))


def check_bias():
    """A second thread's first use of the live set while the first thread
    is inside it (rb_bias): the first thread's bias must be revoked without
    losing an insert or a removal, run after run."""
    iters = 100000
    argv = [exe("rb_bias"), str(iters)]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    d = helpers.tempdir()
    for i in range(6):
        profile = os.path.join(d, f"b{i}.pb.gz")
        r = run(argv, hp_env(profile, 1))
        same_output(base, r, f"exact mode, run {i + 1}")
        expect_values(profile, {
            "bias_main": (iters, 48 * iters, 0, 0),
            "bias_worker": (2 * iters, 160 * iters, 0, 0),
            "bias_leak": (3, 72, 3, 72),
        })


def check_flag_race():
    """Sampled blocks without a header, allocated and freed at once on four
    threads at a small rate (rb_flagrace): every free is seen, so nothing
    is in use at exit and nothing is reported lost, run after run. Before
    the fix in block_set_add, 4 runs in 6 left some in use, and one in 4
    reported them lost."""
    argv = [exe("rb_flagrace"), "200000", "4"]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    d = helpers.tempdir()
    for i in range(6):
        profile = os.path.join(d, f"f{i}.pb.gz")
        leaks = os.path.join(d, f"leaks{i}.txt")
        r = run(argv, hp_env(profile, 512, leaks=leaks))
        same_output(base, r, f"run {i + 1}")
        got = cum(profile).get("flag_race_site")
        check(got is not None and got[0] > 0, f"run {i + 1}: no sample of flag_race_site: {got}")
        check(got[2:] == [0, 0],
              f"run {i + 1}: flag_race_site has {got[2]} objects ({got[3]} bytes) in use at "
              f"exit, all freed: frees were missed")
        text = read_text(leaks, "HEAPPROF_LEAKS")
        check("flag_race_site" not in text, f"run {i + 1}: freed blocks reported lost:\n{text}")


# ---- dlopen / dlclose -----------------------------------------------------------

def check_thread_exit():
    """Allocations made by a thread as it exits (its thread-specific data
    destructors) are all counted, in exact mode, however many threads come
    and go."""
    n, per = 60, 5000
    d = helpers.tempdir()
    profile = os.path.join(d, "k.pb.gz")
    r = run([exe("rb_keydtor"), str(n), str(per)], hp_env(profile, 1))
    check(r.returncode == 0 and f"dtor_site {n * per}" in r.stdout, describe(r))
    got = cum(profile).get("dtor_site")
    want = [n * per, n * per * 32, 0, 0]
    check(got == want, f"dtor_site: profile says {got}, the program made {want}")
    print(f"thread-exit: {n} threads, dtor_site {got}")


def check_dlopen(mode):
    """A dlopen'ed library's leaking function keeps its name in the profile
    and the leak summary after the library is dlclosed; with `reuse`, a
    second library loaded at the same place afterwards keeps its own; with
    `relative`, a library loaded as ./NAME keeps its names although the
    program changes directory before exit (the file is read at the dump)."""
    d = helpers.tempdir()
    profile = os.path.join(d, "d.pb.gz")
    leaks = os.path.join(d, "leaks.txt")
    cwd = None
    lib = plugin()
    if mode == "relative":
        cwd = os.path.dirname(lib)
        lib = "./" + os.path.basename(lib)
    argv = [exe("rb_dlopen"), lib, "keep" if mode == "keep" else "close"]
    want = {"plugin_leak": (5, 2832)}
    if mode == "reuse":
        argv.append(helpers.env_path("RB_PLUGIN2"))
        want["other_leak"] = (4, 2724)
    extra = {"RB_CHDIR": "/"} if mode == "relative" else None
    base = run(argv, clean_env() | (extra or {}), cwd=cwd)
    r = run(argv, hp_env(profile, 1, leaks=leaks, extra=extra), cwd=cwd)
    same_output(base, r, mode)
    if mode != "keep":
        check("unloaded yes" in r.stdout,
              "the test's premise failed: the loader kept the library after dlclose")
    if mode == "reuse" and "same base yes" not in r.stdout:
        print("note: the second library was not loaded where the first had been")
    text = read_text(leaks, "HEAPPROF_LEAKS")
    summary = helpers.parse_leaks(text)
    # The leaks made through rb_dlopen's call(), by their leaf frame.
    got_summary = {}
    for s in summary["stacks"]:
        if any(fr["func"] == "call" for fr in s["frames"]):
            leaf = s["frames"][0]["func"] or s["frames"][0]["module"]
            objs, nbytes = got_summary.get(leaf, (0, 0))
            got_summary[leaf] = (objs + s["objects"], nbytes + s["bytes"])
    table = cum(profile)
    problems = []
    for fn, (objs, nbytes) in want.items():
        got = table.get(fn)
        if got != [objs, nbytes, objs, nbytes]:
            problems.append(f"profile: {fn} {got}, want {[objs, nbytes, objs, nbytes]}")
    if problems:
        # Name the frames that stand where the plugins' functions should.
        doc = helpers.decode_json(profile)
        where = sorted({loc["lines"][0]["function"] if loc["lines"] else hex(loc["address"])
                        for s in doc["samples"] if s["values"][2]
                        for loc, caller in zip(s["stack"], s["stack"][1:])
                        if any(ln["function"] == "call" for ln in caller["lines"])})
        problems.append(f"profile: the in-use frames called from call(): {where}")
    if got_summary != want:
        problems.append(f"leak summary: leaks through call() by leaf frame {got_summary}, "
                        f"want {want}")
    check(not problems, f"rb_dlopen {mode}:\n" + "\n".join(problems) +
          "\n--- leak summary ---\n" + text)


# ---- bad input -----------------------------------------------------------------

def hello_baseline():
    base = baseline([exe("rb_alloc"), "hello", "3"])
    check(base.returncode == 3, "without heapprof: " + describe(base))
    return base


def bad_values(var, values, default_text, good, period=None):
    """Each bad value: exactly one heapprof: line naming the variable and
    the default used; the program's output and exit status unchanged; the
    profile still written. A good value: silence. HEAPPROF unset: nothing
    written, and at most the line saying the variable has no effect."""
    base = hello_baseline()
    d = helpers.tempdir()
    problems = []
    # The leak summary to a file: with HEAPPROF_LEAKS=off the leak
    # summary's variables have no effect, which is a line of its own.
    leaks = os.path.join(d, "leaks.txt")
    for i, value in enumerate(values):
        profile = os.path.join(d, f"bad{i}.pb.gz")
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(profile, leaks=leaks, extra={var: value}))
        same_output(base, r, f"{var}={value!r}")
        lines = hp_lines(r.stderr)
        if len(lines) != 1:
            problems.append(f"{var}={value!r}: {len(lines)} heapprof lines, want 1: {lines}")
        elif var not in lines[0] or default_text not in lines[0]:
            problems.append(f"{var}={value!r}: the line does not name {var} and the default "
                            f"({default_text!r}): {lines[0]}")
        check(not_hp(r.stderr) == not_hp(base.stderr), f"{var}={value!r}: other stderr:\n" +
              r.stderr)
        if not os.path.exists(profile):
            problems.append(f"{var}={value!r}: no profile written")
            continue
        if period is not None:
            got = helpers.decode_json(profile)["period"]
            if got != period:
                problems.append(f"{var}={value!r}: period {got}, want the default {period}")
    check(not problems, "\n".join(problems))

    profile = os.path.join(d, "good.pb.gz")
    r = run([exe("rb_alloc"), "hello", "3"], hp_env(profile, leaks=leaks, extra={var: good}))
    same_output(base, r, f"{var}={good!r}")
    check(not hp_lines(r.stderr), f"{var}={good!r} (valid) drew: {hp_lines(r.stderr)}")
    helpers.decode_ok(profile)

    env = hp_env(None, extra={var: values[0]})
    cwd = os.path.join(d, "unset")
    os.makedirs(cwd)
    r = run([exe("rb_alloc"), "hello", "3"], env, cwd=cwd)
    same_output(base, r, f"HEAPPROF unset, {var}={values[0]!r}")
    lines = hp_lines(r.stderr)
    check(not_hp(r.stderr) == not_hp(base.stderr) and not os.listdir(cwd) and
          all(f"heapprof: {var} has no effect without HEAPPROF" in ln for ln in lines) and
          len(lines) <= 1,
          f"HEAPPROF unset: heapprof wrote or said more than that {var} has no effect: "
          f"{r.stderr!r} {os.listdir(cwd)}")


def check_bad_rate():
    bad_values("HEAPPROF_RATE", ["abc", "-5", "0", "99999999999999999999", "",
                                 str((1 << 40) + 1), "0x10", "12abc", "1.5"],
               str(DEFAULT_RATE), "4096", period=DEFAULT_RATE)


def check_bad_seed():
    bad_values("HEAPPROF_SEED", ["abc", "-1", "", "99999999999999999999999", "1.5"],
               "random seed", "12345")


def check_bad_leak_stacks():
    bad_values("HEAPPROF_LEAK_STACKS", ["abc", "-1", "", "100001", "99999999999999999999"],
               "using 10", "3")


def check_bad_other():
    bad_values("HEAPPROF_LEAK_FRAMES", ["0", "abc", "65", ""], "using 8", "4")
    bad_values("HEAPPROF_LEAKS_EXIT_CODE", ["256", "-1", "x"], "using 0", "0")


def check_leak_frames():
    """A stack cut at HEAPPROF_LEAK_FRAMES says how many frames it left out:
    with 2 shown, the rest of what 64 shows."""
    d = helpers.tempdir()
    texts = {}
    for frames in (2, 64):
        leaks = os.path.join(d, f"leaks{frames}.txt")
        r = run([exe("rb_alloc"), "hello", "3"],
                hp_env(os.path.join(d, f"f{frames}.pb.gz"), 1, leaks=leaks,
                       extra={"HEAPPROF_LEAK_FRAMES": str(frames)}))
        check(r.returncode == 3, describe(r))
        texts[frames] = helpers.parse_leaks(read_text(leaks, "the leak summary"))["stacks"]
    check(texts[2] and len(texts[2]) == len(texts[64]),
          f"leak summaries differ in their stacks: {len(texts[2])} and {len(texts[64])}")
    for cut, full in zip(texts[2], texts[64]):
        whole = len(full["frames"])
        check(len(cut["frames"]) == min(2, whole) and
              cut["frames_left_out"] == whole - len(cut["frames"]) and
              full["frames_left_out"] == 0,
              f"a stack of {whole} frames cut at 2 says {cut['frames_left_out']} left out")
    print(f"leak-frames: {len(texts[2])} stacks, each says how many frames it left out")


def check_run_as():
    """A program run through a symlink (redis-server is a link to
    redis-check-rdb) is named by the link in the profile, whether run by its
    path or found on PATH; its functions still come from the real file."""
    d = helpers.tempdir()
    bindir = os.path.join(d, "bin")
    os.makedirs(bindir)
    link = os.path.join(bindir, "mylink")
    os.symlink(exe("rb_alloc"), link)
    for how, argv, extra in (("by path", [link, "hello", "3"], {}),
                             ("on PATH", ["mylink", "hello", "3"],
                              {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")})):
        profile = os.path.join(d, "r.pb.gz")
        r = run(argv, hp_env(profile, 1, extra=extra))
        check(r.returncode == 3, f"{how}: " + describe(r))
        doc = helpers.decode_json(profile)
        first = doc["mappings"][0]["file"]
        check(first == link, f"{how}: the main mapping is named {first}, want {link}")
        names = {ln["function"] for s in doc["samples"] for loc in s["stack"]
                 for ln in loc["lines"]}
        check("main" in names, f"{how}: the program's functions are not named: {sorted(names)}")
        os.remove(profile)
    print(f"run-as: named {link} by path and on PATH")


def check_spellings():
    """Booleans as users type them (1/0, yes/no, true/false, on/off, any
    case), HEAPPROF_LEAKS=off in any case, signal names with or without SIG
    in any case: accepted without a word; anything else named once."""
    bad_values("HEAPPROF_DEBUGINFO", ["2", "maybe", "y", "onn"], "using 0", "yes")
    base = hello_baseline()
    d = helpers.tempdir()
    problems = []
    for i, value in enumerate(["1", "Yes", "TRUE", "on", "0", "no", "False", "OFF"]):
        profile = os.path.join(d, f"p{i}.pb.gz")
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(profile, 1, extra={"HEAPPROF_PEAK": value}))
        same_output(base, r, f"HEAPPROF_PEAK={value}")
        peak = os.path.exists(os.path.join(d, f"p{i}.peak.pb.gz"))
        want = value.lower() in ("1", "yes", "true", "on")
        if hp_lines(r.stderr) or peak != want:
            problems.append(f"HEAPPROF_PEAK={value}: lines {hp_lines(r.stderr)}, peak profile "
                            f"{'written' if peak else 'not written'}")
    for value in ("off", "OFF", "Off"):
        r = run([exe("rb_alloc"), "hello", "3"],
                hp_env(os.path.join(d, "l.pb.gz"), leaks=None, extra={"HEAPPROF_LEAKS": value}))
        if hp_lines(r.stderr):
            problems.append(f"HEAPPROF_LEAKS={value}: {hp_lines(r.stderr)}")
    for value in ("USR2", "usr2", "SIGUSR2", "sigusr2", "SigUsr2"):
        r = run([exe("rb_alloc"), "hello", "3"],
                hp_env(os.path.join(d, "s.pb.gz"), extra={"HEAPPROF_SIGNAL": value}))
        if hp_lines(r.stderr):
            problems.append(f"HEAPPROF_SIGNAL={value}: {hp_lines(r.stderr)}")
    check(not problems, "\n".join(problems))
    print("spellings: booleans, HEAPPROF_LEAKS=off and signal names in any case")


def check_bad_max_memory():
    """HEAPPROF_MAX_MEMORY: bytes or K, M, G, from 4M to 1024G; anything
    else draws one line and the default, 64M, is used (not the nearest
    bound: a bad value below 4M does not make the table fold at 4M)."""
    bad_values("HEAPPROF_MAX_MEMORY",
               ["abc", "-1", "1K", "5T", "", "0", "3M", str((4 << 20) - 1), "1025G",
                "99999999999999999999", "12abc", "1.5M", "4MB", "0x400000"],
               "using 64M", "8M")
    base = hello_baseline()
    d = helpers.tempdir()
    for value in ("4M", str(4 << 20), "4096K", "1G", "1024G"):
        r = run([exe("rb_alloc"), "hello", "3"],
                hp_env(os.path.join(d, "good.pb.gz"), extra={"HEAPPROF_MAX_MEMORY": value}))
        same_output(base, r, f"HEAPPROF_MAX_MEMORY={value!r}")
        check(not hp_lines(r.stderr),
              f"HEAPPROF_MAX_MEMORY={value!r} (valid) drew: {hp_lines(r.stderr)}")
    # The default really is what a bad value gets: at a depth where 4M folds
    # and 64M does not, 1K (below the minimum) must not fold.
    argv = [exe("rb_bounded"), "stacks", str(STACKS_DEPTH)]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    profile = os.path.join(d, "stacks.pb.gz")
    r = run(argv, hp_env(profile, 1, extra={"HEAPPROF_MAX_MEMORY": "1K"}), timeout=60)
    same_output(base, r, "HEAPPROF_MAX_MEMORY='1K', rb_bounded stacks")
    lines = hp_lines(r.stderr)
    check(len(lines) == 1 and "HEAPPROF_MAX_MEMORY" in lines[0] and OTHER not in lines[0],
          f"HEAPPROF_MAX_MEMORY='1K', rb_bounded stacks {STACKS_DEPTH}: want only the line "
          f"about the bad value (64M is enough at this depth), got {lines}")
    check(OTHER not in cum(profile),
          "HEAPPROF_MAX_MEMORY='1K' folded stacks into [other]: the bad value was not "
          "replaced by the default 64M")


def expect_one_line(r, base, what, mention):
    same_output(base, r, what)
    lines = hp_lines(r.stderr)
    check(len(lines) == 1 and mention in lines[0],
          f"{what}: want one heapprof line naming {mention}, got {lines}")


def check_unwritable():
    base = hello_baseline()
    # A path under a non-directory, and one in /proc (root may pass access()
    # there; the failure then comes at exit).
    for path, mention in (("/dev/null/x.pb.gz", "/dev/null"),
                          ("/proc/heapprof-robust.pb.gz", "/proc"),
                          ("/proc/self/heapprof.pb.gz", "/proc")):
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(path))
        expect_one_line(r, base, f"HEAPPROF={path}", mention)
    d = helpers.tempdir()
    r = run([exe("rb_alloc"), "hello", "3"], hp_env(d + "/"))
    expect_one_line(r, base, "HEAPPROF names a directory", "HEAPPROF")
    check(os.listdir(d) == [], f"files written in {d}: {os.listdir(d)}")

    # A read-only directory: root writes anywhere, so drop to nobody.
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        print("note: not root or no setpriv: the read-only directory case is not run")
        return
    os.chmod(d, 0o755)
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = run(drop + [exe("rb_alloc"), "hello", "3"], clean_env())
    if probe.returncode != 3:
        print("note: nobody cannot run the helpers here (build directory not readable?): "
              "the read-only directory case is not run")
        return
    lib_copy = os.path.join(d, "lib")
    os.makedirs(lib_copy)
    shutil.copy(helpers.lib_path(), lib_copy)
    # The reporting half is loaded from beside the library.
    lib_dir = os.path.dirname(os.path.realpath(helpers.lib_path()))
    for name in os.listdir(lib_dir):
        if name.startswith("libheapprof-report.so.") and not name.endswith(".p"):
            shutil.copy(os.path.join(lib_dir, name), lib_copy)
    os.chmod(lib_copy, 0o755)
    env = hp_env(os.path.join(d, "x.pb.gz"))
    env["LD_PRELOAD"] = os.path.join(lib_copy, os.path.basename(helpers.lib_path()))
    r = run(drop + [exe("rb_alloc"), "hello", "3"], env)
    expect_one_line(r, probe, "read-only directory (as nobody)", d)
    check(os.listdir(d) == ["lib"], f"files written in the read-only {d}: {os.listdir(d)}")


def check_missing_dir():
    base = hello_baseline()
    d = helpers.tempdir()
    missing = os.path.join(d, "nope")
    r = run([exe("rb_alloc"), "hello", "3"], hp_env(os.path.join(missing, "x.pb.gz")))
    expect_one_line(r, base, "missing directory", missing)
    check(os.listdir(d) == [], f"files written: {os.listdir(d)}")


def check_full_disk_tmpfs():
    """A full file system at exit: one line, no partial or temporary file,
    the exit status unchanged. Needs a private mount namespace."""
    base = hello_baseline()
    unshare = shutil.which("unshare")
    if not unshare:
        helpers.skip("unshare (util-linux) is not installed")
    d = helpers.tempdir()
    disk = os.path.join(d, "disk")
    os.makedirs(disk)
    probe = run([unshare, "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{disk}'"],
                clean_env())
    if probe.returncode != 0:
        helpers.skip("cannot mount a tmpfs in a private mount namespace: " +
                     (probe.stderr.strip().splitlines() or ["?"])[0])
    listing = os.path.join(d, "listing")
    profile = os.path.join(disk, "x.pb.gz")
    # Fill the tmpfs, run the program, list what is left, keep its status.
    for rate in (1, None):
        # Only the program runs under heapprof, and its parent (the shell)
        # does not have HEAPPROF, so it writes the name given, not NAME.PID.
        env = hp_env(profile, rate)
        assign = " ".join(f"{k}='{env[k]}'" for k in sorted(env)
                          if k.startswith("HEAPPROF") or k == "LD_PRELOAD")
        script = (f"mount -t tmpfs -o size=64k tmpfs '{disk}' || exit 90; "
                  f"cat /dev/zero > '{disk}/fill' 2>/dev/null; "
                  f"env {assign} '{exe('rb_alloc')}' hello 3; rc=$?; "
                  f"ls -A '{disk}' > '{listing}'; exit $rc")
        r = run([unshare, "-m", "sh", "-c", script], clean_env())
        expect_one_line(r, base, f"full disk, rate {rate}", profile)
        with open(listing) as f:
            left = f.read().split()
        check(left == ["fill"], f"full disk: files left {left}, want only the filler")


def check_full_disk_fsize():
    """A file-size limit at exit: writing the profile must fail with EFBIG,
    not kill the program with SIGXFSZ; one line, no file left."""
    base = hello_baseline()
    d = helpers.tempdir()
    profile = os.path.join(d, "x.pb.gz")
    for rate in (1, None):
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(profile, rate), fsize=256)
        if r.returncode == -signal.SIGXFSZ:
            raise Failure(f"rate {rate}: killed by SIGXFSZ while writing the profile under "
                          f"RLIMIT_FSIZE=256; files left: {os.listdir(d)}")
        expect_one_line(r, base, f"RLIMIT_FSIZE, rate {rate}", profile)
        check(os.listdir(d) == [], f"files left: {os.listdir(d)}")


def check_alloc_failures():
    """Failing calls fail as they do without heapprof: same results, same
    errno, blocks intact."""
    argv = [exe("rb_alloc"), "failures"]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    d = helpers.tempdir()
    runs = [("preload, exact", argv, hp_env(os.path.join(d, "a.pb.gz"), 1)),
            ("preload, default rate", argv, hp_env(os.path.join(d, "b.pb.gz"))),
            # Nearly every block sampled, so with a header (src/interpose/alloc.c).
            ("preload, rate 2", argv, hp_env(os.path.join(d, "e.pb.gz"), 2)),
            ("linked, exact", [exe("rb_alloc_linked"), "failures"],
             hp_env(os.path.join(d, "c.pb.gz"), 1, preload=False))]
    for what, args, env in runs:
        r = run(args, env)
        if r.stdout != base.stdout:
            diff = [f"  without: {a}\n  with:    {b}"
                    for a, b in zip(base.stdout.splitlines(), r.stdout.splitlines()) if a != b]
            raise Failure(f"{what}: results differ from glibc's alone:\n" + "\n".join(diff) +
                          "\n" + describe(r))
        same_output(base, r, what)
    for name in ("a.pb.gz", "b.pb.gz", "c.pb.gz", "e.pb.gz"):
        helpers.decode_ok(os.path.join(d, name))


def allocator_libs():
    """The other allocators installed here, by name."""
    return {name: path for name in helpers.ALLOCATORS
            if (path := helpers.allocator_lib(name))}


def check_cxx_new():
    """C++ new and delete in every form, failures included (bad_alloc, nothrow
    null, the new_handler), behave as without heapprof, over glibc and over
    jemalloc and mimalloc (which define operators of their own); the exact
    profile counts the aligned and nothrow forms at their site."""
    argv = [exe("rb_newfail")]
    base = baseline(argv)
    check(base.returncode == 0 and "done" in base.stdout, "without heapprof: " + describe(base))
    d = helpers.tempdir()
    runs = [("glibc", None)] + sorted(allocator_libs().items())
    for name, lib in runs:
        profile = os.path.join(d, name + ".pb.gz")
        env = hp_env(profile, 1)
        if lib:
            # The allocator's own operators decide what a failure does
            # (mimalloc's abort when no new_handler is set, as it cannot
            # throw from C): heapprof over it must do the same.
            base = run(argv, dict(clean_env(), LD_PRELOAD=lib))
            env["LD_PRELOAD"] = env["LD_PRELOAD"] + " " + lib
        r = run(argv, env)
        check(r.returncode == base.returncode and r.stdout == base.stdout,
              f"over {name}: the program behaves differently with heapprof\n--- without:\n"
              + describe(base) + "\n--- with:\n" + describe(r))
        if base.returncode != 0:
            print(f"note: rb_newfail ends with status {base.returncode} over {name} alone, and "
                  "the same with heapprof; no profile to check")
            continue
        got = cum(profile).get("new_sites")
        # 1000 + 640 + 200 + 4096 + 100 + 192 bytes in 6 objects, all live.
        want = [6, 6228, 6, 6228]
        check(got == want, f"over {name}: new_sites {got} in the profile, want {want}")
    missing = set(helpers.ALLOCATORS) - set(allocator_libs())
    if missing:
        print("note: not run over " + ", ".join(sorted(missing)) + " (not installed)")


def check_heads_churn():
    """Sampled objects carry a header (src/interpose/alloc.c): every entry
    point on them (realloc growing, shrinking and to 0, malloc_usable_size,
    calloc's zeros, frees from another thread, the aligned family beside
    them) behaves as without heapprof, over glibc, jemalloc and mimalloc, at
    rate 2 (every block of 16 bytes or more sampled), 4096 (blocks going
    from sampled to not in a realloc and back) and the default; at rate 2
    heads_keep's 100 kept blocks are in the profile at their true sizes."""
    argv = [exe("rb_heads"), "churn"]
    d = helpers.tempdir()
    for name, lib in [("glibc", None)] + sorted(allocator_libs().items()):
        base_env = clean_env()
        if lib:
            base_env["LD_PRELOAD"] = lib
        base = run(argv, base_env, timeout=120)
        check(base.returncode == 0, f"without heapprof, over {name}: " + describe(base))
        kept = re.search(r"^kept 100 (\d+)$", base.stdout, re.M)
        check(kept, "rb_heads printed no kept line: " + describe(base))
        for rate in (2, 4096, None):
            profile = os.path.join(d, f"{name}-{rate}.pb.gz")
            env = hp_env(profile, rate)
            if lib:
                env["LD_PRELOAD"] = env["LD_PRELOAD"] + " " + lib
            r = run(argv, env, timeout=120)
            same_output(base, r, f"over {name}, rate {rate}")
            helpers.decode_ok(profile)
            if rate == 2:
                got = cum(profile).get("heads_keep")
                want = int(kept.group(1))
                check(got and got[0] == 100 and got[2] == 100 and
                      abs(got[1] - want) <= want // 200 and abs(got[3] - want) <= want // 200,
                      f"over {name}, rate 2: heads_keep {got} in the profile, want about "
                      f"[100, {want}, 100, {want}]")
    missing = set(helpers.ALLOCATORS) - set(allocator_libs())
    if missing:
        print("note: not run over " + ", ".join(sorted(missing)) + " (not installed)")


def check_heads_deepbind():
    """A library dlopened with RTLD_DEEPBIND binds free and realloc to
    glibc's, not heapprof's: heapprof points its slots back at its own, so
    that the library can realloc and free sampled blocks with a header made
    before the dlopen (each would be an invalid pointer to glibc), and makes
    no more headers after it. At the default rate and at rate 2."""
    argv = [exe("rb_heads"), "deepbind", os.environ["RB_DEEP"]]
    base = baseline(argv)
    check(base.returncode == 0 and base.stdout == "freed\n", "without heapprof: " + describe(base))
    d = helpers.tempdir()
    for rate in (2, None):
        profile = os.path.join(d, f"deep-{rate}.pb.gz")
        r = run(argv, hp_env(profile, rate))
        same_output(base, r, f"rate {rate}")
        helpers.decode_ok(profile)


def source_lines(path, *marks):
    """{mark: line number} of the lines of a source file that end with the
    comment /* MARK */."""
    found = {}
    with open(path) as f:
        for no, text in enumerate(f, 1):
            m = re.search(r"/\* ([A-Z_]+) \*/\s*$", text)
            if m and m.group(1) in marks:
                found[m.group(1)] = no
    check(set(found) == set(marks), f"{path}: markers {sorted(set(marks) - set(found))} not found")
    return found


def addr2line_frames(binary, mapping, address):
    """[(function, line)] that binutils' addr2line -i reads at a profile's
    location (inlined calls first), or None without addr2line."""
    tool = shutil.which("addr2line")
    if not tool:
        print("note: addr2line (binutils) is not installed: not compared with it")
        return None
    loads = run(["readelf", "-lW", binary], clean_env())
    check(loads.returncode == 0, "readelf -lW: " + describe(loads))
    off = address - mapping["start"] + mapping["offset"]
    vaddr = None
    for m in re.finditer(r"^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+\S+\s+0x([0-9a-f]+)",
                         loads.stdout, re.M):
        p_off, p_vaddr, p_filesz = (int(g, 16) for g in m.groups())
        if p_off <= off < p_off + p_filesz:
            vaddr = off - p_off + p_vaddr
    check(vaddr is not None, f"{binary}: no LOAD segment holds offset {off:#x}")
    r = run([tool, "-i", "-f", "-e", binary, f"{vaddr:#x}"], clean_env())
    check(r.returncode == 0, "addr2line: " + describe(r))
    out = r.stdout.splitlines()
    frames = []
    for fn, where in zip(out[0::2], out[1::2]):
        m = re.search(r":(\d+)", where)
        frames.append((fn, int(m.group(1)) if m else 0))
    return frames


def check_inline_frames():
    """A program built with -O2 -g: each allocation's location lists its
    inlined calls innermost first, names and lines as the source marks them
    (rb_inline.c), through two inlined copies of the same function, lexical
    blocks between them, and a call in the cold part of a function split in
    two (DW_AT_ranges); and as binutils' addr2line -i reads the same
    address."""
    binary = exe("rb_inline")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rb_inline.c")
    line = source_lines(src, "GRAB", "PAIR", "CALL_A", "CALL_B", "CALL_R")
    base = baseline([binary])
    check(base.returncode == 0 and base.stdout.startswith("rb_inline: 51 blocks kept"),
          "without heapprof: " + describe(base))
    d = helpers.tempdir()
    profile = os.path.join(d, "inline.pb.gz")
    r = run([binary], hp_env(profile, 1))
    same_output(base, r, "rate 1")
    prof = helpers.decode_json(profile)
    maps = {m["id"]: m for m in prof["mappings"]}
    want = {
        40: (24, [("grab", line["GRAB"]), ("pair", line["PAIR"]), ("site", line["CALL_A"])]),
        72: (24, [("grab", line["GRAB"]), ("pair", line["PAIR"]), ("site", line["CALL_B"])]),
        520: (3, [("grab", line["GRAB"]), ("rare", line["CALL_R"])]),
    }
    seen = set()
    for s in prof["samples"]:
        size = s["labels"].get("bytes")
        if size not in want or s["values"][0] == 0 or not s["stack"]:
            continue
        count, frames = want[size]
        loc = s["stack"][0]
        got = [(l["function"].split(".")[0], l["line"]) for l in loc["lines"]]
        check(s["values"][0] == count and got == frames,
              f"blocks of {size} bytes: {s['values'][0]} objects at {got}, want {count} at "
              f"{frames}")
        check(all(l["file"].endswith("rb_inline.c") for l in loc["lines"]),
              f"blocks of {size} bytes: files {[l['file'] for l in loc['lines']]}")
        ref = addr2line_frames(binary, maps[loc["mapping"]], loc["address"])
        if ref is not None:
            ref = [(fn.split(".")[0], no) for fn, no in ref]
            check(ref == got, f"blocks of {size} bytes: heapprof says {got}, addr2line -i {ref}")
        seen.add(size)
    check(seen == set(want), f"no sample for blocks of {sorted(set(want) - seen)} bytes")


# ---- security -----------------------------------------------------------------

def check_symlink():
    """A symlink planted at the output path is replaced, never followed."""
    base = hello_baseline()
    d = helpers.tempdir()
    target = os.path.join(d, "target.txt")
    with open(target, "w") as f:
        f.write("precious\n")
    os.makedirs(os.path.join(d, "sub"))
    dangling_target = os.path.join(d, "sub", "created.pb.gz")
    cases = [("prof.pb.gz", target), ("dang.pb.gz", dangling_target)]
    for name, to in cases:
        path = os.path.join(d, name)
        os.symlink(to, path)
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(path, 1))
        same_output(base, r, f"symlink {name}")
        check(not os.path.islink(path) and os.path.isfile(path),
              f"{name}: still a symlink after the run (the profile went through it)")
        helpers.decode_ok(path)
    with open(target) as f:
        check(f.read() == "precious\n", "the symlink's target was overwritten")
    check(not os.path.exists(dangling_target), "the dangling symlink's target was created")
    check(not temp_files(d), f"temporary files left: {temp_files(d)}")


def check_special_files():
    """Output paths that are not regular files (HEAPPROF_LEAKS=/dev/null, a
    FIFO a reader waits on, a device given as HEAPPROF) are written in place
    or refused, never replaced by a regular file: as root, replacing
    /dev/null breaks the whole machine. Uses nodes made in a temporary
    directory, never the real /dev."""
    base = hello_baseline()
    d = helpers.tempdir()
    problems = []

    def node_ok(path, kind, what):
        st = os.lstat(path) if os.path.lexists(path) else None
        if st is None or not kind(st.st_mode):
            problems.append(f"{what}: {os.path.basename(path)} is no longer a "
                            f"{'FIFO' if kind is stat.S_ISFIFO else 'device'}; now "
                            f"{'gone' if st is None else oct(st.st_mode)}")

    # A FIFO as HEAPPROF_LEAKS: the reader must get the summary.
    fifo = os.path.join(d, "leaks.fifo")
    os.mkfifo(fifo)
    r, data = run_reading_fifo([exe("rb_alloc"), "hello", "3"],
                               hp_env(os.path.join(d, "a.pb.gz"), 1, leaks=fifo), fifo)
    same_output(base, r, "HEAPPROF_LEAKS=FIFO")
    node_ok(fifo, stat.S_ISFIFO, "HEAPPROF_LEAKS=FIFO")
    if b"heapprof: " not in data:
        problems.append("HEAPPROF_LEAKS=FIFO: the reader got no leak summary")

    # Character devices (1, 3 is what /dev/null is), if this machine lets us
    # make one.
    try:
        for name in ("null-leaks", "null-profile"):
            os.mknod(os.path.join(d, name), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError as e:
        print(f"note: cannot make a device node here ({e}); only the FIFO case ran")
    else:
        dev = os.path.join(d, "null-leaks")
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(os.path.join(d, "b.pb.gz"), 1,
                                                        leaks=dev))
        same_output(base, r, "HEAPPROF_LEAKS=device")
        node_ok(dev, stat.S_ISCHR, "HEAPPROF_LEAKS=<a node like /dev/null>")
        dev = os.path.join(d, "null-profile")
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(dev, 1))
        same_output(base, r, "HEAPPROF=device")
        node_ok(dev, stat.S_ISCHR, "HEAPPROF=<a node like /dev/null>")
        if len(hp_lines(r.stderr)) > 1:
            problems.append(f"HEAPPROF=device: more than one line: {hp_lines(r.stderr)}")
    if temp_files(d):
        problems.append(f"temporary files left: {temp_files(d)}")
    check(not problems, "\n".join(problems))


def check_setuid():
    """secure_getenv: a setuid-root program run by nobody ignores HEAPPROF."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        helpers.skip("needs root to make a setuid-root copy")
    if not setpriv:
        helpers.skip("setpriv (util-linux) is not installed")
    d = helpers.tempdir()
    os.chmod(d, 0o755)
    out = os.path.join(d, "out")
    os.makedirs(out)
    os.chmod(out, 0o777)
    # nobody may not read the build directory: give the control run a copy of
    # the library. The setuid run loads it as root through the absolute rpath.
    lib_dir = os.path.join(d, "lib")
    os.makedirs(lib_dir)
    src_dir = os.path.dirname(helpers.lib_path())
    for name in os.listdir(src_dir):
        if (name.startswith("libheapprof.so") or name.startswith("libheapprof-report.so")) \
                and os.path.isfile(os.path.join(src_dir, name)):
            shutil.copy(os.path.join(src_dir, name), os.path.join(lib_dir, name))
    os.chmod(lib_dir, 0o755)
    plain = os.path.join(d, "plain")
    suid = os.path.join(d, "suid")
    for path, mode in ((plain, 0o755), (suid, 0o4755)):
        shutil.copy(exe("rb_alloc_linked"), path)
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

    env = hp_env(os.path.join(out, "plain.pb.gz"), preload=False,
                 extra={"LD_LIBRARY_PATH": lib_dir})
    control = run(drop + [plain, "hello", "3"], env)
    if control.returncode != 3 or "heapprof on" not in control.stdout or \
            not os.path.exists(os.path.join(out, "plain.pb.gz")):
        helpers.skip("the control run as nobody (not setuid) did not profile, so the setuid "
                     "run would prove nothing: " + describe(control).replace("\n", " | "))

    env = hp_env(os.path.join(out, "suid.pb.gz"), preload=False,
                 leaks=os.path.join(out, "leaks.txt"), extra={"LD_LIBRARY_PATH": lib_dir})
    r = run(drop + [suid, "hello", "3"], env)
    if r.returncode == 3 and "euid 0" not in r.stdout:
        helpers.skip(f"the setuid bit had no effect ({d} is on a nosuid mount?)")
    check(r.returncode == 3 and "heapprof" in r.stdout, "setuid run: " + describe(r))
    check("heapprof off" in r.stdout,
          "heapprof is enabled in a setuid program: HEAPPROF was read with getenv, not "
          "secure_getenv")
    check(sorted(os.listdir(out)) == ["plain.pb.gz"],
          f"the setuid program wrote {sorted(os.listdir(out))}")
    check(not hp_lines(r.stderr), f"heapprof spoke in the setuid program: {r.stderr}")


def check_no_debuginfod():
    """The dump never loads elfutils' debuginfod client (and with it libcurl,
    GnuTLS, Kerberos...) into the profiled program: /usr/bin/python3 has no
    local debug file, which is when libdw would dlopen it."""
    if not os.path.exists("/usr/bin/python3"):
        helpers.skip("/usr/bin/python3 (package python3) is not installed")
    installed = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    if "libdebuginfod.so" not in installed:
        helpers.skip("libdebuginfod1 is not installed, so libdw could not load it anyway")
    d = helpers.tempdir()
    profile = os.path.join(d, "py.pb.gz")
    argv = ["/usr/bin/python3", "-c", "x = [bytearray(1000) for _ in range(1000)]; print('ok')"]
    r = run(argv, hp_env(profile, 1, extra={"LD_DEBUG": "files"}))
    check(r.returncode == 0 and "ok" in r.stdout, "python3 under heapprof: " + describe(r))
    check(os.path.exists(profile), "no profile was written")
    loaded = [ln for ln in r.stderr.splitlines() if "file=" in ln and "debuginfod" in ln]
    check(not loaded, "the dump loaded the debuginfod client:\n" + "\n".join(loaded[:3]))
    # The profile still names python3's exported functions.
    check(any(f.startswith("Py") for f in cum(profile)),
          "python3's functions are not named in the profile")


# ---- stress --------------------------------------------------------------------

def check_stress(exact):
    seconds = 5
    d = helpers.tempdir()
    profile = os.path.join(d, "s.pb.gz")
    log = os.path.join(d, "pids.log")
    r = run([exe("rb_stress"), str(seconds), plugin()],
            hp_env(profile, 1 if exact else None, pidlog=log), timeout=60)
    check(r.returncode == 0, describe(r))
    kids = [(int(m.group(1)), m.group(2))
            for m in re.finditer(r"^child (\d+) (exit|_exit)$", r.stdout, re.M)]
    check(kids, "no child was forked: " + describe(r))
    normal = [p for p, how in kids if how == "exit"]
    exited = read_pidlog(log)
    check(set(exited) == {r.pid, *normal},
          f"processes that exited normally {sorted(exited)}, want {r.pid} and {sorted(normal)}")
    check_files(d, [profile] + [pid_name(profile, p) for p in normal])
    helpers.decode_ok(profile)
    for p in normal:
        path = pid_name(profile, p)
        helpers.decode_ok(path)
        if exact:
            expect_values(path, {"stress_child": (32, 3696, 16, 1856)})
    truth = {}
    for m in re.finditer(r"^site (\S+) (\d+) (\d+)$", r.stdout, re.M):
        truth[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    check(len(truth) == 4, "the program did not print its site totals: " + describe(r))
    if exact:
        want = {fn: (n, b, 0, 0) for fn, (n, b) in truth.items()}
        want["stress_leak"] = (7, 2331, 7, 2331)
        expect_values(profile, want)
    else:
        # Unbiased estimates of a few hundred thousand samples: within 10%.
        table = cum(profile)
        wrong = []
        for fn, (n, b) in truth.items():
            got = table.get(fn)
            if got is None or abs(got[1] - b) > 0.1 * b or got[2:] != [0, 0]:
                wrong.append(f"  {fn}: estimated {got}, true alloc_space {b}, in use 0")
        check(not wrong, "default rate: estimates far from the truth:\n" + "\n".join(wrong))


# ---- bounded cost: size classes, the table's ceiling ---------------------------

OTHER = "[other]"
# The stderr line and the profile comment when the stack table is full.
OTHER_LINE = "the stack table reached HEAPPROF_MAX_MEMORY"
# rb_bounded stacks: 2^17 distinct stacks, some 20 MiB of table: past 4M,
# within the default 64M.
STACKS_DEPTH = 17


def own_totals(stdout, what):
    """[allocations, bytes, kept, kept_bytes] as rb_bounded printed them:
    the truth for alloc_objects, alloc_space, inuse_objects, inuse_space."""
    got = dict(re.findall(r"^(allocations|bytes|kept|kept_bytes) (\d+)$", stdout, re.M))
    check(len(got) == 4, f"{what}: the program did not print its totals:\n{stdout[-2000:]}")
    return [int(got[k]) for k in ("allocations", "bytes", "kept", "kept_bytes")]


def profile_samples(path):
    """(comments, samples) from heapprof-decode's text output; a sample is
    (values, labels, [short function name, ... leaf first], stack), the
    stack as printed: frames with their file and line, so that two call
    sites in one function differ."""
    comments, samples = [], []
    in_samples = False
    for line in helpers.decode_ok(path).splitlines():
        if not in_samples:
            if line.startswith("comment: "):
                comments.append(line[len("comment: "):])
            in_samples = line.startswith("samples:")
            continue
        head, sep, stack = line.partition(" : ")
        check(sep, f"{os.path.basename(path)}: unexpected sample line {line!r}")
        fields = head.split()
        frames = stack.split(" <- ")
        # `name (file:line)`, or `0xADDR (module)` without symbols.
        names = [helpers.short_name(f.rpartition(" (")[0] if f.endswith(")") and " (" in f
                                    else f) for f in frames]
        samples.append(([int(v) for v in fields[:4]], " ".join(fields[4:]), names, stack))
    return comments, samples


def totals(samples):
    out = [0, 0, 0, 0]
    for values, *_ in samples:
        out = [a + b for a, b in zip(out, values)]
    return out


def gzip_members(path):
    """How many gzip members the file holds, one after another."""
    with open(path, "rb") as f:
        data = f.read()
    n = 0
    while data:
        z = zlib.decompressobj(31)
        z.decompress(data)
        check(z.eof, f"{path}: a truncated gzip member")
        n += 1
        data = z.unused_data
    return n


def check_big_profile():
    """A large profile (rb_bounded stacks 14 in exact mode: 16384 stacks,
    some MB before compression) is compressed by libdeflate, in gzip members
    one after another (src/report/wire.c), where libdeflate is installed;
    without it (a libdeflate.so.0 that cannot be loaded first on the search
    path), by zlib in one member. Both read the same with heapprof-decode,
    and go tool pprof reads the members as one profile, with the program's
    own totals."""
    argv = [exe("rb_bounded"), "stacks", "14"]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    truth = own_totals(base.stdout, "without heapprof")
    d = helpers.tempdir()
    fake = os.path.join(d, "nolib")
    os.mkdir(fake)
    with open(os.path.join(fake, "libdeflate.so.0"), "w") as f:
        f.write("not a library\n")
    # Built with its header and installed: scripts/deps.sh installs both.
    installed = (os.path.exists("/usr/include/libdeflate.h") and
                 ctypes.util.find_library("deflate") is not None)
    texts = {}
    for name, extra in [("libdeflate", None), ("zlib", {"LD_LIBRARY_PATH": fake})]:
        profile = os.path.join(d, name + ".pb.gz")
        r = run(argv, hp_env(profile, 1, extra=extra), timeout=60)
        same_output(base, r, name)
        check(not hp_lines(r.stderr), f"{name}: heapprof said:\n" + "\n".join(hp_lines(r.stderr)))
        members = gzip_members(profile)
        if name == "zlib":
            check(members == 1, f"zlib: {members} gzip members, want 1")
        elif installed:
            check(members > 1, f"libdeflate is installed, yet the profile is {members} member")
        else:
            print("note: libdeflate is not installed here: zlib wrote both profiles")
        text = helpers.decode_ok(profile)
        # The samples, by function, file and line (the mappings' addresses
        # move from run to run).
        texts[name] = text[text.index("\nsamples:"):]
        with open(profile, "rb") as f:
            raw = len(gzip.decompress(f.read()))
        check(raw > 4 * (64 << 10),
              f"{name}: the profile is {raw} bytes before compression, not a large one")
        comments, samples = profile_samples(profile)
        got = [sum(sm[0][i] for sm in samples) for i in range(4)]
        check(got == truth, f"{name}: the profile's totals are {got}, the program's {truth}")
        if helpers.go_or_skip_soft():
            top = helpers.pprof_top(profile, "alloc_objects", d)
            check(top.get("leaf_alloc", (0, 0))[0] == truth[0],
                  f"{name}: go tool pprof -top shows leaf_alloc {top.get('leaf_alloc')}, want "
                  f"{truth[0]} objects")
    check(texts["libdeflate"] == texts["zlib"],
          "the two profiles decode differently")


def check_bounded_sizes():
    """Buckets are keyed by (stack, size class), not by size: one call site
    allocating every size from 1 to N has at most one sample per class
    (bit_length(N) of them), not one per size, and in exact mode its values
    are still exactly the program's counts."""
    n = 200000
    classes = n.bit_length()  # sizes 1..n: classes 1..18
    argv = [exe("rb_bounded"), "sizes", str(n)]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    truth = own_totals(base.stdout, "without heapprof")
    check(truth == [n, n * (n + 1) // 2, 10, sum(range(n - 9, n + 1))],
          f"the test's premise failed: rb_bounded sizes {n} counted {truth}")
    d = helpers.tempdir()
    for what, rate, seed, most in (("exact", 1, None, classes + 1),
                                   ("rate 4096, seed 7", 4096, 7, classes)):
        profile = os.path.join(d, f"sizes-{rate}.pb.gz")
        r = run(argv, hp_env(profile, rate, extra={"HEAPPROF_SEED": str(seed)} if seed else None))
        same_output(base, r, what)
        check(not hp_lines(r.stderr), f"{what}: heapprof spoke: {hp_lines(r.stderr)}")
        _, samples = profile_samples(profile)
        site = [s for s in samples if "sizes_site" in s[2]]
        check(site, f"{what}: no sample passes through sizes_site")
        stacks = {s[3] for s in site}
        check(len(stacks) == 1, f"{what}: sizes_site has {len(stacks)} stacks, want the one")
        check(len(site) <= most,
              f"{what}: {len(site)} samples for sizes_site's one stack, want at most {most} "
              f"(one per size class; a table keyed by size makes up to {n}). First ones:\n" +
              "\n".join(f"  {v} {labels}" for v, labels, *_ in site[:5]))
        got = totals(site)
        if rate == 1:
            check(got == truth, f"{what}: sizes_site's values (alloc_objects alloc_space "
                  f"inuse_objects inuse_space) are {got}, the program's counts {truth}")
            expect_values(profile, {"sizes_site": truth})
        else:
            # Unbiased per sample; with a fixed seed, close to the truth
            # (objects: sd about 0.1%; bytes and the 200 KB kept blocks:
            # almost every one is sampled).
            tol = [0.03, 0.01, 0.01, 0.01]
            far = [f"  {name}: estimated {g}, true {t}"
                   for name, g, t, e in zip(("alloc_objects", "alloc_space", "inuse_objects",
                                             "inuse_space"), got, truth, tol)
                   if abs(g - t) > e * t]
            check(not far, f"{what}: sizes_site's estimates are far from the truth:\n" +
                  "\n".join(far))


def check_max_memory():
    """Past HEAPPROF_MAX_MEMORY, new stacks are counted under one stack,
    [other]: said once on stderr and in the profile's comment; the program
    runs as without heapprof and, in exact mode, the profile's totals are
    still exactly the program's. The default (64M) holds the same program
    without folding."""
    depth = STACKS_DEPTH
    argv = [exe("rb_bounded"), "stacks", str(depth)]
    base = baseline(argv)
    check(base.returncode == 0, "without heapprof: " + describe(base))
    truth = own_totals(base.stdout, "without heapprof")
    check(truth[0] == 1 << depth and truth[2] > 0,
          f"the test's premise failed: rb_bounded stacks {depth} counted {truth}")
    d = helpers.tempdir()

    # 4M: the table fills up.
    profile = os.path.join(d, "4m.pb.gz")
    r = run(argv, hp_env(profile, 1, extra={"HEAPPROF_MAX_MEMORY": "4M"}), timeout=60)
    same_output(base, r, "HEAPPROF_MAX_MEMORY=4M")
    lines = hp_lines(r.stderr)
    full = [line for line in lines if OTHER_LINE in line]
    check(len(full) == 1 and OTHER in full[0] and str(4 << 20) in full[0],
          f"HEAPPROF_MAX_MEMORY=4M: want the line `{OTHER_LINE} ({4 << 20} bytes) ... "
          f"{OTHER}` once, got:\n" + ("\n".join(lines[:20]) or "(no heapprof line)"))
    check(lines == full, "HEAPPROF_MAX_MEMORY=4M: other heapprof lines:\n" + "\n".join(lines))
    check(not_hp(r.stderr) == not_hp(base.stderr), "HEAPPROF_MAX_MEMORY=4M: other stderr:\n" +
          r.stderr[-2000:])
    comments, samples = profile_samples(profile)
    check(any("HEAPPROF_MAX_MEMORY" in c and OTHER in c for c in comments),
          f"HEAPPROF_MAX_MEMORY=4M: the profile's comments do not say the table was full: "
          f"{comments}")
    other = [s for s in samples if OTHER in s[2]]
    check(other and all(s[2] == [OTHER] for s in other),
          f"HEAPPROF_MAX_MEMORY=4M: want {OTHER} as a stack of its own, one frame; stacks "
          f"holding it: {[s[2] for s in other][:5]}")
    other_values = totals(other)
    check(other_values[0] > 0, f"HEAPPROF_MAX_MEMORY=4M: {OTHER} has no allocations: "
          f"{other_values}")
    leaves = [s for s in samples if "leaf_alloc" in s[2]]
    check(len(leaves) < 1 << depth,
          f"HEAPPROF_MAX_MEMORY=4M: {len(leaves)} stacks through leaf_alloc: the table did "
          f"not stop at {1 << depth} stacks")
    # Exact mode: every allocation counted once, either at its own stack or
    # under [other]. rb_bounded allocates nothing else once it runs, so that
    # is the whole profile.
    ours = totals(leaves)
    check([a + b for a, b in zip(ours, other_values)] == truth,
          f"HEAPPROF_MAX_MEMORY=4M: leaf_alloc's stacks {ours} plus {OTHER} {other_values} "
          f"(alloc_objects alloc_space inuse_objects inuse_space) is not the program's "
          f"{truth}")
    whole = totals(samples)
    check(whole[:2] == truth[:2],
          f"HEAPPROF_MAX_MEMORY=4M: the profile's total alloc_objects and alloc_space "
          f"{whole[:2]}, the program's {truth[:2]}")
    expect_values(profile, {OTHER: other_values, "run_stacks": ours})

    # The default, 64M: enough for every stack.
    profile = os.path.join(d, "default.pb.gz")
    r = run(argv, hp_env(profile, 1), timeout=60)
    same_output(base, r, "HEAPPROF_MAX_MEMORY unset")
    check(not hp_lines(r.stderr), "HEAPPROF_MAX_MEMORY unset (64M): heapprof spoke:\n" +
          "\n".join(hp_lines(r.stderr)[:10]))
    comments, samples = profile_samples(profile)
    check(not any("HEAPPROF_MAX_MEMORY" in c for c in comments),
          f"HEAPPROF_MAX_MEMORY unset (64M): the comment says the table was full: {comments}")
    check(not any(OTHER in s[2] for s in samples),
          f"HEAPPROF_MAX_MEMORY unset (64M): the profile has {OTHER}")
    leaves = [s for s in samples if "leaf_alloc" in s[2]]
    check(len({s[3] for s in leaves}) == len(leaves) == 1 << depth,
          f"HEAPPROF_MAX_MEMORY unset (64M): {len(leaves)} samples, "
          f"{len({s[3] for s in leaves})} stacks through leaf_alloc, want "
          f"{1 << depth} (one each)")
    check(totals(leaves) == truth,
          f"HEAPPROF_MAX_MEMORY unset (64M): leaf_alloc's values {totals(leaves)}, the "
          f"program's {truth}")


# ---- the two halves: what loads when -------------------------------------------

REPORT_LIBS = ("libdw", "libelf", "libprotobuf-c", "libz.", "libunwind", "liblzma", "libbz2",
               "libm.", "libheapprof-report")


def mapped_objects(maps_text):
    return {line.split()[-1] for line in maps_text.splitlines()
            if len(line.split()) >= 6 and ".so" in line.split()[-1]}


def check_split_off():
    """libheapprof.so needs only the C library, and a process that preloads it
    with HEAPPROF unset maps none of the reporting half's libraries."""
    lib = os.path.realpath(helpers.lib_path())
    dyn = subprocess.run(["readelf", "-d", lib], stdout=subprocess.PIPE, text=True, check=True)
    needed = [l.split("[")[1].rstrip("]") for l in dyn.stdout.splitlines() if "(NEEDED)" in l]
    check(needed and all(n.startswith("libc.so") for n in needed),
          f"libheapprof.so needs {needed}, want only the C library")
    r = run(["cat", "/proc/self/maps"], clean_env() | {"LD_PRELOAD": lib})
    check(r.returncode == 0, describe(r))
    objs = mapped_objects(r.stdout)
    check(any("libheapprof.so" in o for o in objs), f"libheapprof not mapped: {objs}")
    bad = [o for o in objs if any(os.path.basename(o).startswith(b) for b in REPORT_LIBS)]
    check(not bad, f"HEAPPROF unset, yet mapped: {bad}")
    print(f"off: {len(objs)} objects mapped, none of the reporting half's")


def check_split_on():
    """With HEAPPROF set, libunwind is loaded at start-up, and the reporting
    half, from beside the library, when first needed: at exit, to write (the
    profile's mappings are the process's at that moment), and not before."""
    d = helpers.tempdir()
    profile = os.path.join(d, "m.pb.gz")
    r = run(["cat", "/proc/self/maps"], hp_env(profile, leaks="off"))
    check(r.returncode == 0 and os.path.exists(profile), describe(r))
    objs = mapped_objects(r.stdout)
    check(any(os.path.basename(o).startswith("libunwind") for o in objs),
          f"libunwind not mapped: {sorted(objs)}")
    early = [o for o in objs if os.path.basename(o).startswith("libheapprof-report.so")]
    check(not early, f"the reporting half is mapped before exit: {early}")
    files = {m["file"] for m in helpers.decode_json(profile)["mappings"]}
    lib_dir = os.path.dirname(os.path.realpath(helpers.lib_path()))
    report = [f for f in files if os.path.basename(f).startswith("libheapprof-report.so")]
    check(report and os.path.dirname(report[0]) == lib_dir,
          f"the reporting half is not mapped from {lib_dir} at exit: {sorted(files)}")
    print(f"on: {report[0]} mapped at exit")


def check_split_missing():
    """The library alone, without the reporting half beside it: one line, no
    profile, the program unchanged."""
    base = hello_baseline()
    d = helpers.tempdir()
    lib_copy = os.path.join(d, "lib")
    os.makedirs(lib_copy)
    shutil.copy(helpers.lib_path(), lib_copy)
    env = hp_env(os.path.join(d, "x.pb.gz"))
    env["LD_PRELOAD"] = os.path.join(lib_copy, os.path.basename(helpers.lib_path()))
    r = run([exe("rb_alloc"), "hello", "3"], env)
    expect_one_line(r, base, "no libheapprof-report.so beside the library", "reporting half")
    check(sorted(os.listdir(d)) == ["lib"], f"files written: {os.listdir(d)}")


def check_installed():
    """`meson install` puts both halves in the library directory, and the
    installed libheapprof.so finds its reporting half there: a profile with
    names (a dlclosed library's included) and a leak summary, from the
    installed tree."""
    build = helpers.env_path("HEAPPROF_BUILD")
    meson = shutil.which("meson")
    if not meson:
        helpers.skip("meson is not on PATH")
    dest = helpers.tempdir()
    inst = subprocess.run([meson, "install", "-C", build, "--destdir", dest, "--no-rebuild",
                           "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(inst.returncode == 0, "meson install failed:\n" + inst.stdout[-2000:])
    libs = {}
    for root, _, files in os.walk(dest):
        for f in files:
            libs[f] = os.path.join(root, f)
    version = next((f[len("libheapprof-report.so."):] for f in libs
                    if f.startswith("libheapprof-report.so.") and f.count(".") == 4), None)
    check(version and "libheapprof.so." + version in libs,
          f"installed: {sorted(libs)}; want libheapprof.so.V and libheapprof-report.so.V")
    lib = libs["libheapprof.so." + version]
    check(os.path.dirname(lib) == os.path.dirname(libs["libheapprof-report.so." + version]),
          "the two halves are not installed in one directory")
    d = helpers.tempdir()
    profile = os.path.join(d, "i.pb.gz")
    leaks = os.path.join(d, "leaks.txt")
    env = hp_env(profile, 1, leaks=leaks)
    env["LD_PRELOAD"] = lib
    argv = [exe("rb_dlopen"), plugin(), "close"]
    r = run(argv, env)
    same_output(baseline(argv), r, "installed")
    got = cum(profile).get("plugin_leak")
    check(got == [5, 2832, 5, 2832], f"installed: plugin_leak {got}, want [5, 2832, 5, 2832]")
    check("plugin_leak" in read_text(leaks, "the leak summary"),
          "installed: the leak summary does not name plugin_leak")
    print(f"installed: {lib} and its reporting half; plugin_leak {got}")


def check_leak_same_text():
    """Two leaking calls in one function built without debug info read the
    same once symbolized; the leak summary tells them apart with the call's
    offset in the function, and only there."""
    d = helpers.tempdir()
    leaks = os.path.join(d, "leaks.txt")
    r = run([exe("rb_twosites")], hp_env(os.path.join(d, "t.pb.gz"), 1, leaks=leaks))
    check(r.returncode == 0, describe(r))
    text = read_text(leaks, "the leak summary")
    stacks = helpers.parse_leaks(text)["stacks"]
    two = [st for st in stacks if st["frames"] and
           st["frames"][0]["func"].startswith("two_sites")]
    one = [st for st in stacks if st["frames"] and
           st["frames"][0]["func"].startswith("one_site")]
    check(sorted((st["bytes"], st["objects"]) for st in two) == [(8000, 8), (12000, 4)],
          f"two_sites' two stacks: {[(st['bytes'], st['objects']) for st in two]}\n{text}")
    check(all(st["frames"][0]["line"] is None for st in two),
          f"rb_twosites has line info; the test needs none:\n{text}")
    rendered = [[(f["func"], f["module"]) for f in st["frames"]] for st in two]
    check(rendered[0] != rendered[1],
          f"the two stacks of two_sites read the same in the leak summary:\n{text}")
    leaf = [st["frames"][0]["func"] for st in two]
    check(all(re.fullmatch(r"two_sites\+0x[0-9a-f]+", f) for f in leaf),
          f"two_sites' frames do not carry the call's offset: {leaf}")
    # Frames that are the same in both (main's call of two_sites) stay plain.
    check(all(st["frames"][1]["func"] == "main" for st in two),
          f"main should read plain in both: {[st['frames'][1] for st in two]}")
    check(len(one) == 1 and one[0]["bytes"] == 1000 and
          [f["func"] for f in one[0]["frames"][:2]] == ["one_site", "main"],
          f"one_site, which reads differently, got an offset: {one}")
    print(f"leak-same-text: {leaf[0]} and {leaf[1]}")


# ---- what a new user trips over -----------------------------------------------

def wrapper():
    return helpers.env_path("HEAPPROF_WRAPPER")


def readme_variables():
    """Every variable in the README's tables (rows that start with one)."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
    names = set()
    with open(readme) as f:
        for line in f:
            if line.startswith("| `HEAPPROF"):
                names.update(re.findall(r"`(HEAPPROF[A-Z_]*)`", line.split("|")[1]))
    check(len(names) > 20, f"README: only {sorted(names)} in the tables of variables")
    return sorted(names)


def check_unknown_vars():
    """A HEAPPROF_* variable heapprof does not read gets one line naming it,
    with the closest name it does read when one is close; every variable in
    the README's tables is known; only the process that starts the tree
    says it (children of a process that runs heapprof do not)."""
    base = hello_baseline()
    d = helpers.tempdir()
    profile = os.path.join(d, "u.pb.gz")
    cases = [
        ({"HEAPPROF_RAET": "1"},
         "heapprof: unknown variable HEAPPROF_RAET (did you mean HEAPPROF_RATE?)"),
        ({"heapprof_rate": "1"},
         "heapprof: unknown variable heapprof_rate (did you mean HEAPPROF_RATE?)"),
        ({"HEAPPROF_LEAKS_EXITCODE": "9"},
         "heapprof: unknown variable HEAPPROF_LEAKS_EXITCODE (did you mean "
         "HEAPPROF_LEAKS_EXIT_CODE?)"),
        ({"HEAPPROF_TIMELIME": "1"},
         "heapprof: unknown variable HEAPPROF_TIMELIME (did you mean HEAPPROF_TIMELINE?)"),
        ({"HEAPPROF_OUTPUT": "x"}, "heapprof: unknown variable HEAPPROF_OUTPUT"),
    ]
    for extra, want in cases:
        for with_profile in (True, False):
            r = run([exe("rb_alloc"), "hello", "3"],
                    hp_env(profile if with_profile else None, extra=extra))
            what = f"{extra}{'' if with_profile else ', HEAPPROF unset'}"
            same_output(base, r, what)
            check(hp_lines(r.stderr) == [want], f"{what}: want only {want!r}, got "
                  f"{hp_lines(r.stderr)}")
    # Not ours: gperftools' HEAPPROFILE.
    r = run([exe("rb_alloc"), "hello", "3"], hp_env(profile, extra={"HEAPPROFILE": "/x"}))
    check(not hp_lines(r.stderr), f"HEAPPROFILE drew {hp_lines(r.stderr)}")
    # Every documented variable is known (the values are valid and effective
    # together, so nothing else is said either).
    known = {v: "1" for v in readme_variables()}
    known.update({"HEAPPROF": profile, "HEAPPROF_LEAKS": os.path.join(d, "l.txt"),
                  "HEAPPROF_CPU": os.path.join(d, "cpu.pb.gz"), "HEAPPROF_HTTP": "127.0.0.1:0",
                  "HEAPPROF_SIGNAL": "USR2", "HEAPPROF_INTERVAL": "3600",
                  "HEAPPROF_RATE": "4096", "HEAPPROF_MAX_MEMORY": "64M",
                  "HEAPPROF_CPU_TIMER": "thread", "HEAPPROF_SUPPRESSIONS": os.devnull,
                  "HEAPPROF_LEAK_SCAN": "1", "HEAPPROF_LEAKS_EXIT_CODE": "3"})
    r = run([exe("rb_alloc"), "hello", "3"], hp_env(None, extra=known))
    check(r.returncode == 3, describe(r))
    said = [ln for ln in hp_lines(r.stderr) if "unknown" in ln or "no effect" in ln]
    check(not said, f"documented variables ({sorted(known)}) drew: {said}")
    # A tree: the root says it once; its children (a fork+exec, and a shell
    # that runs the program) say nothing.
    r = run([exe("rb_fork"), "exec"], hp_env(profile, extra={"HEAPPROF_RAET": "1"}))
    check(r.returncode == 0, describe(r))
    lines = [ln for ln in hp_lines(r.stderr) if "unknown variable" in ln]
    check(len(lines) == 1, f"a tree of 4 processes: want the line once, got {lines}")
    print("unknown-vars: named once, with the closest known name")


def check_no_effect():
    """A variable that asks for what the mode cannot do gets one line at
    start-up, naming it and why; values that only turn something off, and
    effective ones, are silent; children say nothing."""
    base = hello_baseline()
    d = helpers.tempdir()
    profile = os.path.join(d, "n.pb.gz")
    leaks = os.path.join(d, "leaks.txt")
    http = {"HEAPPROF_HTTP": "127.0.0.1:0"}
    # (HEAPPROF, HEAPPROF_LEAKS, extra, the lines wanted: (variable, why))
    cases = [
        # A first try at a CI gate: the endpoint alone, exact mode and a gate.
        (None, None, dict(http, HEAPPROF_RATE="1", HEAPPROF_LEAKS_EXIT_CODE="9"),
         [("HEAPPROF_LEAKS_EXIT_CODE", "without HEAPPROF (HEAPPROF_HTTP alone: no exit profile, "
           "no leak check)")]),
        (None, None, dict(http, HEAPPROF_PEAK="1", HEAPPROF_INTERVAL="5", HEAPPROF_SEED="3"),
         [("HEAPPROF_INTERVAL", "without HEAPPROF (HEAPPROF_HTTP alone"),
          ("HEAPPROF_PEAK", "without HEAPPROF (HEAPPROF_HTTP alone")]),
        (None, None, {"HEAPPROF_LEAKS_EXIT_CODE": "9", "HEAPPROF_RATE": "1"},
         [("HEAPPROF_LEAKS_EXIT_CODE", "without HEAPPROF (profiling is off"),
          ("HEAPPROF_RATE", "without HEAPPROF (profiling is off")]),
        (None, None, {"HEAPPROF_ANNOUNCE": "1"},
         [("HEAPPROF_ANNOUNCE", "without HEAPPROF or HEAPPROF_CPU")]),
        (profile, "off", {"HEAPPROF_LEAKS_EXIT_CODE": "9", "HEAPPROF_SUPPRESSIONS": os.devnull},
         [("HEAPPROF_SUPPRESSIONS", "with HEAPPROF_LEAKS=off"),
          ("HEAPPROF_LEAKS_EXIT_CODE", "with HEAPPROF_LEAKS=off")]),
        (profile, leaks, {"HEAPPROF_LEAKS_EXIT_ANY": "1"},
         [("HEAPPROF_LEAKS_EXIT_ANY", "without HEAPPROF_LEAKS_EXIT_CODE")]),
        (profile, leaks, {"HEAPPROF_LEAK_SCAN": "0", "HEAPPROF_LEAK_REACHABLE": "yes",
                          "HEAPPROF_LEAK_STATS": "1"},
         [("HEAPPROF_LEAK_REACHABLE", "with HEAPPROF_LEAK_SCAN=0"),
          ("HEAPPROF_LEAK_STATS", "with HEAPPROF_LEAK_SCAN=0")]),
        (profile, leaks, {"HEAPPROF_RATE": "1", "HEAPPROF_SEED": "5"},
         [("HEAPPROF_SEED", "in exact mode")]),
        (profile, leaks, {"HEAPPROF_TIMELINE_MS": "5"},
         [("HEAPPROF_TIMELINE_MS", "without HEAPPROF_TIMELINE or HEAPPROF_HTTP")]),
        # Silent: values that turn things off, and what takes effect.
        (None, None, {"HEAPPROF_LEAK_SCAN": "0", "HEAPPROF_LEAKS": "off",
                      "HEAPPROF_LEAKS_EXIT_CODE": "0", "HEAPPROF_PEAK": "no",
                      "HEAPPROF_CPU_HZ": "200", "HEAPPROF_DEBUGINFO": "1"}, []),
        (None, None, dict(http, HEAPPROF_RATE="4096", HEAPPROF_MAX_MEMORY="8M",
                          HEAPPROF_TIMELINE_MS="50"), []),
        (profile, leaks, {"HEAPPROF_LEAKS_EXIT_CODE": "9", "HEAPPROF_LEAKS_EXIT_ANY": "1",
                          "HEAPPROF_LEAK_SCAN": "1", "HEAPPROF_LEAK_REACHABLE": "1",
                          "HEAPPROF_SEED": "5"}, []),
        (profile, "off", {"HEAPPROF_LEAK_SCAN": "0"}, []),
    ]
    for i, (prof, lk, extra, want) in enumerate(cases):
        cwd = os.path.join(d, f"c{i}")
        os.makedirs(cwd)
        r = run([exe("rb_alloc"), "hello", "3"], hp_env(prof, leaks=lk, extra=extra), cwd=cwd)
        what = f"HEAPPROF={prof}, HEAPPROF_LEAKS={lk}, {extra}"
        check(r.returncode in (3, 9), f"{what}: " + describe(r))
        check(r.stdout == base.stdout, f"{what}: stdout differs")
        said = [ln for ln in hp_lines(r.stderr) if " has no effect " in ln]
        got = sorted(said)
        check(len(got) == len(want) and
              all(ln.startswith(f"heapprof: {var} has no effect {why}")
                  for ln, (var, why) in zip(got, sorted(want))),
              f"{what}: want one line each for {want}, got {said}")
        if prof is None:
            check(not os.listdir(cwd), f"{what}: files written: {os.listdir(cwd)}")
    # In a tree only the root says it.
    r = run([exe("rb_fork"), "exec"],
            hp_env(profile, leaks="off", extra={"HEAPPROF_LEAKS_EXIT_CODE": "9"}))
    said = [ln for ln in hp_lines(r.stderr) if " has no effect " in ln]
    check(len(said) == 1, f"a tree of 4 processes: want the line once, got {said}")
    print(f"no-effect: {len(cases)} combinations")


def check_relative_tree():
    """Relative paths (HEAPPROF, HEAPPROF_LEAKS, HEAPPROF_CPU) are taken
    from the directory the tree started in, in every process: a child that
    changes directory before it runs a program does not scatter files
    there, whether the program is its child or replaces it (exec)."""
    for how, script in (("child", "cd sub && \"$0\" hello 3; exit 0"),
                        ("exec", "cd sub && exec \"$0\" hello 3")):
        d = helpers.tempdir()
        start = os.path.join(d, "start")
        for sub in ("out", "sub", os.path.join("sub", "out")):
            os.makedirs(os.path.join(start, sub))
        env = hp_env("out/t.pb.gz", leaks="out/leaks.txt",
                     extra={"HEAPPROF_CPU": "out/cpu.pb.gz"})
        r = run(["/bin/sh", "-c", script, exe("rb_alloc")], env, cwd=start)
        check(r.returncode == (0 if how == "child" else 3), f"{how}: " + describe(r))
        check(os.listdir(os.path.join(start, "sub", "out")) == [],
              f"{how}: files written where the child changed directory: "
              f"{os.listdir(os.path.join(start, 'sub', 'out'))}")
        written = sorted(os.listdir(os.path.join(start, "out")))
        if how == "exec":
            # The program replaced the shell, the tree's root.
            want = ["cpu.pb.gz", "leaks.txt", "t.pb.gz"]
        else:
            # The shell (dash ends with _exit) may write nothing; the program
            # is its child: NAME.PID.
            want = [f for f in written if re.match(r"^(t|cpu)\.\d+\.pb\.gz$|^leaks\.txt\.\d+$", f)
                    or f in ("t.pb.gz", "cpu.pb.gz", "leaks.txt")]
            check(any(re.match(r"^t\.\d+\.pb\.gz$", f) for f in written) and
                  any(re.match(r"^cpu\.\d+\.pb\.gz$", f) for f in written) and
                  any(re.match(r"^leaks\.txt\.\d+$", f) for f in written),
                  f"{how}: want the child's t.PID.pb.gz, cpu.PID.pb.gz and leaks.txt.PID in "
                  f"start/out, got {written}")
        check(written == want, f"{how}: start/out holds {written}, want {want}")
        check(not hp_lines(r.stderr), f"{how}: {hp_lines(r.stderr)}")
    print("relative-tree: every file where the tree started")


def wrapper_run(args, cwd=None, env=None, prog=None):
    return run([wrapper()] + args + ([exe("rb_alloc"), "hello", "3"] if prog is None else prog),
               env or clean_env(), cwd=cwd)


def check_wrapper_options():
    """The wrapper reads options as getopt_long does (-r1, -oFILE,
    --rate=1, --output=FILE, -- to end them); refuses a bad value of every
    option, and an option the others make ineffective, with one line naming
    the option and status 2, before the program runs; accepts the edges of
    every range the library accepts; sets only variables the library
    knows."""
    base = hello_baseline()
    d = helpers.tempdir()
    out = os.path.join(d, "w.pb.gz")
    for form in (["-r1", "-o" + out], ["--rate=1", "--output=" + out],
                 ["-r", "1", "--output", out, "--"]):
        r = wrapper_run(form)
        check(r.returncode == 3 and r.stdout == base.stdout, f"{form}: " + describe(r))
        check(helpers.decode_json(out)["period"] == 1, f"{form}: not exact mode")
        check(f"wrote {out}" in r.stderr, f"{form}: " + describe(r))
        os.remove(out)
    # -- ends the options: a program named like one runs.
    dash = os.path.join(d, "-prog")
    os.symlink(exe("rb_alloc"), dash)
    r = run([wrapper(), "-o", out, "--", dash, "hello", "3"], clean_env(), cwd=d)
    check(r.returncode == 3 and os.path.exists(out), "-- -prog: " + describe(r))
    missing = os.path.join(d, "missing")
    bad = [["-r", "0"], ["-rabc"], ["--rate=1099511627777"], ["-r", "99999999999999999999"],
           ["--cpu-hz", "5000"], ["--cpu-hz=0"], ["--interval", "-1"],
           ["--interval=31536001"], ["--leaks-exit-code", "300"], ["--leaks-exit-code=-1"],
           ["--signal", "USR3"], ["--signal=65"], ["--signal", "33"], ["--http", "nocolon"],
           ["--http=:70000"], ["--http", "127.0.0.1:"], ["--seed", "-1"], ["--seed=08"],
           ["--seed", "18446744073709551616"], ["--seed", "0x"], ["-o", missing + "/x.pb.gz"],
           ["-o" + d + "/"], ["--output", d], ["--cpu", missing + "/c.pb.gz"],
           ["--leaks", missing + "/l.txt"], ["--suppressions", missing], ["--output="],
           ["-o"], ["--peak=1"], ["--bogus"], ["--rates=1"],
           ["--cpu", out, "--peak"], ["--cpu", out, "--leaks-exit-code", "3"],
           ["--cpu=" + out, "-r", "4096"], ["--leaks", "off", "--leaks-exit-code", "3"],
           ["--leaks=OFF", "--suppressions", os.devnull], ["--leaks-exit-any"],
           ["--leaks-exit-code", "0", "--leaks-exit-any"],
           ["--no-leak-check", "--leaks-reachable"],
           ["--leaks-exit-code", "3", "--no-leak-check", "--leaks-exit-any"],
           ["-r", "1", "--seed", "5"]]
    problems = []
    for args in bad:
        # A value missing at the end: nothing after the option.
        r = wrapper_run(args, cwd=d, prog=[] if args == ["-o"] else None)
        opt = next((a for a in args[::-1] if a.startswith("-") and a != "-1"), args[0])
        named = opt.split("=")[0] if opt.startswith("--") else opt[:2]
        lines = r.stderr.splitlines()
        if r.returncode != 2 or len(lines) != 1 or not lines[0].startswith("heapprof: ") \
                or r.stdout:
            problems.append(f"{args}: status {r.returncode}, stderr {r.stderr!r}")
        elif named not in lines[0] and not any(a.split("=")[0] in lines[0] for a in args):
            problems.append(f"{args}: the line does not name the option: {lines[0]}")
    check(not problems, "refused badly:\n" + "\n".join(problems))
    check(sorted(os.listdir(d)) == ["-prog", "w.pb.gz"],
          f"a refused run wrote files: {os.listdir(d)}")
    # The edges of every range, and the spellings the library takes.
    good = [["--cpu-hz", "1000"], ["--cpu-hz=1"], ["--leaks-exit-code", "255"],
            ["--leaks-exit-code=0"], ["--interval", "0"], ["--interval=31536000"],
            ["--seed", "0x10"], ["--seed", "010"], ["--seed=18446744073709551615"],
            ["--signal", "sigusr2"], ["--signal=34"], ["--signal", "64"],
            ["-r", "1099511627776"], ["--http", ":0"], ["--http=[127.0.0.1]:0"],
            ["--leaks", "stderr"], ["--leaks", "/dev/stderr"]]
    for args in good:
        r = wrapper_run(["-o", out] + args, cwd=d)
        # What the library says of a value it does not take, or cannot use.
        said = [ln for ln in hp_lines(r.stderr)
                if any(w in ln for w in ("using", "is not", "unknown", "no effect", "cannot"))]
        if r.returncode != 3 or r.stdout != base.stdout or said:
            problems.append(f"{args}: status {r.returncode}, said {said}")
    check(not problems, "valid values refused or named:\n" + "\n".join(problems))
    # Every option at once: every variable it sets is one the library reads,
    # and takes effect.
    supp = os.path.join(d, "supp.txt")
    with open(supp, "w") as f:
        f.write("leak:nothing_here\n")
    for extra in (["--leaks-reachable", "--leaks-exit-any"], ["--no-leak-check"]):
        r = wrapper_run(["-o", out, "-r", "4096", "--cpu", os.path.join(d, "c.pb.gz"),
                         "--cpu-hz", "250", "--http", "127.0.0.1:0", "--peak", "--timeline",
                         "--interval", "3600", "--signal", "USR2", "--leaks",
                         os.path.join(d, "l.txt"), "--leaks-exit-code", "3",
                         "--suppressions", supp, "--seed", "7"] + extra)
        said = [ln for ln in hp_lines(r.stderr) if "unknown" in ln or "no effect" in ln]
        check(r.returncode == 3 and not said, f"every option, {extra}: {said}\n" + describe(r))
    help_text = run([wrapper(), "--help"], clean_env()).stdout
    for opt in ("-r1", "--rate=1", "1 to 2^40", "1 to 1000", "0 to 255", "34 to 64"):
        check(opt in help_text, f"--help does not say {opt!r}")
    print(f"wrapper-options: {len(bad)} refused, {len(good)} edges accepted")


def check_wrapper_paths():
    """The wrapper makes every path it passes absolute at launch: a program
    that changes directory (a shell running `cd sub && ...`) writes the
    profile, the leak summary, the CPU profile and the timeline where the
    user was, and finds the suppressions file there."""
    d = helpers.tempdir()
    sub = os.path.join(d, "sub")
    os.makedirs(sub)
    with open(os.path.join(d, "supp.txt"), "w") as f:
        f.write("leak:main\n")
    prog = ["/bin/sh", "-c", "cd sub && exec \"$0\" hello 3", exe("rb_alloc")]
    # The default name, in the working directory.
    r = wrapper_run([], cwd=d, prog=prog)
    check(r.returncode == 3, describe(r))
    named = [f for f in os.listdir(d) if re.match(r"^heapprof\.sh\.\d+\.pb\.gz$", f)]
    check(len(named) == 1 and not os.listdir(sub),
          f"default name: {sorted(os.listdir(d))}, in sub/: {os.listdir(sub)}")
    check(f"wrote {os.path.join(d, named[0])}" in r.stderr, describe(r))
    # Every path option, relative.
    r = wrapper_run(["-o", "p.pb.gz", "-r", "1", "--leaks", "l.txt", "--cpu", "c.pb.gz",
                     "--timeline", "--suppressions", "supp.txt", "--leaks-exit-code", "9"],
                    cwd=d, prog=prog)
    check(r.returncode == 3, "the suppressions file was not read (main's leak fired the gate): "
          + describe(r))
    check(not os.listdir(sub), f"files in sub/: {os.listdir(sub)}")
    for f in ("p.pb.gz", "l.txt", "c.pb.gz", "p.timeline.html", "p.timeline.json"):
        check(os.path.exists(os.path.join(d, f)), f"no {f} in {d}: {sorted(os.listdir(d))}")
    check(not [ln for ln in hp_lines(r.stderr) if "cannot" in ln], describe(r))
    print("wrapper-paths: every file where the user ran heapprof")


CHECKS = {
    "unknown-vars": check_unknown_vars,
    "no-effect": check_no_effect,
    "relative-tree": check_relative_tree,
    "wrapper-options": check_wrapper_options,
    "wrapper-paths": check_wrapper_paths,
    "split-off": check_split_off,
    "split-on": check_split_on,
    "split-missing": check_split_missing,
    "installed": check_installed,
    "fork": check_fork,
    "fork-dlopen": check_fork_dlopen,
    "fork-exec": check_fork_exec,
    "fork-pct": check_fork_pct,
    "leaks-tree": check_leaks_tree,
    "leaks-pct": check_leaks_pct,
    "leaks-in-place": check_leaks_in_place,
    "exit-late": check_exit_late,
    "exit-thread": check_exit_thread,
    "exit-atexit": check_exit_atexit,
    "exit-statics": check_exit_statics,
    "threads": check_threads,
    "bias": check_bias,
    "flag-race": check_flag_race,
    "dlopen-keep": lambda: check_dlopen("keep"),
    "dlopen-close": lambda: check_dlopen("close"),
    "dlopen-reuse": lambda: check_dlopen("reuse"),
    "dlopen-relative": lambda: check_dlopen("relative"),
    "thread-exit": check_thread_exit,
    "bad-rate": check_bad_rate,
    "bad-seed": check_bad_seed,
    "bad-leak-stacks": check_bad_leak_stacks,
    "bad-other": check_bad_other,
    "spellings": check_spellings,
    "leak-frames": check_leak_frames,
    "leak-same-text": check_leak_same_text,
    "run-as": check_run_as,
    "bad-max-memory": check_bad_max_memory,
    "unwritable": check_unwritable,
    "missing-dir": check_missing_dir,
    "full-disk-tmpfs": check_full_disk_tmpfs,
    "full-disk-fsize": check_full_disk_fsize,
    "alloc-failures": check_alloc_failures,
    "symlink": check_symlink,
    "special-files": check_special_files,
    "setuid": check_setuid,
    "no-debuginfod": check_no_debuginfod,
    "cxx-new": check_cxx_new,
    "heads-churn": check_heads_churn,
    "heads-deepbind": check_heads_deepbind,
    "big-profile": check_big_profile,
    "inline-frames": check_inline_frames,
    "stress-default": lambda: check_stress(False),
    "stress-exact": lambda: check_stress(True),
    "bounded-sizes": check_bounded_sizes,
    "max-memory": check_max_memory,
}
for _mode in ("_exit", "quick_exit", "abort", "segv", "kill"):
    CHECKS["exit-nodump-" + _mode] = (lambda m: lambda: check_exit_nodump(m))(_mode)
for _sig in ("SIGTERM", "SIGINT", "SIGHUP"):
    CHECKS["exit-signal-" + _sig[3:].lower()] = (lambda s: lambda: check_exit_signal(s))(_sig)
CHECKS["exit-signal-own"] = check_exit_signal_own

def run_check(name):
    require_sane_machine()
    CHECKS[name]()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        print(__doc__)
        print("checks: " + " ".join(sorted(CHECKS)))
        sys.exit(2)
    helpers.main(run_check, sys.argv[1])
