"""The leak check's verdicts (src/report/reach.c), end to end.

  exact     HEAPPROF_RATE=1 on tests/leaks/verdicts.c: every site's verdict,
            objects and bytes, as the program's table says.
  label     the exit profile's `leak` label: go tool pprof -tagfocus=leak=definite
            shows only the definitely lost sites, with their bytes; the
            project's decoder sees the same labels.
  sampled   rate 4096 and the default rate, several seeds: the definitely
            lost bytes of many_lost within 4 standard deviations of the truth
            (the deviation from the estimator's maths, not from the output),
            and no reachable site ever called lost.
  gate      HEAPPROF_LEAKS_EXIT_CODE fires on lost memory only; with
            HEAPPROF_LEAKS_EXIT_ANY on anything never freed; the wrapper's
            --leaks-exit-code the same.
  real      bash, git and sqlite3 (memcheck finds nothing lost in these runs):
            no lost stacks, and --leaks-exit-code 3 leaves their exit status.
  small-sample
            tests/leaks/small.c: a sampled "no leaks" says how many samples
            and bytes it rests on and what size of leak it could miss; a run
            that allocated less than that gives no verdict ("no leak seen
            ... too few to tell") and points a CI gate at exact mode. The
            bytes are the exact-mode total, threads that exited and threads
            still running included.
"""
import math
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402
from helpers import check  # noqa: E402

# site: {verdict: (objects, bytes)}, from verdicts.c's table; N is the
# argument given for many_lost and many_kept.
def truth(n):
    t = {
        "lost_overwritten": {"definitely lost": (1, 100)},
        "list_head": {"definitely lost": (1, 40)},
        "list_node": {"indirectly lost": (5, 200)},
        "cycle_node": {"definitely lost": (1, 60), "indirectly lost": (1, 60)},
        "kept_global": {"still reachable": (1, 72)},
        "chain_holder": {"still reachable": (1, 24)},
        "chain_target": {"still reachable": (1, 88)},
        "kept_interior": {"still reachable": (1, 128)},
        "kept_tls": {"still reachable": (1, 112)},
        "kept_thread_stack": {"still reachable": (1, 152)},
        "kept_mmap": {"still reachable": (1, 144)},
    }
    if n:
        t["many_lost"] = {"definitely lost": (n, 100 * n)}
        t["many_kept"] = {"still reachable": (n, 100 * n)}
    return t


KEPT = [s for s in truth(1) if s.startswith("kept_") or s.startswith("chain_") or s == "many_kept"]

_STACK = h.LEAK_STACK
_REACH = re.compile(r"^heapprof: still (reachable|referenced): (\d+) bytes in (\d+) objects?, "
                    r"from (\d+) stacks?")
_FRAME = re.compile(r"^    #(\d+) (\S+)")


def parse(text):
    """{"header": ..., "none": bool, "reach": ..., "sites": {site: {verdict: [obj, bytes, sd]}}}:
    each stack is filed under the first frame that is a site of verdicts.c."""
    out = {"header": None, "none": False, "reach": None, "sites": {}, "stacks": []}
    cur = None
    sites = set(truth(1))
    for line in text.splitlines():
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
                   "sd": int(m.group(3)) if m.group(3) else 0, "site": None}
            out["stacks"].append(cur)
            continue
        m = _REACH.match(line)
        if m:
            out["reach"] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
            cur = None
            continue
        m = _FRAME.match(line)
        if m and cur is not None and cur["site"] is None and m.group(2) in sites:
            cur["site"] = m.group(2)
            v = out["sites"].setdefault(cur["site"], {}).setdefault(cur["verdict"], [0, 0, 0])
            v[0] += cur["objects"]
            v[1] += cur["bytes"]
            v[2] = math.hypot(v[2], cur["sd"])
    return out


