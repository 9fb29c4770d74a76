"""Real programs under heapprof: programs no one here wrote, from Debian
packages (scripts/extra-packages.txt), run with LD_PRELOAD=libheapprof.so at
the default rate and in exact mode. For each: the same stdout (or output
file) and exit status as without heapprof, and a valid profile from every
process that exited normally, named by pid for all but the one the test
started.

rb_pidlog.so, preloaded after heapprof, lists every process whose exit
handlers ran (those are the ones that must have written a profile), so the
count of profiles is checked against the count of processes.

Usage: real_programs.py PROGRAM   (python3 sqlite3 git gcc xz redis)
A program that is not installed makes its test skip (77).
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import helpers
from helpers import Failure, check
from robust import (clean_env, describe, hp_env, pid_name, read_pidlog, require_sane_machine, run,
                    temp_files)

# The rates each program runs at: the default, and exact mode.
RATES = (None, 1)

# The programs run with the system's PATH only: a PATH through version
# managers' shims (pyenv's, say) makes git's helpers run those scripts.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def base_env(extra=None):
    """The environment of the runs without heapprof."""
    env = clean_env()
    for key in list(env):
        if key.startswith("PYENV"):
            del env[key]
    env["PATH"] = SYSTEM_PATH
    env.update(extra or {})
    return env


def need(*programs):
    paths = []
    for p in programs:
        path = shutil.which(p) if not os.path.isabs(p) else (p if os.path.exists(p) else None)
        if not path:
            helpers.skip(f"{p} is not installed (scripts/deps.sh installs it)")
        paths.append(path)
    return paths


def mapping_exe(path):
    """The main executable a profile names: its first mapping's file."""
    doc = helpers.decode_json(path)
    check(doc["mappings"], f"{path}: no mappings")
    return doc["mappings"][0]["file"]


class Profiled:
    """The profiles of one command run under heapprof: in a directory of
    their own, NAME.pb.gz from the process the test started and NAME.PID.pb.gz
    from each descendant, checked against rb_pidlog's list of processes."""

    def __init__(self, root, name, rate):
        self.dir = os.path.join(root, f"{name}-{'exact' if rate == 1 else 'default'}")
        os.makedirs(self.dir)
        self.profile = os.path.join(self.dir, name + ".pb.gz")
        self.log = os.path.join(self.dir, "pids.log")
        self.rate = rate
        self.name = name

    def env(self, extra=None):
        env = hp_env(self.profile, self.rate, pidlog=self.log, extra=extra)
        for key in list(env):
            if key.startswith("PYENV"):
                del env[key]
        env["PATH"] = SYSTEM_PATH
        return env

    def verify(self, root_pid):
        """Every process that exited normally left a valid profile, with the
        right name; nothing else is in the directory. Returns {exe: count}."""
        what = f"{self.name} (rate {self.rate or 'default'})"
        exited = read_pidlog(self.log)
        check(root_pid in exited, f"{what}: the process the test started ({root_pid}) did not "
              f"exit normally, or rb_pidlog did not see it: {exited}")
        check(not temp_files(self.dir), f"{what}: temporary files left: {temp_files(self.dir)}")
        expected = {self.profile: exited[root_pid]}
        for pid, exe_path in exited.items():
            if pid != root_pid:
                expected[pid_name(self.profile, pid)] = exe_path
        have = {os.path.join(self.dir, f) for f in os.listdir(self.dir)} - {self.log}
        missing = sorted(os.path.basename(p) + f" ({os.path.basename(expected[p])})"
                         for p in set(expected) - have)
        extra = sorted(os.path.basename(p) for p in have - set(expected))
        check(not missing and not extra,
              f"{what}: {len(exited)} processes exited normally; profiles missing for "
              f"{missing}, unexpected files {extra}")
        exes = {}
        for path, exe_path in expected.items():
            helpers.decode_ok(path)
            named = mapping_exe(path)
            check(os.path.realpath(named) == os.path.realpath(exe_path),
                  f"{what}: {os.path.basename(path)} names {named}, but that process was "
                  f"{exe_path}")
            base = os.path.basename(exe_path)
            exes[base] = exes.get(base, 0) + 1
        return exes


def compare(base, got, what, mask=None):
    """Same exit status and stdout (after mask, for timing figures)."""
    check(got.returncode == base.returncode,
          f"{what}: exit status {got.returncode} under heapprof, {base.returncode} without\n" +
          describe(got))
    a, b = base.stdout, got.stdout
    if mask:
        a, b = mask(a), mask(b)
    check(a == b, f"{what}: stdout differs under heapprof\n--- without ---\n{str(a)[:3000]}\n"
          f"--- with ---\n{str(b)[:3000]}")


