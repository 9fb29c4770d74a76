#!/usr/bin/env python3
"""Re-establishes the truth of tests/leaks/test_edges.py's cases: runs each
case under valgrind memcheck and under LeakSanitizer, and prints every
marker site's verdict. Not run by the tests (they have the truth written
in); run it by hand after changing a program, and update TRUTH.md and the
programs' header comments with what it prints.

    python3 tests/leaks/edges/truth.py BUILD_DIR [CASE...]

BUILD_DIR is a meson build of heapprof (its tests/leaks/ programs are used).
For LSan each program is run twice: as built, with liblsan.so.0 preloaded,
and built again here with gcc/g++ -fsanitize=leak; a third run with every
root source of LSan's turned off shows what it saw live at its check (an
object it does not list with its roots on is one it found reachable).
Needs valgrind, gcc, g++ and liblsan0.
"""
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from test_edges import CASES, SITE_NAMES  # noqa: E402

LSAN_LIB = "/usr/lib/x86_64-linux-gnu/liblsan.so.0"
NO_ROOTS = ":use_stacks=0:use_registers=0:use_tls=0:use_globals=0:use_root_regions=0"
FLAGS = ["-g", "-O2", "-fno-optimize-sibling-calls"]


def func(name):
    return re.sub(r"\(.*$", "", name)


def memcheck(argv, env):
    p = subprocess.run(["valgrind", "--leak-check=full", "--show-leak-kinds=all",
                        "--num-callers=40"] + argv, capture_output=True, text=True,
                       timeout=600, env=env)
    sites, cur = {}, None
    for line in p.stderr.splitlines():
        line = re.sub(r"^==\d+== ", "", line)
        m = re.match(r"^([\d,]+) (?:\(([\d,]+) direct, ([\d,]+) indirect\) )?bytes in ([\d,]+) "
                     r"blocks are (.*) in loss record", line)
        if m:
            nbytes = m.group(2) or m.group(1)  # a definite record: its own bytes
            cur = {"text": f"{m.group(5)}: {nbytes} bytes in {m.group(4)} blocks", "site": None}
            continue
        m = re.match(r"^\s+(?:at|by) 0x[0-9A-F]+: (\S+)", line)
        if m and cur is not None and cur["site"] is None and func(m.group(1)) in SITE_NAMES:
            cur["site"] = func(m.group(1))
            sites.setdefault(cur["site"], []).append(cur["text"])
        if not line.strip():
            cur = None
    summary = [re.sub(r"^==\d+==\s+", "", ln) for ln in p.stderr.splitlines()
               if re.search(r"(definitely|indirectly|possibly) lost:|still reachable:", ln)]
    return p.returncode, p.stdout, sites, summary


def lsan(argv, env, options=""):
    env = dict(env, LSAN_OPTIONS="exitcode=23" + options)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return None, "", {}, ["timed out after 60 s"]
    sites, cur = {}, None
    for line in p.stderr.splitlines():
        m = re.match(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object", line)
        if m:
            cur = {"text": f"{m.group(1)}: {m.group(2)} bytes in {m.group(3)} objects",
                   "site": None}
            continue
        m = re.match(r"^\s+#\d+ 0x[0-9a-f]+ in (\S+)", line)
        if m and cur is not None and cur["site"] is None and func(m.group(1)) in SITE_NAMES:
            cur["site"] = func(m.group(1))
            sites.setdefault(cur["site"], []).append(cur["text"])
    notes = [ln.strip() for ln in p.stderr.splitlines()
             if "ERROR" in ln or "SUMMARY" in ln or "DEADLYSIGNAL" in ln]
    return p.returncode, p.stdout, sites, notes


def show(tool, rc, stdout, sites, notes, want):
    print(f"  {tool}: status {rc}, stdout {stdout.strip()!r}")
    for site in sorted(want):
        print(f"    {site}: {'; '.join(sites.get(site, [])) or 'not reported'}")
    for n in notes:
        print(f"    | {n}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    build = os.path.abspath(sys.argv[1])
    names = sys.argv[2:] or list(CASES)
    leaks = os.path.join(build, "tests", "leaks")
    exes = {"EDGES_EXE": os.path.join(leaks, "edges"),
            "EDGES_STALE_EXE": os.path.join(leaks, "edges-stale"),
            "EDGES_CXX_EXE": os.path.join(leaks, "edges-cxx")}
    libs = {"{ctorlib}": os.path.join(leaks, "libedges_ctorlib.so"),
            "{globlib}": os.path.join(leaks, "libedges_globlib.so")}
    tmp = tempfile.mkdtemp(prefix="edges-truth-")
    atexit.register(shutil.rmtree, tmp, True)
    sanitized = {"EDGES_EXE": os.path.join(tmp, "edges"),
                 "EDGES_STALE_EXE": os.path.join(tmp, "edges-stale"),
                 "EDGES_CXX_EXE": os.path.join(tmp, "edges-cxx")}
    for cc, src, out, extra in (("gcc", "edges.c", sanitized["EDGES_EXE"], ["-lpthread", "-ldl"]),
                                ("gcc", "stale.c", sanitized["EDGES_STALE_EXE"], []),
                                ("g++", "edges_cxx.cc", sanitized["EDGES_CXX_EXE"], [])):
        subprocess.run([cc] + FLAGS + ["-fsanitize=leak", "-o", out, os.path.join(HERE, src)]
                       + extra, check=True)
    env = dict(os.environ, MALLOC_PERTURB_="0")
    for var in ("LD_PRELOAD", "HEAPPROF", "HEAPPROF_RATE"):
        env.pop(var, None)
    for name in names:
        case = CASES[name]
        exe = case.get("exe", "EDGES_EXE")
        args = [libs.get(a, tmp if a == "{tmp}" else a) for a in case.get("args", [])]
        if exe == "EDGES_EXE":
            args = [name] + args
        want = set(case.get("sites", {}))
        if case.get("kind") == "small":
            want = {"kept_small_stack", "lost_small_stack"}
        elif case.get("kind") == "rlimit":
            want = {"lost_rlimit"}
        print(f"{name}: {os.path.basename(exes[exe])} {' '.join(args)}")
        rc, out, sites, summary = memcheck([exes[exe]] + args, env)
        show("memcheck", rc, out, sites, summary, want)
        pre = dict(env, LD_PRELOAD=LSAN_LIB)
        show("LSan (preloaded)", *lsan([exes[exe]] + args, pre), want)
        show("LSan (-fsanitize=leak)", *lsan([sanitized[exe]] + args, env), want)
        rc, out, sites, notes = lsan([sanitized[exe]] + args, env, NO_ROOTS)
        show("LSan (-fsanitize=leak), no roots: what it saw live", rc, out, sites, [], want)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