def env_for(rate, seed=None, extra=None):
    env = h.base_env()
    env.pop("HEAPPROF_LEAK_SCAN", None)  # the check is on by default: that is what is tested
    env.update({"LD_PRELOAD": h.lib_path(), "HEAPPROF_LEAK_REACHABLE": "1",
                "HEAPPROF_LEAK_STACKS": "1000", "HEAPPROF_LEAK_FRAMES": "3"})
    if rate is not None:
        env["HEAPPROF_RATE"] = str(rate)
    if seed is not None:
        env["HEAPPROF_SEED"] = str(seed)
    env.update(extra or {})
    return env


def run_verdicts(tmp, args, rate, seed=None, extra=None, name="v.pb.gz"):
    env = env_for(rate, seed, extra)
    env["HEAPPROF"] = os.path.join(tmp, name)
    proc = h.run([os.environ["VERDICTS_EXE"]] + args, env=env, timeout=120)
    return proc


def check_exact():
    tmp = h.tempdir()
    n = 1000
    proc = run_verdicts(tmp, [str(n)], 1)
    check(proc.returncode == 0 and proc.stdout == "verdicts: done\n", h.describe(proc))
    got = parse(proc.stderr)
    want = truth(n)
    for site, verdicts in want.items():
        have = got["sites"].get(site, {})
        for verdict, (objs, nbytes) in verdicts.items():
            v = have.get(verdict)
            check(v is not None and (v[0], v[1]) == (objs, nbytes),
                  f"{site}: want {objs} objects, {nbytes} bytes {verdict}, got {have}\n"
                  f"{proc.stderr}")
        extra = set(have) - set(verdicts)
        check(not extra, f"{site}: verdicts {sorted(extra)} as well as {sorted(verdicts)}: {have}")
    lost = [(s, v) for s, vs in want.items() for v in vs if "lost" in v]
    head = got["header"]
    check(head is not None and head["kind"] == "exact" and head["rate"] == 1,
          f"no exact lost header:\n{proc.stderr}")
    def_bytes = sum(b for s, vs in want.items() for v, (o, b) in vs.items() if v == "definitely lost")
    ind_bytes = sum(b for s, vs in want.items() for v, (o, b) in vs.items() if v == "indirectly lost")
    check(head["def_bytes"] == def_bytes and head["ind_bytes"] == ind_bytes,
          f"header {head}, want definitely {def_bytes}, indirectly {ind_bytes} bytes")
    check(head["stacks"] == len(lost), f"header names {head['stacks']} stacks, want {len(lost)}")
    # Lost first, definitely before indirectly.
    order = [s["verdict"] for s in got["stacks"]]
    rank = {"definitely lost": 0, "indirectly lost": 1, "still reachable": 2}
    check(order == sorted(order, key=rank.get), f"stacks out of order: {order}")


def check_label():
    tmp = h.tempdir()
    proc = run_verdicts(tmp, ["100"], 1)
    check(proc.returncode == 0, h.describe(proc))
    path = os.path.join(tmp, "v.pb.gz")
    # The project's decoder: every in-use sample of a verdicts.c site has
    # the label, with the site's verdict.
    doc = h.decode_json(path)
    seen = {}
    for s in doc["samples"]:
        labels = s.get("labels", {})
        if s["values"][3] and "leak" in labels:
            seen[labels["leak"]] = seen.get(labels["leak"], 0) + s["values"][3]
    want = {"definite": 100 + 40 + 60 + 100 * 100, "indirect": 200 + 60}
    for k, v in want.items():
        check(seen.get(k) == v, f"decoder: leak={k} holds {seen.get(k)} in-use bytes, want {v}: "
              f"{seen}")
    check(seen.get("reachable", 0) >= 72 + 24 + 88 + 128 + 112 + 152 + 144 + 100 * 100,
          f"decoder: leak=reachable holds {seen.get('reachable')} bytes")
    if not h.go_or_skip_soft():
        return
    g = h.pprof(["-top", "-tagfocus=leak=definite", "-sample_index=inuse_space", "-unit=B",
                 "-nodefraction=0", "-nodecount=100000", path], tmp)
    check(g.returncode == 0, f"pprof: {g.stderr[-1500:]}")
    flat = {}
    for line in g.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1].endswith("%") and parts[0].endswith("B"):
            flat[parts[5]] = float(parts[0][:-1])
    want_flat = {"lost_overwritten": 100, "list_head": 40, "cycle_node": 60, "many_lost": 10000}
    nonzero = {k: v for k, v in flat.items() if v}
    check(nonzero == want_flat, f"-tagfocus=leak=definite shows {nonzero}, want {want_flat}:\n"
          f"{g.stdout}")