def simple(name, argv, cwd=None, stdin_text=None, env_extra=None, timeout=60):
    """Runs argv without heapprof and then at each rate with it."""
    tmp = helpers.tempdir()

    def go(env, sub):
        wd = os.path.join(tmp, sub)
        os.makedirs(wd, exist_ok=True)
        stdin = subprocess.DEVNULL
        if stdin_text is not None:
            path = os.path.join(wd, "stdin.txt")
            with open(path, "w") as f:
                f.write(stdin_text)
            stdin = open(path)
        try:
            return run(argv, env, cwd=cwd or wd, stdin=stdin, timeout=timeout)
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()

    base = go(base_env(env_extra), "base")
    check(base.returncode == 0, f"{name} without heapprof: " + describe(base))
    for rate in RATES:
        p = Profiled(tmp, name, rate)
        r = go(p.env(env_extra), f"run-{rate}")
        compare(base, r, f"{name} (rate {rate or 'default'})")
        p.verify(r.pid)


# ---- the programs -------------------------------------------------------------

PY_SCRIPT = r"""
import json, subprocess, sys, threading
# Dicts of every shape, and lists, strings and tuples in them.
d = {}
for i in range(150000):
    d[f"key{i}"] = {"n": i, "sq": i * i, "s": str(i) * (i % 7), "t": (i, -i)}
total = sum(v["sq"] % 1000 for v in d.values())
# Work on other threads too.
out = [0] * 4
def work(k):
    out[k] = len(json.dumps({str(j): [j] * 5 for j in range(20000 + k)}))
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
del d
# A child interpreter: exec'd by a profiled process, it writes NAME.PID.
child = subprocess.run([sys.executable, "-c", "print(sum(range(10**5)))"],
                       capture_output=True, text=True, check=True)
print(total, out, child.stdout.strip())
"""


def check_python3():
    py, = need("/usr/bin/python3")
    simple("python3", [py, "-c", PY_SCRIPT], env_extra={"PYTHONHASHSEED": "0"})


SQL = """
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000)
INSERT INTO t SELECT x, x % 97, 'name-' || x || '-' || hex(x * 31), x * 1.5 FROM c;
CREATE INDEX t_grp ON t(grp, name);
SELECT grp, count(*), sum(val), min(name), max(name) FROM t GROUP BY grp ORDER BY grp LIMIT 10;
UPDATE t SET val = val * 2 WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), total(val), group_concat(DISTINCT grp % 10) FROM t;
CREATE TABLE u AS SELECT grp, count(*) AS n FROM t GROUP BY grp;
SELECT a.grp, a.n, b.n FROM u a JOIN u b ON b.grp = (a.grp + 1) % 97 ORDER BY a.grp LIMIT 5;
SELECT name FROM t WHERE name LIKE '%-77%' ORDER BY id LIMIT 5;
VACUUM;
PRAGMA integrity_check;
"""


def check_sqlite3():
    sqlite, = need("sqlite3")
    # A database file in each run's own directory (the working directory).
    simple("sqlite3", [sqlite, "-batch", "test.db"], stdin_text=SQL)


def git_env(home):
    return {
        "HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Robust Test", "GIT_AUTHOR_EMAIL": "robust@example.invalid",
        "GIT_COMMITTER_NAME": "Robust Test", "GIT_COMMITTER_EMAIL": "robust@example.invalid",
        "GIT_AUTHOR_DATE": "2024-01-02T03:04:05+00:00",
        "GIT_COMMITTER_DATE": "2024-01-02T03:04:05+00:00",
        "LC_ALL": "C", "TZ": "UTC",
    }


