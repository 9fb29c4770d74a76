"""The leak check at its edges (issue 19), one case per test:

    test_edges.py CASE

Each case runs a program of tests/leaks/edges/ once without heapprof and
once preloaded with it in exact mode (HEAPPROF_RATE=1,
HEAPPROF_LEAK_REACHABLE=1), and holds heapprof to:

  - the program's own exit status and stdout, as without heapprof;
  - a leak summary made by the leak check (not the "never freed" fallback);
  - each marker site's verdict, objects and bytes, as valgrind memcheck and
    LeakSanitizer give them. The truth is written here and in the programs'
    header comments (established with both tools: tests/leaks/edges/TRUTH.md);
    neither tool is run by the test. Where they disagree, either verdict is
    accepted, unless the issue settles it (the comments say which and why).

The small-stack cases (class 9) run in exact mode and at the default rate
and hold heapprof to the exit status 7 the program asks for, a profile that
decodes and a leak summary. The RLIMIT_AS cases (class 10) hold it to the
CI gate's status, a summary, and no partial profile.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402
from helpers import check  # noqa: E402

R, D, I = "still reachable", "definitely lost", "indirectly lost"


def one(verdict, objects, nbytes):
    """The only acceptable answer for a site: all its objects have verdict."""
    return [{verdict: (objects, nbytes)}]


# case: exe (EDGES_EXE, EDGES_STALE_EXE or EDGES_CXX_EXE), args, sites
# {site: [acceptable {verdict: (objects, bytes or None)}, ...]}, and the
# checks that the case set up what it says (stdout from both runs, stderr of
# the run under heapprof).
CASES = {
    # Class 1: exit() from another thread or a signal handler; main's local.
    "exit-thread-join": dict(sites={"kept_main_local": one(R, 1, 1101)}),
    "exit-thread-spin": dict(sites={"kept_main_local": one(R, 1, 1101)}),
    "exit-altstack-main": dict(sites={"kept_main_local": one(R, 1, 1101)}),
    "exit-altstack-thread": dict(sites={"kept_main_local": one(R, 1, 1101)}),
    # Class 2: a running thread on a stack reused from an exited thread.
    "reused-stack-blocked": dict(sites={"kept_reused_stack": one(R, 1, 1202)},
                                 stdout_has="B's stack is A's"),
    "reused-stack-spin": dict(sites={"kept_reused_stack": one(R, 1, 1202)},
                              stdout_has="B's stack is A's"),
    "reused-stack-smaller": dict(sites={"kept_reused_stack": one(R, 1, 1202)},
                                 stdout_has="B's stack is A's"),
    # Class 3: shared and fork-special mappings. LSan scans no mappings
    # (definitely lost); memcheck scans them (reachable), and so does
    # heapprof by its README ("memory it mapped itself"): reachable.
    "shared-anon": dict(sites={"kept_shared": one(R, 1, 1303)}),
    "shm-open": dict(sites={"kept_shared": one(R, 1, 1303)}),
    "memfd": dict(sites={"kept_shared": one(R, 1, 1303)}),
    "shared-file": dict(args=["{tmp}"], sites={"kept_shared": one(R, 1, 1303)}),
    "sysv-shm": dict(sites={"kept_shared": one(R, 1, 1303)}),
    "dontfork": dict(sites={"kept_shared": one(R, 1, 1303)}),
    "wipeonfork": dict(sites={"kept_shared": one(R, 1, 1303)}),
    # Class 4: sbrk memory: memcheck reachable, LSan lost; reachable as class 3.
    "sbrk": dict(sites={"kept_sbrk": one(R, 1, 1404)}),
    # Class 5: only in another running thread's registers.
    "register": dict(sites={"kept_in_register": one(R, 1, 1505)}),
    # Class 6: stale copies on the exiting thread's stack. stale-list: memcheck
    # 1 definitely + 99,999 indirectly lost; LSan calls it reachable through a
    # stale copy in exit()'s frames (with use_stacks=0 it reports all 100,000
    # lost): the issue settles it as memcheck's.
    "stale-last": dict(exe="EDGES_STALE_EXE", args=["last"],
                       sites={"lost_last": one(D, 1, 1606)}),
    "stale-list": dict(exe="EDGES_STALE_EXE", args=["list"],
                       sites={"lost_list_node": [{D: (1, 32), I: (99999, 3199968)}]}),
    # Class 7: allocator bookkeeping is no reference.
    "largebin": dict(sites={"lost_largebin": one(D, 1, 1096),
                            "kept_reused_chunk": one(R, 1, 3752),
                            "kept_guard": one(R, 2, 48)},
                     stderr_has="laid out as planned, 3 stale words"),
    "thread-arena": dict(sites={"lost_arena_target": one(D, 1, 1707)},
                         stderr_has="were in an arena of their own"),
    # Class 8: built-in suppressions must not hide the program's own leaks.
    "dtor": dict(sites={"lost_in_destructor": one(D, 1, 1808)}),
    "dlopen-ctor": dict(args=["{ctorlib}"], sites={"lost_in_lib_ctor": one(D, 1, 1909)}),
    # newlocale: memcheck definitely lost (328 bytes with glibc 2.36); LSan
    # reachable, through a stale register of the thread that checks (with
    # use_registers=0 it reports it): either, but it must be shown.
    "newlocale": dict(sites={"lost_newlocale": [{D: (1, None)}, {R: (1, None)}]}),
    # Class 9: exit() on a small stack (run at both rates; see check_small).
    "altstack-sigstksz": dict(kind="small"),
    "altstack-16k": dict(kind="small"),
    "altstack-32k": dict(kind="small"),
    "altstack-48k": dict(kind="small"),
    "thread-16k": dict(kind="small"),
    # Class 10: a tight RLIMIT_AS (see check_rlimit).
    "rlimit-as-lost": dict(kind="rlimit", lost=True),
    "rlimit-as-none": dict(kind="rlimit", lost=False),
    # Beyond the list.
    "tls-live-thread": dict(sites={"kept_tls_thread": one(R, 1, 2313)}),
    "tls-exited-thread": dict(sites={"lost_tls_exited": one(D, 1, 2414)}),
    "xor": dict(sites={"lost_xor": one(D, 1, 2515)}),
    "pipe": dict(sites={"lost_in_pipe": one(D, 1, 2616)}),
    "poll-thread": dict(sites={"kept_poll_thread": one(R, 1, 2717)}),
    "mprotect-ro": dict(sites={"lost_in_readonly_map": one(D, 1, 2818)}),
    "dlopen-global": dict(args=["{globlib}"], sites={"kept_lib_global": one(R, 1, 2919)}),
    "getattr-first": dict(sites={"kept_after_getattr": one(R, 1, 3222)}),
    "cxx-static-vector": dict(exe="EDGES_CXX_EXE", args=["vector"],
                              sites={"lost_in_static_vector": one(D, 1, 3020)}),
    "cxx-leaky-singleton": dict(exe="EDGES_CXX_EXE", args=["singleton"],
                                sites={"kept_in_leaky_singleton": one(R, 1, 3121)}),
}

SMALL_SITES = {"kept_small_stack": one(R, 1, 2010), "lost_small_stack": one(D, 1, 2111)}
SITE_NAMES = set(SMALL_SITES) | {"lost_rlimit"}
for _c in CASES.values():
    SITE_NAMES |= set(_c.get("sites", {}))

# ---- the leak summary ----

_VERDICT_HEADER = re.compile(
    r"^heapprof: (\d+) bytes in (\d+) objects? lost, from (\d+) stacks? \((exact|estimated), "
    r"rate (\d+)\): definitely (\d+) bytes in (\d+) objects?, indirectly (\d+) bytes in "
    r"(\d+) objects?$")
# "no leaks: no memory lost (exact, rate 1)", with what a sampled verdict
# rests on after it; or, when a sample is too small to tell, "no leak seen".
_NONE = re.compile(r"^heapprof: (?:no leaks: no memory lost \((exact|estimated), rate (\d+)\)"
                   r"|no leak seen in \d+ samples? of .*\(rate (\d+)\))")
_NEVER_FREED = re.compile(r"^heapprof: (\d+) bytes in (\d+) objects? never freed, from (\d+) "
                          r"stacks? \((exact|estimated), rate (\d+)\)$")
_ALL_FREED = "heapprof: no leaks: every sampled allocation was freed"
_STACK = re.compile(
    r"^heapprof: leak #(\d+): (\d+) bytes(?: \(± \d+, \d+ samples?\))? in (\d+) objects?"
    r"(?: (definitely lost|indirectly lost|still reachable|still referenced),)? allocated from:$")
_FRAME = re.compile(r"^    #\d+ (.+?)(?: at \S+:\d+| in \S+)$")


def parse(text):
    """{"kind": "check" | "never-freed" | None, "rate": ..., "sites": {site:
    {verdict: [objects, bytes]}}}: each stack filed under its first frame that
    is a marker site ("never freed" stacks under the verdict "never freed")."""
    out = {"kind": None, "exact": None, "sites": {}}
    cur = None
    for line in text.splitlines():
        m = _VERDICT_HEADER.match(line)
        if m:
            out["kind"], out["exact"] = "check", m.group(4) == "exact"
            continue
        m = _NONE.match(line)
        if m:
            out["kind"], out["exact"] = "check", m.group(1) == "exact" or m.group(3) == "1"
            continue
        m = _NEVER_FREED.match(line)
        if m or line == _ALL_FREED:
            out["kind"] = "never-freed"
            out["exact"] = bool(m) and m.group(4) == "exact"
            continue
        m = _STACK.match(line)
        if m:
            cur = {"verdict": m.group(4) or "never freed", "objects": int(m.group(3)),
                   "bytes": int(m.group(2)), "site": None}
            continue
        m = _FRAME.match(line)
        if m and cur is not None:
            if cur["site"] is None:
                name = h.short_name(re.sub(r"(\+0x[0-9a-f]+|@0x[0-9a-f]+)$", "", m.group(1)))
                if name in SITE_NAMES:
                    cur["site"] = name
                    v = out["sites"].setdefault(name, {}).setdefault(cur["verdict"], [0, 0])
                    v[0] += cur["objects"]
                    v[1] += cur["bytes"]
            continue
        if not line.startswith("    "):
            cur = None
    return out


def site_matches(have, alternatives):
    for alt in alternatives:
        if set(have) != set(alt):
            continue
        if all(have[v][0] == objs and (nbytes is None or have[v][1] == nbytes)
               for v, (objs, nbytes) in alt.items()):
            return True
    return False


def show(alternatives):
    return " or ".join(
        ", ".join(f"{o} objects{'' if b is None else f' ({b} bytes)'} {v}"
                  for v, (o, b) in alt.items()) for alt in alternatives)


def check_sites(want, got, stderr, what):
    for site, alternatives in want.items():
        have = got["sites"].get(site, {})
        check(site_matches(have, alternatives),
              f"{what}: {site}: want {show(alternatives)}; heapprof says "
              f"{ {v: tuple(x) for v, x in have.items()} or 'nothing (not listed)'}\n"
              f"--- stderr ---\n{stderr[-4000:]}")


# ---- running ----

def exe_path(case):
    return h.env_path(case.get("exe", "EDGES_EXE"))


def argv_of(name, case, tmp):
    subst = {"{tmp}": tmp, "{ctorlib}": os.environ.get("EDGES_CTORLIB", ""),
             "{globlib}": os.environ.get("EDGES_GLOBLIB", "")}
    args = [subst.get(a, a) for a in case.get("args", [])]
    if case.get("exe", "EDGES_EXE") == "EDGES_EXE":
        args = [name] + args
    return [exe_path(case)] + args


# A run of these small programs takes well under a second; more is a hang.
RUN_TIMEOUT = 20


def heapprof_env(profile, rate=1, extra=None):
    env = h.base_env()
    env.pop("HEAPPROF_LEAK_SCAN", None)  # the check is on by default: that is what is tested
    env.update({"LD_PRELOAD": h.lib_path(), "HEAPPROF": profile, "HEAPPROF_LEAK_REACHABLE": "1",
                "HEAPPROF_LEAK_STACKS": "1000", "HEAPPROF_LEAK_FRAMES": "16"})
    if rate is not None:
        env["HEAPPROF_RATE"] = str(rate)
    env.update(extra or {})
    return env


def run_heapprof(argv, env, what):
    try:
        return h.run(argv, env=env, timeout=RUN_TIMEOUT)
    except h.Failure as e:
        raise h.Failure(f"{what}: hung under heapprof (it ends at once without): {e}")


def status(rc):
    return f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"


def baseline(argv):
    base = h.run(argv, env=h.base_env(), timeout=RUN_TIMEOUT)
    if base.returncode == 77:
        h.skip(base.stdout.strip() or "the case cannot be made on this machine")
    return base


def check_same(base, proc, what, want_rc=None):
    rc = base.returncode if want_rc is None else want_rc
    check(proc.returncode == rc,
          f"{what}: {status(proc.returncode)}, want {rc} (without heapprof: "
          f"{status(base.returncode)})\n" + h.describe(proc))
    check(proc.stdout == base.stdout,
          f"{what}: stdout differs from the run without heapprof:\n--- without ---\n"
          f"{base.stdout}--- with ---\n{proc.stdout}")


def check_verdicts(name, case):
    tmp = h.tempdir()
    argv = argv_of(name, case, tmp)
    base = baseline(argv)
    if "stdout_has" in case:
        check(case["stdout_has"] in base.stdout,
              f"without heapprof the case is not what it says: no {case['stdout_has']!r} in "
              f"stdout:\n{base.stdout}")
    proc = run_heapprof(argv, heapprof_env(os.path.join(tmp, "edge.pb.gz")), f"{name} (exact)")
    check_same(base, proc, f"{name} (exact)")
    if "stderr_has" in case:
        check(case["stderr_has"] in proc.stderr,
              f"under heapprof the case is not what it says: no {case['stderr_has']!r} on "
              f"stderr:\n{proc.stderr[-3000:]}")
    got = parse(proc.stderr)
    check(got["kind"] == "check" and got["exact"],
          f"{name}: no summary of an exact leak check (HEAPPROF_RATE=1):\n{proc.stderr[-3000:]}")
    check_sites(case["sites"], got, proc.stderr, name)


def check_profile(path, proc, what):
    """A complete profile, or none and a line of heapprof's saying so; nothing
    else left beside it."""
    d = os.path.dirname(path)
    others = sorted(set(os.listdir(d)) - {os.path.basename(path)})
    check(not others, f"{what}: files left beside the profile: {others}")
    if os.path.exists(path):
        h.decode_ok(path)
        return True
    said = [ln for ln in proc.stderr.splitlines() if ln.startswith("heapprof: ") and path in ln]
    check(said, f"{what}: no profile {path}, and no line of heapprof's naming it:\n"
          f"{proc.stderr[-3000:]}")
    return False


def check_small(name, case):
    """exit(7) on a small stack: status 7, the profile, the summary, at both
    rates; in exact mode, when the check was made, its verdicts."""
    tmp = h.tempdir()
    argv = argv_of(name, case, tmp)
    base = baseline(argv)
    check(base.returncode == 7, f"without heapprof: {status(base.returncode)}, want 7")
    for rate in (1, None):
        what = f"{name} ({'exact' if rate else 'default rate'})"
        path = os.path.join(tmp, f"small-{rate or 'default'}", "edge.pb.gz")
        os.makedirs(os.path.dirname(path))
        proc = run_heapprof(argv, heapprof_env(path, rate), what)
        check_same(base, proc, what, want_rc=7)
        check(os.path.exists(path), f"{what}: no profile written:\n{proc.stderr[-3000:]}")
        check_profile(path, proc, what)
        got = parse(proc.stderr)
        check(got["kind"] is not None, f"{what}: no leak summary:\n{proc.stderr[-3000:]}")
        if rate == 1 and got["kind"] == "check":
            check_sites(SMALL_SITES, got, proc.stderr, what)


def check_rlimit(name, case):
    """Under RLIMIT_AS = VmSize + 1 MiB, HEAPPROF_LEAKS_EXIT_CODE=9.
    rlimit-as-lost: the gate fires (status 9: something is lost; and when the
    check cannot be made, the "never freed" fallback fires it too), a leak
    summary is printed, and no partial profile is left: a complete one that
    decodes, or none and a line of heapprof's naming it; at the default rate
    (the lost object perhaps not sampled) status 0 or 9, no partial profile,
    a summary. rlimit-as-none (nothing lost; the fallback would fire the gate
    on anything never freed): no crash and status 0 or 9, at both rates."""
    tmp = h.tempdir()
    argv = argv_of(name, case, tmp)
    base = baseline(argv)
    for rate in (1, None):
        what = f"{name} ({'exact' if rate else 'default rate'})"
        path = os.path.join(tmp, f"rlimit-{rate or 'default'}", "edge.pb.gz")
        os.makedirs(os.path.dirname(path))
        proc = run_heapprof(argv, heapprof_env(path, rate, {"HEAPPROF_LEAKS_EXIT_CODE": "9"}),
                            what)
        check(proc.returncode >= 0, f"{what}: {status(proc.returncode)}\n" + h.describe(proc))
        if rate == 1 and case["lost"]:
            check_same(base, proc, what, want_rc=9)
        else:
            check(proc.returncode in (0, 9), f"{what}: {status(proc.returncode)}, want 0 or 9\n"
                  + h.describe(proc))
        if not case["lost"]:
            continue
        check(proc.stdout == base.stdout, f"{what}: stdout differs:\n{proc.stdout}")
        check_profile(path, proc, what)
        got = parse(proc.stderr)
        check(got["kind"] is not None, f"{what}: no leak summary:\n{proc.stderr[-3000:]}")
        if rate == 1:
            have = got["sites"].get("lost_rlimit", {})
            ok = have == {D: [1, 2212]} if got["kind"] == "check" else \
                have.get("never freed", [0])[0] >= 1
            check(ok, f"{what}: lost_rlimit: want 1 object (2212 bytes) definitely lost, or "
                  f"listed as never freed; heapprof says {have or 'nothing'}\n"
                  f"{proc.stderr[-3000:]}")


def run_case(name):
    case = CASES[name]
    kind = case.get("kind", "verdicts")
    {"verdicts": check_verdicts, "small": check_small, "rlimit": check_rlimit}[kind](name, case)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: test_edges.py CASE\ncases: " + " ".join(CASES))
        sys.exit(2)
    h.main(run_case, sys.argv[1])