def check_sampled():
    tmp = h.tempdir()
    for rate, n, seeds in ((4096, 20000, range(1, 6)), (h.DEFAULT_RATE, 200000, range(1, 5))):
        p = -math.expm1(-100 / rate)
        sd = math.sqrt(n * 100 * 100 * (1 - p) / p)
        for seed in seeds:
            proc = run_verdicts(tmp, [str(n)], rate, seed)
            check(proc.returncode == 0, h.describe(proc))
            got = parse(proc.stderr)
            lost = got["sites"].get("many_lost", {}).get("definitely lost", [0, 0, 0])
            check(abs(lost[1] - 100 * n) <= 4 * sd,
                  f"rate {rate}, seed {seed}: many_lost estimated {lost[1]} bytes definitely "
                  f"lost, truth {100 * n}, 4 sd = {4 * sd:.0f}")
            for site in KEPT:
                bad = {v: x for v, x in got["sites"].get(site, {}).items() if "lost" in v}
                check(not bad, f"rate {rate}, seed {seed}: reachable {site} called lost: {bad}")
            check(got["header"] is None or got["header"]["kind"] == "estimated",
                  f"sampled summary not marked estimated: {got['header']}")


def check_gate():
    tmp = h.tempdir()
    extra = {"HEAPPROF_LEAKS_EXIT_CODE": "3"}
    proc = run_verdicts(tmp, [], 1, extra=extra)
    check(proc.returncode == 3, "lost memory, exit code 3 asked: " + h.describe(proc))
    proc = run_verdicts(tmp, ["none"], 1, extra=extra)
    check(proc.returncode == 0, "only reachable memory: the gate fired: " + h.describe(proc))
    check(parse(proc.stderr)["none"], f"no 'no leaks' line:\n{proc.stderr}")
    proc = run_verdicts(tmp, ["none"], 1, extra=dict(extra, HEAPPROF_LEAKS_EXIT_ANY="1"))
    check(proc.returncode == 3, "HEAPPROF_LEAKS_EXIT_ANY: " + h.describe(proc))
    proc = run_verdicts(tmp, ["none"], 1, extra=dict(extra, HEAPPROF_LEAK_SCAN="0"))
    check(proc.returncode == 3, "HEAPPROF_LEAK_SCAN=0 (never freed): " + h.describe(proc))
    # The default rate: the gate on the estimate.
    proc = run_verdicts(tmp, ["none"], None, extra=extra)
    check(proc.returncode == 0, "default rate, nothing lost: " + h.describe(proc))
    wrapper = os.environ.get("HEAPPROF_WRAPPER")
    if wrapper:
        env = h.base_env()
        env.pop("HEAPPROF_LEAK_SCAN", None)
        for args, rc in ((["none"], 0), ([], 3)):
            proc = h.run([wrapper, "-o", os.path.join(tmp, "w.pb.gz"), "-r", "1",
                          "--leaks-exit-code", "3", "--", os.environ["VERDICTS_EXE"]] + args,
                         env=env, timeout=120)
            check(proc.returncode == rc, f"heapprof --leaks-exit-code 3 -- verdicts {args}: "
                  + h.describe(proc))