def check_git():
    git, = need("git")
    tmp = helpers.tempdir()
    steps = [
        ["init", "-q", "-b", "main", "."],
        ["add", "-A"],
        ["commit", "-q", "-m", "first"],
        ["EDIT"],
        ["commit", "-q", "-a", "-m", "second"],
        ["log", "--format=%H %an %ad %s", "--stat"],
        ["diff", "HEAD~1", "--numstat"],
        ["gc", "--quiet"],  # runs pack-refs, reflog, repack, pack-objects, prune...
        ["fsck", "--no-progress"],
        ["cat-file", "-p", "HEAD"],
        ["rev-list", "--all", "--objects"],
    ]

    def make_repo(path):
        os.makedirs(os.path.join(path, "src"))
        for i in range(40):
            with open(os.path.join(path, "src", f"f{i}.txt"), "w") as f:
                f.write("".join(f"line {j} of file {i}\n" for j in range(200 + i)))

    def edit(path):
        for i in range(0, 40, 3):
            with open(os.path.join(path, "src", f"f{i}.txt"), "a") as f:
                f.write(f"more for {i}\n")

    def sequence(label, env_for):
        repo = os.path.join(tmp, label, "repo")
        home = os.path.join(tmp, label, "home")
        os.makedirs(home)
        make_repo(repo)
        results = []
        for n, step in enumerate(steps):
            if step == ["EDIT"]:
                edit(repo)
                continue
            env, profiled = env_for(n, step, git_env(home))
            r = run([git] + step, env, cwd=repo)
            results.append((step, r, profiled))
        return results

    base = sequence("base", lambda n, s, extra: (base_env(extra), None))
    for step, r, _ in base:
        check(r.returncode == 0, f"git {' '.join(step)} without heapprof: " + describe(r))
    counts = {}
    for rate in RATES:
        def env_for(n, step, extra, rate=rate):
            p = Profiled(os.path.join(tmp, f"profiles-{rate}"), f"git{n}-{step[0]}", rate)
            return p.env(extra), p
        os.makedirs(os.path.join(tmp, f"profiles-{rate}"))
        got = sequence(f"run-{rate}", env_for)
        for (step, b, _), (_, r, p) in zip(base, got):
            compare(b, r, f"git {' '.join(step)} (rate {rate or 'default'})")
            for exe_name, k in p.verify(r.pid).items():
                counts[exe_name] = counts.get(exe_name, 0) + k
    print("processes profiled:", counts)


HELLO_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
int main(void)
{
    int n = 1000, *v = malloc(n * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = (i * 7919) % n;
    qsort(v, n, sizeof *v, cmp);
    printf("hello from gcc: %d %d %d\n", v[0], v[n / 2], v[n - 1]);
    free(v);
    return 0;
}
"""


def check_gcc():
    gcc, = need("gcc")
    tmp = helpers.tempdir()
    for rate in ["base"] + list(RATES):
        wd = os.path.join(tmp, f"w-{rate}")
        os.makedirs(wd)
        with open(os.path.join(wd, "hello.c"), "w") as f:
            f.write(HELLO_C)
    argv = [gcc, "-O1", "-g", "-Wall", "-o", "hello", "hello.c"]
    base = run(argv, base_env(), cwd=os.path.join(tmp, "w-base"), timeout=120)
    check(base.returncode == 0, "gcc without heapprof: " + describe(base))
    base_out = run([os.path.join(tmp, "w-base", "hello")], base_env())
    for rate in RATES:
        wd = os.path.join(tmp, f"w-{rate}")
        p = Profiled(tmp, "gcc", rate)
        r = run(argv, p.env(), cwd=wd, timeout=120)
        compare(base, r, f"gcc (rate {rate or 'default'})")
        out = run([os.path.join(wd, "hello")], base_env())
        compare(base_out, out, f"the program gcc built (rate {rate or 'default'})")
        exes = p.verify(r.pid)
        # The driver and each program it runs, each its own profile.
        names = " ".join(sorted(exes))
        for part in ("gcc", "cc1", "as", "collect2", "ld"):
            check(any(re.search(rf"(^|[-/]){re.escape(part)}($|[-.])", e) for e in exes),
                  f"gcc (rate {rate or 'default'}): no profile from {part}; profiles from: "
                  f"{names}")
        print(f"rate {rate or 'default'}: profiles from {names}")


def make_data(path, size):
    """Deterministic data that compresses neither too well nor too badly."""
    chunks = []
    h = hashlib.sha256(b"heapprof")
    total = 0
    i = 0
    while total < size:
        h = hashlib.sha256(h.digest())
        block = (f"record {i} " * 8).encode() + h.digest() * 2
        chunks.append(block)
        total += len(block)
        i += 1
    with open(path, "wb") as f:
        f.write(b"".join(chunks)[:size])


def sha(data):
    return hashlib.sha256(data).hexdigest()


def check_xz():
    xz, = need("xz")
    tmp = helpers.tempdir()
    data = os.path.join(tmp, "data")
    make_data(data, 6 << 20)
    with open(data, "rb") as f:
        want = sha(f.read())
    # 1 MiB blocks, so two threads really share the work.
    comp = [xz, "-T2", "--block-size=1MiB", "-6", "-c", data]
    base = run(comp, base_env(), binary=True, timeout=120)
    check(base.returncode == 0, "xz without heapprof: " + describe(base))
    packed = os.path.join(tmp, "data.xz")
    with open(packed, "wb") as f:
        f.write(base.stdout)
    unpack = [xz, "-T2", "-d", "-c", packed]
    for rate in RATES:
        p = Profiled(tmp, "xz", rate)
        r = run(comp, p.env(), binary=True, timeout=120)
        check(r.returncode == 0 and sha(r.stdout) == sha(base.stdout),
              f"xz -T2 (rate {rate or 'default'}): different output or status: " + describe(r))
        p.verify(r.pid)
        p = Profiled(tmp, "unxz", rate)
        r = run(unpack, p.env(), binary=True, timeout=120)
        check(r.returncode == 0 and sha(r.stdout) == want,
              f"xz -d -T2 (rate {rate or 'default'}): wrong data or status: " + describe(r))
        p.verify(r.pid)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"redis-server exited early with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"redis-server did not listen on 127.0.0.1:{port} within the deadline")


REDIS_CMDS = """SET greeting hello
GET greeting
INCR counter
INCRBY counter 41
RPUSH list a b c d e
LRANGE list 0 -1
HSET h f1 v1 f2 v2
HGETALL h
SADD s x y z
SCARD s
ZADD z 1 one 2 two 3 three
ZRANGE z 0 -1 WITHSCORES
DEL list
EXISTS list greeting
DBSIZE
"""


def redis_scenario(tmp, label, server, cli, bench, envs):
    """One server on a free loopback port, a scripted client session, a
    small benchmark, a shutdown. envs: (server, cli, bench, shutdown) env
    dicts. Returns the results to compare and the server's."""
    wd = os.path.join(tmp, label)
    os.makedirs(wd)
    port = free_port()
    argv = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
            "no", "--daemonize", "no", "--dir", wd, "--logfile", os.path.join(wd, "log"),
            "--protected-mode", "yes"]
    proc = subprocess.Popen(argv, env=envs[0], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc, time.monotonic() + 60)  # a bound on a hang
        cmds = os.path.join(wd, "cmds")
        with open(cmds, "w") as f:
            f.write(REDIS_CMDS)
        with open(cmds) as stdin:
            session = run([cli, "-p", str(port)], envs[1], stdin=stdin, timeout=30)
        load = run([bench, "-h", "127.0.0.1", "-p", str(port), "-n", "3000", "-c", "4", "-q",
                    "-t", "set,get,incr,lpush,lpop"], envs[2], timeout=60)
        down = run([cli, "-p", str(port), "shutdown", "nosave"], envs[3], timeout=30)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure(f"redis-server ({label}) did not exit after SHUTDOWN")
        err = proc.stderr.read().decode(errors="replace")
        return session, load, down, proc, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def bench_mask(text):
    """redis-benchmark's figures vary; the tests it ran and their order do
    not. Keeps `NAME: ` from each result line."""
    return [line.split(":")[0].strip() for line in text.replace("\r", "\n").splitlines()
            if "requests per second" in line and "rps=" not in line]


