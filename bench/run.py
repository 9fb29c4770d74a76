#!/usr/bin/env python3
"""heapprof's benchmark suite: is it cheap enough to leave on?

usage: python3 bench/run.py --build BUILD_DIR [--quick] [--runs N] [--only KEYS] [--out FILE]

Runs each workload with and without heapprof, and each peer profiler with
and without itself, alternating the configurations run by run (round-robin,
the starting point rotated each round) so that drift in the machine's speed
falls on all of them alike. Reports medians and the ratio of each median to
its own baseline's median, as one markdown table on stdout, after a few lines
naming the machine. Progress goes to stderr.

It installs nothing: what it needs and cannot find it names, with the
Debian package, and skips the comparisons that need it (bench/deps.sh
installs them all; bench/packages.txt lists them).

What is timed (CPU time first, wall time beside it: on a shared machine CPU
time leaves out the time a run spends descheduled):
- the C microbenchmarks and deep_stack time their own loops (report.h), so
  start-up and the exit dump are left out and what is compared is the cost
  per allocation; the whole process's wall time is reported after them;
- the real programs (sqlite3, python3) are timed whole, from fork to exit,
  the exit dump included: CPU time of the process tree (wait4) and wall;
- peak RSS comes from /usr/bin/time's %M (exit dump included), and the C
  programs also report their peak at the end of the loop (VmHWM).
"""
import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import log, parse_kv

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
           "/usr/local/lib"]
DEFAULT_RATE = 524288


def find_lib(names):
    for d in LIBDIRS:
        for n in names:
            p = os.path.join(d, n)
            if os.path.exists(p):
                return p
    return None


# ---- what is needed, and what is missing -----------------------------------