def check_real():
    tmp = h.tempdir()
    progs = []
    if shutil.which("bash"):
        progs.append(["bash", "-c", "a=(); for i in $(seq 2000); do a+=($i); done; echo ${#a[@]}"])
    if shutil.which("sqlite3"):
        progs.append(["sqlite3", ":memory:", "create table t(x); insert into t values(1),(2);"
                      " select sum(x) from t;"])
    if shutil.which("git"):
        repo = os.path.join(tmp, "repo")
        genv = h.base_env()
        genv.update({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                     "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                     "HOME": tmp})
        for cmd in (["git", "init", "-q", repo], ["git", "-C", repo, "commit", "-q",
                                                  "--allow-empty", "-m", "x"]):
            r = h.run(cmd, env=genv)
            check(r.returncode == 0, h.describe(r))
        progs.append(["git", "-C", repo, "status"])
        progs.append(["git", "-C", repo, "log", "--oneline"])
    if not progs:
        h.skip("none of bash, sqlite3, git is installed")
    for argv in progs:
        base = h.run(argv, env=h.base_env())
        for rate in (1, None):
            env = env_for(rate, extra={"HEAPPROF_LEAKS_EXIT_CODE": "3", "HOME": tmp})
            env["HEAPPROF"] = os.path.join(tmp, "real.pb.gz")
            proc = h.run(argv, env=env, timeout=120)
            got = parse(proc.stderr)
            check(proc.returncode == base.returncode,
                  f"{argv[0]} (rate {rate}): exit {proc.returncode}, {base.returncode} alone:\n"
                  f"{proc.stderr[-3000:]}")
            check(got["none"] and got["header"] is None,
                  f"{argv[0]} (rate {rate}): lost memory reported:\n{proc.stderr[-3000:]}")
            check(proc.stdout == base.stdout, f"{argv[0]}: output differs")
        wrapper = os.environ.get("HEAPPROF_WRAPPER")
        if wrapper:
            env = h.base_env()
            env.pop("HEAPPROF_LEAK_SCAN", None)
            env["HOME"] = tmp
            proc = h.run([wrapper, "-o", os.path.join(tmp, "w.pb.gz"), "--leaks-exit-code", "3",
                          "--"] + argv, env=env, timeout=120)
            check(proc.returncode == base.returncode and parse(proc.stderr)["none"],
                  f"heapprof --leaks-exit-code 3 -- {' '.join(argv)}: exit {proc.returncode}, "
                  f"{base.returncode} alone:\n{proc.stderr[-3000:]}")


def size_bytes(text):
    """`48.8 KiB` -> (bytes, the unit's size): as src/report/leaks.c prints."""
    value, unit = text.split()
    scale = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
    return float(value) * scale, scale


def check_near(text, truth, what):
    got, scale = size_bytes(text)
    # One decimal of the unit printed, and a little slack for what runs
    # between the exact run and this one (thread start-up).
    check(abs(got - truth) <= 0.05 * scale + 0.002 * truth,
          f"{what}: {text} allocated, the exact-mode run allocated {truth} bytes")


def run_small(tmp, args, rate, seed=None, gate=True):
    env = env_for(rate, seed, {"HEAPPROF_LEAKS_EXIT_CODE": "9"} if gate else None)
    env["HEAPPROF"] = os.path.join(tmp, f"small-{rate}-{seed}.pb.gz")
    proc = h.run([os.environ["SMALL_EXE"]] + args, env=env, timeout=60)
    check(proc.stdout == "small: done\n", h.describe(proc))
    return proc, env["HEAPPROF"]


def check_small_sample():
    tmp = h.tempdir()
    default = h.DEFAULT_RATE
    floor = default * math.log(20)  # a leak seen 95% of the time: exp(-L/R) = 1/20
    # 500 blocks of 100 bytes lost, a small leak a new user might try: at the default rate
    # almost always no sample at all. Exact mode tells the truth, and the
    # total the sampled runs must give.
    lost = ["500", "0", "0", "100"]
    proc, path = run_small(tmp, lost, 1)
    check(proc.returncode == 9, "exact mode, 500 blocks lost: the gate did not fire: "
          + h.describe(proc))
    truth = sum(smp["values"][1] for smp in h.decode_json(path)["samples"])
    check(50000 <= truth < 60000, f"exact mode: {truth} bytes allocated, want 50000 and a little")
    unsure = 0
    for seed in range(1, 11):
        proc, _ = run_small(tmp, lost, None, seed)
        got = parse(proc.stderr)
        lines = [h.no_leaks_line(ln) for ln in proc.stderr.splitlines() if h.no_leaks_line(ln)]
        if got["header"] is not None:
            # A lost block was sampled (9% of runs): then the gate fires.
            check(proc.returncode == 9, f"seed {seed}: lost memory found, exit status "
                  f"{proc.returncode}:\n{proc.stderr}")
            continue
        check(len(lines) == 1 and not lines[0]["told"],
              f"seed {seed}: 50000 bytes allocated in all at rate {default}: want `no leak "
              f"seen ... too few to tell`, not a verdict:\n{proc.stderr}")
        line = lines[0]
        unsure += 1
        check(line["samples"] == 0 and line["rate"] == default and proc.returncode == 0,
              f"seed {seed}: {line}, exit status {proc.returncode}")
        check_near(line["allocated"], truth, f"seed {seed}")
        check_near(line["floor"], floor, f"seed {seed}: the 95% floor")
        missed = 100 * math.exp(-truth / default)
        check(abs(line["missed"] - missed) <= 1,
              f"seed {seed}: says all of it would go unseen {line['missed']}% of the time, "
              f"exp(-{truth}/{default}) is {missed:.1f}%")
        check("HEAPPROF_RATE=1" in proc.stderr, "no pointer to exact mode")
    check(unsure > 0, "ten seeds, and every run sampled a lost block (each does with p = 0.09)")

    # Enough bytes for a verdict: 4 MiB freed by the main thread and four
    # others (two of them exited, two still running at exit), nothing lost.
    # The verdict says what it rests on; the bytes count every thread's.
    churn = ["0", "1000", "4", "1024"]
    proc, path = run_small(tmp, churn, 1, gate=False)
    truth = sum(smp["values"][1] for smp in h.decode_json(path)["samples"])
    check(truth >= 5 * 1000 * 1024, f"exact mode: {truth} bytes allocated")
    rate = 65536
    proc, _ = run_small(tmp, churn, rate, 1)
    got = parse(proc.stderr)
    line = got["header"] is None and [h.no_leaks_line(ln) for ln in proc.stderr.splitlines()
                                      if h.no_leaks_line(ln)]
    check(line and line[0]["told"] and line[0]["kind"] == "estimated" and
          line[0]["samples"] and line[0]["samples"] > 0 and proc.returncode == 0,
          f"rate {rate}, nothing lost: want `no leaks: ... N samples of ...`:\n{proc.stderr}")
    check_near(line[0]["allocated"], truth, f"rate {rate}")
    check_near(line[0]["floor"], rate * math.log(20), f"rate {rate}: the 95% floor")
    # No sample at all: the count comes only from each thread's countdown,
    # read at its exit and, for those still running, at the dump.
    proc, _ = run_small(tmp, churn, 1 << 40, 1)
    line = [h.no_leaks_line(ln) for ln in proc.stderr.splitlines() if h.no_leaks_line(ln)]
    check(line and not line[0]["told"] and line[0]["samples"] == 0,
          f"rate 2^40: want `no leak seen in 0 samples`:\n{proc.stderr}")
    check_near(line[0]["allocated"], truth, "rate 2^40 (threads that exited and still ran)")
    # Exact mode is the truth, and says nothing more.
    proc, _ = run_small(tmp, churn, 1)
    check("heapprof: no leaks: no memory lost (exact, rate 1)" in proc.stderr.splitlines(),
          f"exact mode:\n{proc.stderr}")


if __name__ == "__main__":
    h.main({"exact": check_exact, "label": check_label, "sampled": check_sampled,
            "gate": check_gate, "real": check_real,
            "small-sample": check_small_sample}[sys.argv[1]])