def check_redis():
    server, cli, bench = need("redis-server", "redis-cli", "redis-benchmark")
    tmp = helpers.tempdir()
    session, load, down, proc, err = redis_scenario(tmp, "base", server, cli, bench,
                                                    [base_env()] * 4)
    check(proc.returncode == 0 and session.returncode == 0 and load.returncode == 0,
          f"redis without heapprof: server {proc.returncode} {err}\n" + describe(session) +
          describe(load))
    check(len(bench_mask(load.stdout)) == 5, "redis-benchmark printed no results: " +
          describe(load))
    for rate in RATES:
        label = f"rate {rate or 'default'}"
        ps = [Profiled(tmp, name, rate) for name in ("server", "cli", "bench", "shutdown")]
        got = redis_scenario(tmp, f"run-{rate}", server, cli, bench, [p.env() for p in ps])
        s2, l2, d2, proc2, err2 = got
        check(proc2.returncode == proc.returncode,
              f"redis-server ({label}): exit status {proc2.returncode}, {proc.returncode} "
              f"without heapprof; stderr: {err2[-2000:]}")
        compare(session, s2, f"redis-cli session ({label})")
        compare(load, l2, f"redis-benchmark ({label})", mask=bench_mask)
        compare(down, d2, f"redis-cli shutdown ({label})")
        for p, pid in zip(ps, (proc2.pid, s2.pid, l2.pid, d2.pid)):
            p.verify(pid)


CHECKS = {"python3": check_python3, "sqlite3": check_sqlite3, "git": check_git,
          "gcc": check_gcc, "xz": check_xz, "redis": check_redis}

def run_check(name):
    require_sane_machine()
    CHECKS[name]()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        print(__doc__)
        sys.exit(2)
    helpers.main(run_check, sys.argv[1])