class Tools:
    """Paths of everything the suite runs; None for what is missing."""

    def __init__(self, build):
        self.build = os.path.abspath(build)
        b = self.build
        self.heapprof = os.path.join(b, "src", "libheapprof.so")
        self.floor = os.path.join(b, "bench", "libhpfloor.so")
        self.floor_unwind = os.path.join(b, "bench", "libhpfloor_unwind.so")
        self.malloc_bench = os.path.join(b, "bench", "malloc_bench")
        self.deep_stack = os.path.join(b, "bench", "deep_stack")
        self.stacks10k = os.path.join(b, "bench", "stacks10k")
        self.decode = os.path.join(b, "tools", "heapprof-decode")
        self.heaptrack = shutil.which("heaptrack")
        self.tcmalloc = find_lib(["libtcmalloc.so.4", "libtcmalloc.so"])
        self.jemalloc = find_lib(["libjemalloc.so.2"])
        self.mimalloc = find_lib(["libmimalloc.so.2", "libmimalloc.so.2.0"])
        self.sqlite3 = shutil.which("sqlite3")
        # Debian's interpreter (package python3), not whichever python3 comes
        # first on PATH: the real program should be the distribution's.
        self.python3 = ("/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                        else shutil.which("python3"))
        self.gcc = shutil.which("gcc")
        self.cc1 = None
        if self.gcc:
            r = subprocess.run([self.gcc, "-print-prog-name=cc1"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            path = r.stdout.strip()
            self.cc1 = path if r.returncode == 0 and os.path.isabs(path) else None
        self.perl = shutil.which("perl")
        self.jemalloc_prof = False
        self.jemalloc_prof_note = ""
        self.missing = []  # (what, Debian package)

    def check(self):
        built = [self.heapprof, self.floor, self.floor_unwind, self.malloc_bench, self.deep_stack, self.stacks10k]
        absent = [p for p in built if not os.path.exists(p)]
        if absent:
            log("bench: not built: %s\n       run: ninja -C %s" % (", ".join(absent), self.build))
            sys.exit(2)
        if not os.path.exists(self.decode):
            self.decode = None
        for attr, what, pkg in [
                ("heaptrack", "heaptrack", "heaptrack"),
                ("tcmalloc", "libtcmalloc.so.4 (gperftools heap profiler)",
                 "google-perftools libgoogle-perftools4"),
                ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
                ("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
                ("sqlite3", "sqlite3", "sqlite3"),
                ("python3", "python3", "python3"),
                ("cc1", "gcc's cc1", "gcc"),
                ("perl", "perl", "perl")]:
            if not getattr(self, attr):
                self.missing.append((what, pkg))
        if self.jemalloc:
            self.check_jemalloc_prof()

    def check_jemalloc_prof(self):
        """Debian's jemalloc may or may not be built with --enable-prof: ask
        it for a final profile and see whether one appears or it complains."""
        d = tempfile.mkdtemp(prefix="hpbench-je-")
        try:
            env = clean_env()
            env["LD_PRELOAD"] = self.jemalloc
            env["MALLOC_CONF"] = "prof:true,prof_final:true,prof_prefix:%s/jeprof" % d
            r = subprocess.run([self.malloc_bench, "fixed", "1", "1000"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            files = os.listdir(d)
            if files and r.returncode == 0:
                self.jemalloc_prof = True
                self.jemalloc_prof_note = "jemalloc has profiling (wrote %s)" % files[0]
            else:
                self.jemalloc_prof_note = ("jemalloc has no profiling: %s"
                                           % (r.stderr.strip().splitlines() or ["no profile"])[0])
        finally:
            shutil.rmtree(d, ignore_errors=True)


def clean_env():
    env = dict(os.environ)
    for k in list(env):
        if (k.startswith("HEAPPROF") or k in ("LD_PRELOAD", "MALLOC_CONF", "HEAPPROFILE",
                                              "MALLOC_PERTURB_", "PYTHONMALLOC",
                                              "TCMALLOC_SAMPLE_PARAMETER")):
            del env[k]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env["LC_ALL"] = "C"
    return env


# ---- configurations: a profiler (or none) over an allocator -----------------

class Config:
    def __init__(self, key, label, env=None, prefix=None, base=None, needs=()):
        self.key = key
        self.label = label
        self.env = env or {}      # values may hold {out}: a fresh directory per run
        self.prefix = prefix or []
        self.base = base          # key of the configuration it is compared with
        self.needs = needs        # Tools attributes that must be present


def configs(t):
    hp, fl, fu = t.heapprof, t.floor, t.floor_unwind
    je, mi, tc = t.jemalloc or "", t.mimalloc or "", t.tcmalloc or ""
    hp_env = {"LD_PRELOAD": hp, "HEAPPROF": "{out}/heapprof.pb.gz"}
    # jemalloc's default lg_prof_sample is 19 already; said explicitly so the
    # comparison with heapprof's default rate (2^19 bytes) is plain.
    je_prof = "prof:true,lg_prof_sample:19,prof_final:true,prof_prefix:{out}/jeprof"
    cs = [
        Config("glibc", "glibc, no profiler"),
        Config("heapprof", "heapprof, default rate", hp_env, base="glibc"),
        Config("heapprof-off", "heapprof preloaded, HEAPPROF unset", {"LD_PRELOAD": hp},
               base="glibc"),
        Config("heapprof-labels", "heapprof, default rate, two labels pushed (malloc_bench)",
               dict(hp_env, BENCH_LABELS="1"), base="glibc"),
        Config("floor", "floor (bare interposer) over glibc", {"LD_PRELOAD": fl}, base="glibc"),
        Config("floor-unwind", "floor + a backtrace per 512 KiB over glibc", {"LD_PRELOAD": fu},
               base="glibc"),
        Config("heapprof-4096", "heapprof, HEAPPROF_RATE=4096",
               dict(hp_env, HEAPPROF_RATE="4096"), base="glibc"),
        Config("exact", "heapprof exact (HEAPPROF_RATE=1)", dict(hp_env, HEAPPROF_RATE="1"),
               base="glibc"),
        Config("heaptrack", "heaptrack (traces every allocation)",
               prefix=[t.heaptrack or "heaptrack", "-o", "{out}/heaptrack"], base="glibc",
               needs=("heaptrack",)),
        Config("tcmalloc", "tcmalloc, no profiler", {"LD_PRELOAD": tc}, base="glibc",
               needs=("tcmalloc",)),
        Config("gperf", "gperftools HEAPPROFILE (every allocation) vs tcmalloc",
               {"LD_PRELOAD": tc, "HEAPPROFILE": "{out}/gperf"}, base="tcmalloc",
               needs=("tcmalloc",)),
        Config("jemalloc", "jemalloc, no profiler", {"LD_PRELOAD": je}, base="glibc",
               needs=("jemalloc",)),
        Config("jeprof", "jemalloc prof:true, lg_prof_sample:19 vs jemalloc",
               {"LD_PRELOAD": je, "MALLOC_CONF": je_prof}, base="jemalloc",
               needs=("jemalloc", "jemalloc_prof")),
        Config("heapprof/je", "heapprof over jemalloc vs jemalloc",
               dict(hp_env, LD_PRELOAD=hp + " " + je), base="jemalloc", needs=("jemalloc",)),
        Config("floor/je", "floor over jemalloc vs jemalloc", {"LD_PRELOAD": fl + " " + je},
               base="jemalloc", needs=("jemalloc",)),
        Config("floor-unwind/je", "floor + a backtrace per 512 KiB over jemalloc vs jemalloc",
               {"LD_PRELOAD": fu + " " + je}, base="jemalloc", needs=("jemalloc",)),
        Config("mimalloc", "mimalloc, no profiler", {"LD_PRELOAD": mi}, base="glibc",
               needs=("mimalloc",)),
        Config("heapprof/mi", "heapprof over mimalloc vs mimalloc",
               dict(hp_env, LD_PRELOAD=hp + " " + mi), base="mimalloc", needs=("mimalloc",)),
        Config("floor/mi", "floor over mimalloc vs mimalloc", {"LD_PRELOAD": fl + " " + mi},
               base="mimalloc", needs=("mimalloc",)),
    ]
    return {c.key: c for c in cs}


# The sampled profilers and what they are measured against, at full size.
SAMPLED = ["glibc", "heapprof", "heapprof-labels", "heapprof-off", "floor", "floor-unwind",
           "jemalloc", "jeprof",
           "heapprof/je", "floor/je", "floor-unwind/je", "mimalloc", "heapprof/mi", "floor/mi"]
# The exact tracers, at a smaller size: they are 10 to 500 times slower.
EXACT = ["glibc", "exact", "heaptrack", "tcmalloc", "gperf"]


# ---- workloads ----------------------------------------------------------------

class Workload:
    def __init__(self, key, label, argv, kind, env=None, target=None, exact_scale=0.02):
        self.key = key
        self.label = label
        self.argv = argv    # a function of a scale factor
        self.kind = kind    # "loop": the program prints seconds=; "wall": timed whole
        self.env = env or {}
        self.target = target  # heapprof's overhead target at the default rate
        self.exact_scale = exact_scale  # size factor for the exact tracers


def sql_script(path, rows):
    """A scripted sqlite3 session: a table filled in one transaction (literal
    INSERTs, then a generated bulk insert), two indexes, scans, a join,
    GROUP BY, an UPDATE and a DELETE."""
    lit = max(rows // 10, 100)
    with open(path, "w") as f:
        f.write("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL,"
                " note TEXT);\nBEGIN;\n")
        for i in range(lit):
            f.write("INSERT INTO t(name, grp, val, note) VALUES('lit-%d', %d, %d.5, '%s');\n"
                    % (i, i % 97, i, "n" * (i % 60)))
        f.write("""INSERT INTO t(name, grp, val, note)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
  SELECT 'gen-' || x, x %% 97, x * 0.25, printf('%%.*c', x %% 200, 'z') || x FROM c;
COMMIT;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
SELECT grp, count(*), sum(val), max(length(note)) FROM t GROUP BY grp ORDER BY 2 DESC LIMIT 5;
SELECT count(*) FROM t WHERE name LIKE 'gen-1%%';
SELECT count(DISTINCT note) FROM t;
UPDATE t SET note = note || '!' WHERE grp < 10;
SELECT a.grp, count(*) FROM t a JOIN (SELECT grp, avg(val) AS m FROM t GROUP BY grp) b
  ON a.grp = b.grp WHERE a.val > b.m GROUP BY a.grp ORDER BY 2 DESC LIMIT 3;
SELECT length(group_concat(name, ',')) FROM (SELECT name FROM t ORDER BY note DESC LIMIT 20000);
DELETE FROM t WHERE id %% 3 = 0;
SELECT count(*), sum(length(note)) FROM t;
""" % rows)


def c_source(path, nfuncs):
    """A C file for cc1 -O2 to compile: nfuncs functions, each with its own
    struct, loop and switch, called through a table from main. cc1 takes its
    trees, RTL and bitmaps from malloc and obstacks: a malloc-heavy program
    no one here wrote."""
    with open(path, "w") as f:
        # No #include: cc1 run without the gcc driver lacks the multiarch
        # include directories.
        f.write("int printf(const char *, ...);\nvoid *memset(void *, int, unsigned long);\n"
                "unsigned long strlen(const char *);\n")
        for i in range(nfuncs):
            f.write("""struct s%d { int a; double b; char name[%d]; struct s%d *next; };
static int f%d(int n) {
  struct s%d x; memset(&x, 0, sizeof x); x.a = n; x.b = n * 0.5; x.next = &x;
  struct s%d *p = &x; int acc = 0;
  for (int k = 0; k < n; k++) { acc += p->a * k + (int)p->b; if (acc %% %d == 1) acc ^= %d; p = p->next; }
  switch (n & 7) { case 0: acc += %d; break; case 1: acc -= (int)strlen(p->name); break;
    case 2: acc *= 3; break; default: acc++; }
  return acc;
}
""" % (i, i % 50 + 1, i, i, i, i, i + 3, i, i))
        f.write("static int (*const table[])(int) = {%s};\n"
                % ", ".join("f%d" % i for i in range(nfuncs)))
        f.write("int main(void) {\n  int t = 0;\n"
                "  for (unsigned i = 0; i < sizeof table / sizeof *table; i++) t += table[i]((int)i);\n"
                "  printf(\"%d\\n\", t);\n  return 0;\n}\n")


def workloads(t, tmp, quick):
    q = 0.3 if quick else 1.0

    def n(x):
        return str(max(int(x * q), 1000))

    mb, ds = t.malloc_bench, t.deep_stack
    ws = []
    for mode, label, iters in [("fixed", "malloc/free 32 B", 15e6),
                               ("mixed", "malloc/free 16..4096 B", 10e6),
                               ("window", "1000 live, free oldest, 16..4096 B", 5e6)]:
        for th in (1, 2):
            ws.append(Workload(
                "%s-%dt" % (mode, th), "%s, %d thread%s" % (label, th, "s" if th > 1 else ""),
                (lambda s, mode=mode, th=th, iters=iters: [mb, mode, str(th), n(iters * s)]),
                "loop", target=0.03))
    ws.append(Workload("deep", "deep stacks (8..32 frames, 16384 stacks)",
                       lambda s: [ds, n(2e6 * s)], "loop", exact_scale=0.03))
    if t.sqlite3:
        def sql(s):
            rows = int(max(100000 * q * s, 2000))
            path = os.path.join(tmp, "work-%d.sql" % rows)
            if not os.path.exists(path):
                sql_script(path, rows)
            return [t.sqlite3, ":memory:", ".read " + path]
        ws.append(Workload("sqlite", "sqlite3 scripted session", sql, "wall", target=0.02,
                           exact_scale=0.15))
    py = os.path.join(HERE, "py_workload.py")
    ws.append(Workload("python", "python3 dicts/lists of strings",
                       lambda s: [t.python3, py, n(60000 * s)], "wall", target=0.02,
                       exact_scale=0.15))
    ws.append(Workload("python-malloc", "python3 as above, PYTHONMALLOC=malloc",
                       lambda s: [t.python3, py, n(60000 * s)], "wall",
                       env={"PYTHONMALLOC": "malloc"}, target=0.02, exact_scale=0.15))
    if t.cc1:
        def cc(s):
            nfuncs = int(max(150 * q * s, 10))
            src = os.path.join(tmp, "gen-%d.c" % nfuncs)
            if not os.path.exists(src):
                c_source(src, nfuncs)
            return [t.cc1, "-quiet", "-O2", src, "-o", os.path.join(tmp, "gen-%d.s" % nfuncs)]
        # cc1 itself, not the gcc driver: heaptrack follows no child
        # processes, so the driver would compare heapprof's three processes
        # with heaptrack's one.
        ws.append(Workload("gcc", "cc1 -O2 (gcc's compiler) compiling generated C", cc, "wall",
                           target=0.02, exact_scale=0.2))
    if t.perl:
        pl = os.path.join(HERE, "pl_workload.pl")
        ws.append(Workload("perl", "perl hashes/arrays of strings",
                           lambda s: [t.perl, pl, n(30000 * s)], "wall", target=0.02,
                           exact_scale=0.15))
    return ws


# ---- running --------------------------------------------------------------------

class Result:
    def __init__(self):
        self.loop_wall = []  # seconds of the program's own loop, wall clock
        self.loop_cpu = []   # the same, CPU seconds of the process
        self.hwm = []        # KiB, peak RSS at the end of the loop (before exit)
        self.wall = []       # seconds, the whole process, fork to exit
        self.cpu = []        # user + system seconds of the whole process tree
        self.rss = []        # KiB, peak RSS of the whole process, exit included
        self.stdout = []
        self.errors = []

    def cpu_metric(self, kind):
        return self.loop_cpu if kind == "loop" else self.cpu

    def wall_metric(self, kind):
        return self.loop_wall if kind == "loop" else self.wall


TIME = "/usr/bin/time"


def run_once(argv, env, tmp):
    """One run in a fresh output directory ({out}); returns its exit code,
    wall seconds, CPU seconds (the tree's, from wait4), peak RSS in KiB,
    stdout and stderr.

    The peak RSS comes from /usr/bin/time's %M when it is there: wait4's own
    ru_maxrss would count this Python process's RSS, which Linux carries
    into the child's figure across fork and exec."""
    out = tempfile.mkdtemp(prefix="run-", dir=tmp)
    argv = [a.replace("{out}", out) for a in argv]
    env = {k: v.replace("{out}", out) for k, v in env.items()}
    rss_file = os.path.join(out, ".maxrss")
    if os.access(TIME, os.X_OK):
        argv = [TIME, "-f", "%M", "-o", rss_file] + argv
    with open(os.path.join(out, ".stdout"), "w+") as so, \
            open(os.path.join(out, ".stderr"), "w+") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, env=env, stdout=so, stderr=se, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    rss = ru.ru_maxrss
    try:
        with open(rss_file) as f:
            rss = int(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        pass
    shutil.rmtree(out, ignore_errors=True)
    return p.returncode, wall, ru.ru_utime + ru.ru_stime, rss, stdout, stderr


def measure(keys, cfgs, argv, extra_env, runs, tmp, kind, tag):
    """Runs every configuration `runs` times, round-robin, the starting
    configuration rotated each round."""
    results = {k: Result() for k in keys}
    for r in range(runs):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            c = cfgs[k]
            env = clean_env()
            env.update(extra_env)
            env.update(c.env)
            rc, wall, cpu, rss, stdout, stderr = run_once(c.prefix + argv, env, tmp)
            res = results[k]
            if rc != 0:
                res.errors.append("exit %d: %s" % (rc, (stderr.strip().splitlines()
                                                        or [""])[-1][:120]))
                continue
            kv = parse_kv(stdout)
            if kind == "loop" and ("seconds" not in kv or "cpu_seconds" not in kv):
                res.errors.append("no seconds= in the output")
                continue
            res.wall.append(wall)
            res.cpu.append(cpu)
            res.rss.append(rss)
            res.stdout.append(stdout)
            if kind == "loop":
                res.loop_wall.append(float(kv["seconds"]))
                res.loop_cpu.append(float(kv["cpu_seconds"]))
                res.hwm.append(int(kv.get("hwm_kib", "-1")))
        log("  %s: round %d/%d done" % (tag, r + 1, runs))
    return results


def med(xs):
    return statistics.median(xs) if xs else None


# ---- the table ------------------------------------------------------------------

class Table:
    HEAD = ["workload", "what", "baseline (median)", "measured (median)", "ratio, CPU time",
            "ratio, wall time", "whole process, wall", "memory, MiB", "target"]

    def __init__(self):
        self.rows = []

    def add(self, *cells):
        cells = [str(c) for c in cells]
        cells += [""] * (len(self.HEAD) - len(cells))
        self.rows.append(cells)

    def markdown(self):
        out = ["| " + " | ".join(self.HEAD) + " |",
               "|" + "|".join(["---"] * len(self.HEAD)) + "|"]
        for r in self.rows:
            out.append("| " + " | ".join(r) + " |")
        return "\n".join(out)


def med(xs):
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_s(x):
    if x is None:
        return "—"
    return "%.3f s" % x if x >= 0.1 else "%.1f ms" % (x * 1e3)


def fmt_ratio(a, b):
    r = ratio(a, b)
    if r is None:
        return "—"
    return "%.3f× (%+.1f%%)" % (r, (r - 1) * 100)


def fmt_mem(base, res, kind):
    """Peak RSS over the whole run (exit dump included), and for the C
    programs the growth of the peak up to the end of the loop."""
    b, t = med(base.rss), med(res.rss)
    if b is None or t is None:
        return "—"
    text = "peak %.1f → %.1f (%+.1f)" % (b / 1024, t / 1024, (t - b) / 1024)
    if kind == "loop" and base.hwm and res.hwm and min(base.hwm + res.hwm) > 0:
        text += "; at loop end %+.1f" % ((med(res.hwm) - med(base.hwm)) / 1024)
    return text


def argv_note(argv):
    """The command, with directories dropped from paths (also inside an
    argument such as sqlite3's ".read /tmp/.../work.sql")."""
    words = []
    for a in argv:
        words.append(" ".join(os.path.basename(w) if w.startswith("/") else w
                              for w in a.split(" ")))
    return " `%s`" % " ".join(words)


def add_row(table, wlabel, label, base_label, b, r, kind, target=""):
    if not r.cpu_metric(kind):
        table.add(wlabel, label, "—", "—", "failed: " + (r.errors or ["no runs"])[0])
        return
    bc, rc = med(b.cpu_metric(kind)), med(r.cpu_metric(kind))
    whole = fmt_ratio(med(r.wall), med(b.wall)) if kind == "loop" else "(= wall time)"
    table.add(wlabel, label, "%s %s" % (base_label, fmt_s(bc)), fmt_s(rc), fmt_ratio(rc, bc),
              fmt_ratio(med(r.wall_metric(kind)), med(b.wall_metric(kind))), whole,
              fmt_mem(b, r, kind), target)


def add_rows(table, wlabel, keys, cfgs, res, kind, targets):
    """One row per configuration that has a baseline."""
    for k in keys:
        c = cfgs[k]
        if c.base and c.base in res:
            add_row(table, wlabel, c.label, cfgs[c.base].label.split(",")[0], res[c.base],
                    res[k], kind, targets.get(k, ""))


def verdict(ok, text):
    return "%s: %s" % (text, "met" if ok else "**missed**")


# ---- the verdicts' uncertainty ----------------------------------------------------
#
# Every round runs each configuration once, so a configuration's i-th run and
# its baseline's i-th run were made minutes apart at most: the per-round
# ratio cancels the machine's slow drift, and the spread of those ratios is
# the noise the verdict has to beat. The verdicts use the median per-round
# figure and a 90% bootstrap interval of it (2000 resamples of the rounds,
# fixed seed): "met" when the whole interval is within the target, "missed"
# when the whole interval is beyond it, "not resolved" when the target lies
# inside it (this machine's noise is then larger than the margin).

def per_round(xs, bases, fn):
    """fn(x_i, base_i) for each round, or None when a failed run broke the
    pairing (the lists then differ in length)."""
    if not xs or len(xs) != len(bases) or min(bases) <= 0:
        return None
    return [fn(x, b) for x, b in zip(xs, bases)]


def interval(values, n=2000, seed=1):
    rnd = random.Random(seed)
    k = len(values)
    boots = sorted(statistics.median([values[rnd.randrange(k)] for _ in range(k)])
                   for _ in range(n))
    return boots[int(0.05 * n)], boots[int(0.95 * n) - 1]


def judged(values, limit, unit="%"):
    """(text, word) for per-round values against `limit` (fractions); unit
    is what follows each figure (in hundredths)."""
    est = statistics.median(values)
    lo, hi = interval(values)
    word = "met" if hi <= limit else "**missed**" if lo > limit else "not resolved"
    return "%+.1f%s (90%%: %+.1f to %+.1f%s)" % (est * 100, unit, lo * 100, hi * 100, unit), word


def overhead_target(res, kind, limit):
    """heapprof at the default rate against the uninstrumented program."""
    h, g = res["heapprof"], res["glibc"]
    rc = ratio(med(h.cpu_metric(kind)), med(g.cpu_metric(kind)))
    rw = ratio(med(h.wall_metric(kind)), med(g.wall_metric(kind)))
    if rc is None or rw is None:
        return ""
    rounds = per_round(h.cpu_metric(kind), g.cpu_metric(kind), lambda x, b: x / b - 1)
    if rounds:
        figure, word = judged(rounds, limit)
        text = "≤ +%d%%: CPU per round %s: %s; wall %s" % (
            round(limit * 100), figure, word, "met" if rw <= 1 + limit else "**missed**")
    else:
        text = "≤ +%d%%: CPU %s, wall %s" % (round(limit * 100),
                                            "met" if rc <= 1 + limit else "**missed**",
                                            "met" if rw <= 1 + limit else "**missed**")
    # Memory: the live heaps here are at most ~100 MiB, so at the default
    # rate at most a few hundred sampled objects are live at once and what
    # they need (a slot, a bucket, a stack) is tens of KiB: the 2 MiB target
    # applies as it is.
    mem = []
    if kind == "loop" and h.hwm and g.hwm and min(h.hwm + g.hwm) > 0:
        d = (med(h.hwm) - med(g.hwm)) / 1024
        mem.append("%s at loop end (%+.1f)" % ("met" if d <= 2 else "**missed**", d))
    if h.rss and g.rss:
        d = (med(h.rss) - med(g.rss)) / 1024
        mem.append("%s with the exit dump (%+.1f)" % ("met" if d <= 2 else "**missed**", d))
    if mem:
        text += "; memory ≤ 2 MiB: " + ", ".join(mem)
    return text


def floor_target(res, kind, key, floor_key, base_key):
    rb = med(res[base_key].cpu_metric(kind))
    ra = ratio(med(res[key].cpu_metric(kind)), rb)
    rf = ratio(med(res[floor_key].cpu_metric(kind)), rb)
    if ra is None or rf is None:
        return ""
    a, f, b = (res[k].cpu_metric(kind) for k in (key, floor_key, base_key))
    rounds = per_round(a, b, lambda x, y: x / y) if len(f) == len(a) else None
    if rounds:
        # Per round, the configuration's ratio less the floor's.
        rounds = [r - fi / bi for r, fi, bi in zip(rounds, f, b)]
        figure, word = judged(rounds, 0.02, " points")
        return "≤ floor + 2 points: CPU per round %s: %s" % (figure, word)
    return verdict(ra - rf <= 0.02, "≤ floor + 2 points (CPU: %+.1f points)" % ((ra - rf) * 100))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory (release)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, 3 runs: a minute or two")
    ap.add_argument("--runs", type=int, help="runs per configuration (default 9, quick 3)")
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    ap.add_argument("--only", help="comma-separated workload keys (fixed-1t, ..., deep, sqlite,"
                    " python, python-malloc, deep-64, stacks10k)")
    args = ap.parse_args()

    t = Tools(args.build)
    t.check()
    for what, pkg in t.missing:
        log("bench: missing %s (Debian package: %s); its rows are skipped" % (what, pkg))
    if t.missing:
        log("bench: install everything with: sudo %s" % os.path.join(HERE, "deps.sh"))
    if not os.access(TIME, os.X_OK):
        log("bench: missing /usr/bin/time (Debian package: time); peak RSS then includes"
            " this script's own")
    if t.jemalloc:
        log("bench: " + t.jemalloc_prof_note)
    # Full runs: 9 of each C microbenchmark configuration, 7 of each real
    # program's (each takes about a second), 5 of the exact tracers (up to
    # 500 times slower). That keeps the whole suite near 15 minutes here.
    runs = args.runs or (3 if args.quick else 9)
    real_runs = args.runs or (3 if args.quick else 7)
    exact_runs = args.runs or (3 if args.quick else 5)
    cfgs = configs(t)
    only = set(args.only.split(",")) if args.only else None

    def usable(keys):
        return [k for k in keys if all(getattr(t, n) for n in cfgs[k].needs)]

    tmp = tempfile.mkdtemp(prefix="hpbench-")
    table = Table()
    started = time.time()
    load = os.getloadavg()
    try:
        for w in workloads(t, tmp, args.quick):
            if only and w.key not in only:
                continue
            # ---- the sampled profilers, at full size
            keys = usable(SAMPLED + (["heapprof-4096"] if w.key == "fixed-1t" else []))
            argv = w.argv(1.0)
            n = runs if w.kind == "loop" else real_runs
            log("bench: %s (%d configurations x %d runs), %.0f s so far"
                % (w.key, len(keys), n, time.time() - started))
            res = measure(keys, cfgs, argv, w.env, n, tmp, w.kind, w.key)
            targets = {}
            if w.target is not None:
                targets["heapprof"] = overhead_target(res, w.kind, w.target)
            for a, fl in (("heapprof/je", "floor/je"), ("heapprof/mi", "floor/mi")):
                if a in res and fl in res:
                    targets[a] = floor_target(res, w.kind, a, fl, cfgs[a].base)
            wlabel = w.label + argv_note(argv)
            add_rows(table, wlabel, keys, cfgs, res, w.kind, targets)
            if w.key == "fixed-1t" and "heapprof-4096" in res:
                per_sample(table, wlabel, res, 32)

            # ---- the exact tracers, at a smaller size
            keys = usable(EXACT)
            argv = w.argv(w.exact_scale)
            log("bench: %s, exact tracers (%d configurations x %d runs)"
                % (w.key, len(keys), exact_runs))
            res = measure(keys, cfgs, argv, w.env, exact_runs, tmp, w.kind, w.key + " exact")
            targets = {}
            if "heaptrack" in res and res["heaptrack"].cpu_metric(w.kind) and \
                    res["exact"].cpu_metric(w.kind):
                # Whole processes: heaptrack does part of its work in a
                # second process (heaptrack_interpret), which the program's
                # own loop time does not see.
                e, h = res["exact"], res["heaptrack"]
                rc = med(e.cpu) / med(h.cpu)
                rw = med(e.wall) / med(h.wall)
                targets["exact"] = verdict(rc < 1 and rw < 1,
                                           "faster than heaptrack (whole process: CPU %.2f×,"
                                           " wall %.2f× heaptrack's)" % (rc, rw))
            wlabel = w.label + argv_note(argv)
            add_rows(table, wlabel, keys, cfgs, res, w.kind, targets)
            if "gperf" in res and "glibc" in res:
                add_row(table, wlabel, "gperftools HEAPPROFILE vs glibc", "glibc", res["glibc"],
                        res["gperf"], w.kind)

        if not only or "deep-64" in only:
            deep_per_sample(table, t, cfgs, runs, tmp, args.quick)
        if not only or "stacks10k" in only:
            stacks10k(table, t, cfgs, runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = (machine(t, args, time.time() - started, load, os.getloadavg()) + "\n" +
              table.markdown() + "\n")
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


def expected_samples(ops, size, rate):
    """Each allocation of `size` bytes is sampled with probability
    1 - exp(-size/rate), independently (see src/record/sampler.c)."""
    return ops * -math.expm1(-size / rate)


def per_sample(table, wlabel, res, size):
    """The cost of one sample: the same run at rate 4096 and at the default
    rate; the CPU time difference over the difference in expected samples."""
    ops = int(parse_kv(res["heapprof"].stdout[0])["ops"])
    t_def, t_4k = med(res["heapprof"].loop_cpu), med(res["heapprof-4096"].loop_cpu)
    d = expected_samples(ops, size, 4096) - expected_samples(ops, size, DEFAULT_RATE)
    w_def, w_4k = med(res["heapprof"].loop_wall), med(res["heapprof-4096"].loop_wall)
    table.add(wlabel, "cost of one sample: rate 4096 vs default, %d-byte objects, "
              "%.0f more samples expected" % (size, d),
              "default " + fmt_s(t_def), "4096: " + fmt_s(t_4k),
              "**%.0f ns/sample**" % ((t_4k - t_def) / d * 1e9),
              "%.0f ns/sample" % ((w_4k - w_def) / d * 1e9), "", "", "")


def deep_per_sample(table, t, cfgs, runs, tmp, quick):
    """The cost of one sample when the stack is 8..32 frames deep."""
    size = 64
    argv = [t.deep_stack, str(int(2e6 * (0.3 if quick else 1.0))), str(size)]
    keys = ["glibc", "heapprof", "heapprof-4096"]
    log("bench: deep stacks, cost of one sample (%d configurations x %d runs)" % (len(keys), runs))
    res = measure(keys, cfgs, argv, {}, runs, tmp, "loop", "deep-64")
    wlabel = "deep stacks, all objects %d B" % size + argv_note(argv)
    add_rows(table, wlabel, ["heapprof", "heapprof-4096"], cfgs, res, "loop", {})
    per_sample(table, wlabel, res, size)


def stacks10k(table, t, cfgs, runs, tmp):
    """Profile write time and size for 10,000 distinct stacks, exact mode."""
    log("bench: stacks10k (%d runs)" % runs)
    dump = Config("dump", "", dict(cfgs["exact"].env))
    keys = {"dump": dump, "exact": cfgs["exact"], "heapprof-off": cfgs["heapprof-off"]}
    res = measure(["dump"], keys, [t.stacks10k, "{out}/dump.pb.gz"], {}, runs, tmp, "wall",
                  "stacks10k dump")
    kvs = [parse_kv(s) for s in res["dump"].stdout]
    ms = [float(kv["dump_ms"]) for kv in kvs if "dump_ms" in kv]
    cpu_ms = [float(kv["dump_cpu_ms"]) for kv in kvs if "dump_cpu_ms" in kv]
    sizes = [int(kv["bytes"]) for kv in kvs if int(kv.get("bytes", "-1")) > 0]
    # How many stacks the profile holds: one dump, decoded.
    nsamples = "?"
    if t.decode:
        d = tempfile.mkdtemp(dir=tmp)
        env = clean_env()
        env.update({k: v.replace("{out}", d) for k, v in dump.env.items()})
        path = os.path.join(d, "one.pb.gz")
        subprocess.run([t.stacks10k, path], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        r = subprocess.run([t.decode, "--json", path], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if r.returncode == 0:
            nsamples = "%d" % len(json.loads(r.stdout)["samples"])
    label = "10,000 distinct stacks `stacks10k`, HEAPPROF_RATE=1"
    table.add(label, "heapprof_dump() of the 10,000 stacks, timed in the program "
              "(%s samples in the profile)" % nsamples, "—",
              "%.1f ms wall" % med(ms) if ms else "failed",
              "%.1f ms CPU" % med(cpu_ms) if cpu_ms else "—",
              "min %.1f / max %.1f ms" % (min(ms), max(ms)) if ms else "—", "", "",
              verdict(bool(ms) and med(ms) < 100, "< 100 ms") if ms else "")
    table.add(label, "profile file size", "—",
              "%d bytes (%.1f KiB)" % (med(sizes), med(sizes) / 1024) if sizes else "failed")
    res = measure(["heapprof-off", "exact"], keys, [t.stacks10k], {}, runs, tmp, "wall",
                  "stacks10k exit")
    e, o = res["exact"], res["heapprof-off"]
    if e.wall and o.wall:
        table.add(label, "whole run: 10,000 recorded + exit dump, vs preloaded with HEAPPROF"
                  " unset", "off " + fmt_s(med(o.cpu)), fmt_s(med(e.cpu)),
                  "+%.1f ms CPU" % ((med(e.cpu) - med(o.cpu)) * 1e3),
                  "+%.1f ms wall" % ((med(e.wall) - med(o.wall)) * 1e3), "(= wall time)",
                  fmt_mem(o, e, "wall"))


def machine(t, args, elapsed, load0, load1):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    src, commit = "?", "?"
    try:
        with open(os.path.join(t.build, "meson-info", "meson-info.json")) as f:
            src = json.load(f)["directories"]["source"]
        git = ["git", "-C", src]
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True).stdout.strip()
        if commit:
            # Only the library's own sources matter for what is measured.
            dirty = subprocess.run(git + ["status", "--porcelain", "--", "src", "include"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True).stdout.strip()
            commit = "commit %s%s" % (commit, ", src/ or include/ modified" if dirty else "")
        else:
            commit = "not a git checkout"
    except (OSError, KeyError, ValueError):
        pass
    cmd = "python3 bench/run.py --build %s%s" % (args.build, " --quick" if args.quick else "")
    if args.runs:
        cmd += " --runs %d" % args.runs
    if args.only:
        cmd += " --only " + args.only
    lines = [
        "Command: `%s` (took %.0f s)" % (cmd, elapsed),
        "",
        "Machine: %d CPUs (`nproc`), %s; kernel %s; glibc %s. Load average before and after:"
        " %.2f, %.2f." % (len(os.sched_getaffinity(0)), model, platform.release(),
                          os.confstr("CS_GNU_LIBC_VERSION").split()[-1], load0[0], load1[0]),
        "heapprof: %s (source tree %s)." % (commit, src),
    ]
    if t.missing:
        lines.append("Missing (rows skipped): " + ", ".join("%s (%s)" % m for m in t.missing))
    if t.jemalloc:
        lines.append(t.jemalloc_prof_note[0].upper() + t.jemalloc_prof_note[1:] + ".")
    lines += [
        "",
        "Medians of alternating runs. *Ratio* = the configuration's median / its baseline's"
        " median (1.030× = 3% slower). For the C programs the times are the program's own"
        " loop (start-up and exit dump excluded), CPU time of the loop, with the loop's"
        " wall-clock ratio beside it and the whole process's wall-clock ratio after; for"
        " sqlite3 and python3 the whole process (exit dump included), CPU time of the process"
        " tree and wall clock. *Memory*: peak RSS (/usr/bin/time %M) of the baseline → the"
        " configuration (difference), exit dump included; for the C programs also the"
        " difference in peak RSS at the end of the loop (before any exit dump).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
