#!/usr/bin/env python3
"""heapprof's own memory over a long run: does it grow with the
number of bytes allocated?

usage: python3 bench/bounded.py --build BUILD_DIR [--gib 80,320,1300 | --quick]
                                [--runs N (3)] [--svg FILE] [--out FILE]

Runs bench/varied_sizes (one call site, buffers of uniform random length
1..1 MiB, 64 live) for each total in --gib, uninstrumented and with heapprof
at the default rate (LD_PRELOAD=BUILD/src/libheapprof.so
HEAPPROF=TMP/out.pb.gz), alternating: the uninstrumented run first for the
first total, heapprof first for the second, and so on (and so on run by run
with --runs). varied_sizes prints its own RSS (/proc/self/statm) every 1/16
of its total; both runs allocate the same sequence (fixed seed), so their
marks fall at the same GiB, and the difference at each mark is heapprof's
own memory at that point of the run.

Prints a markdown report on stdout: per total, each mark's RSS alone, with
heapprof and the difference (medians over --runs), then each run's peak RSS
(exit dump included), wall time and profile size. Writes the differences
against GiB allocated as a self-contained SVG (default bench/bounded-memory.svg;
no plotting package needed). Progress goes to stderr.

Peak RSS is /usr/bin/time's %M, as in bench/run.py: os.wait4's ru_maxrss
would include this Python process's RSS, which Linux carries into the child
across fork and exec (checked here: a child of a Python holding 200 MB reads
218,748 KiB from wait4 and 7,768 KiB from /usr/bin/time). Without
/usr/bin/time (Debian package `time`) it falls back to wait4 and says so.
"""
import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import commit_of, log

HERE = os.path.dirname(os.path.abspath(__file__))
TIME = "/usr/bin/time"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def clean_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("HEAPPROF") or k in ("LD_PRELOAD", "MALLOC_CONF", "MALLOC_PERTURB_",
                                             "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                             "GLIBC_TUNABLES"):
            del env[k]
    env["LC_ALL"] = "C"
    return env


class Run:
    def __init__(self, config, gib):
        self.config = config      # "alone" or "heapprof"
        self.gib = gib
        self.marks = []           # (GiB allocated, RSS KiB)
        self.done = {}            # the final key=value line
        self.peak_kib = None      # peak RSS, exit dump included
        self.peak_how = ""
        self.wall = None
        self.profile_bytes = None


def run_once(prog, gib, config, lib, tmp):
    """One run of varied_sizes; progress lines are read as they come."""
    r = Run(config, gib)
    out = tempfile.mkdtemp(prefix="run-", dir=tmp)
    env = clean_env()
    profile = os.path.join(out, "out.pb.gz")
    # The preload is set by env(1) under /usr/bin/time, not on time itself:
    # a preloaded time would be heapprof's root process and varied_sizes its
    # child, profiled into out.PID.pb.gz. env execs varied_sizes in place.
    # The uninstrumented run goes through env(1) too, alike.
    argv = ["/usr/bin/env"]
    if config == "heapprof":
        argv += ["LD_PRELOAD=" + lib, "HEAPPROF=" + profile]
    argv += [prog, "%g" % gib]
    rss_file = os.path.join(out, ".maxrss")
    use_time = os.access(TIME, os.X_OK)
    if use_time:
        argv = [TIME, "-f", "%M", "-o", rss_file] + argv
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    last_note = t0
    for line in p.stdout:
        f = line.split()
        if f and f[0] == "progress" and len(f) >= 3:
            r.marks.append((float(f[1]), int(f[2])))
            if time.perf_counter() - last_note > 5:
                last_note = time.perf_counter()
                log("    %s %g GiB: at %s GiB, RSS %.1f MiB" % (config, gib, f[1],
                                                              int(f[2]) / 1024))
        elif f and f[0] == "done":
            r.done = dict(tok.split("=", 1) for tok in f[1:] if "=" in tok)
    stderr = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    r.wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0 or not r.done:
        sys.exit("bounded: %s exited %d: %s" % (" ".join(argv), rc, stderr.strip()[-300:]))
    r.peak_kib, r.peak_how = ru.ru_maxrss, "wait4 ru_maxrss (includes the forking Python's RSS)"
    if use_time:
        try:
            with open(rss_file) as fh:
                r.peak_kib = int(fh.read().split()[-1])
                r.peak_how = "/usr/bin/time %M"
        except (OSError, ValueError, IndexError):
            pass
    if os.path.exists(profile):
        r.profile_bytes = os.path.getsize(profile)
    shutil.rmtree(out, ignore_errors=True)
    return r


def med(xs):
    return statistics.median(xs) if xs else None


def mib(kib):
    return "—" if kib is None else "%.1f" % (kib / 1024)


def nice_step(span, target=6):
    """A 1-2-5 step giving about `target` ticks over span."""
    if span <= 0:
        return 1
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_plot(series, title, subtitle, note, xlabel, ylabel):
    """series: [(label, [(x, y), ...])]. A self-contained SVG: axes, ticks,
    grid, labels, one polyline (with markers) per series, a legend."""
    W, H = 760, 470
    L, R, T, B = 78, 24, 72, 58
    xs = [x for _, pts in series for x, _ in pts] or [0, 1]
    ys = [y for _, pts in series for _, y in pts] or [0, 1]
    xmax = max(xs) or 1
    ymin, ymax = min(0, min(ys)), max(ys)
    if ymax <= ymin:
        ymax = ymin + 1
    xstep, ystep = nice_step(xmax), nice_step(ymax - ymin)
    xmax = math.ceil(xmax / xstep) * xstep
    ymin = math.floor(ymin / ystep) * ystep
    ymax = math.ceil(ymax / ystep) * ystep
    pw, ph = W - L - R, H - T - B

    def px(x):
        return L + x / xmax * pw

    def py(y):
        return T + ph - (y - ymin) / (ymax - ymin) * ph

    def num(v, step):
        return ("%d" % round(v)) if step >= 1 else ("%g" % round(v, 6))

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="12">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (L, esc(title)),
         '<text x="%d" y="40" fill="#555">%s</text>' % (L, esc(subtitle)),
         '<text x="%d" y="57" fill="#777" font-size="11">%s</text>' % (L, esc(note))]
    v = 0.0
    while v <= xmax + 1e-9:
        x = px(v)
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/>' % (x, T, x, T + ph))
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>'
                 % (x, T + ph, x, T + ph + 5))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                 % (x, T + ph + 19, num(v, xstep)))
        v += xstep
    v = ymin
    while v <= ymax + 1e-9:
        y = py(v)
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e4e4e4"/>' % (L, y, L + pw, y))
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>' % (L - 5, y, L, y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                 % (L - 8, y + 4, num(v, ystep)))
        v += ystep
    if ymin < 0:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888"/>'
                 % (L, py(0), L + pw, py(0)))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>'
             % (L, T, pw, ph))
    o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
             % (L + pw / 2, H - 14, esc(xlabel)))
    o.append('<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>'
             % (T + ph / 2, esc(ylabel)))
    for i, (label, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                 % (c, " ".join("%.1f,%.1f" % (px(x), py(y)) for x, y in pts)))
        for x, y in pts:
            o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (px(x), py(y), c))
        ly = T + 16 + 18 * i
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>'
                 % (L + 12, ly - 4, L + 36, ly - 4, c))
        o.append('<text x="%d" y="%d">%s</text>' % (L + 42, ly, esc(label)))
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--gib", default="80,320,1300",
                    help="totals to allocate, GiB, comma-separated (default 80,320,1300)")
    ap.add_argument("--quick", action="store_true", help="one total of 20 GiB")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per total and configuration (default 3)")
    ap.add_argument("--svg", default=os.path.join(HERE, "bounded-memory.svg"),
                    help="where to write the plot (default bench/bounded-memory.svg)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    prog = os.path.join(build, "bench", "varied_sizes")
    lib = os.path.join(build, "src", "libheapprof.so")
    for p in (prog, lib):
        if not os.path.exists(p):
            sys.exit("bounded: not built: %s (run: ninja -C %s)" % (p, build))
    gibs = [20.0] if args.quick else [float(g) for g in args.gib.split(",") if g.strip()]
    if not os.access(TIME, os.X_OK):
        log("bounded: %s missing (Debian package time): peak RSS from wait4, which counts"
            " this Python's own RSS" % TIME)

    started = time.time()
    load0 = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="hpbounded-")
    runs = {}  # (gib, config) -> [Run]
    turn = 0
    try:
        for r in range(args.runs):
            for gib in gibs:
                order = ["alone", "heapprof"] if turn % 2 == 0 else ["heapprof", "alone"]
                turn += 1
                for config in order:
                    log("bounded: %g GiB, %s (run %d/%d)" % (gib, config, r + 1, args.runs))
                    one = run_once(prog, gib, config, lib, tmp)
                    log("    %.1f s, peak %.1f MiB" % (one.wall, one.peak_kib / 1024))
                    runs.setdefault((gib, config), []).append(one)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.time() - started

    commit, src = commit_of(build)
    cmd = "python3 bench/bounded.py --build %s %s%s" % (
        args.build, "--quick" if args.quick else "--gib " + args.gib,
        " --runs %d" % args.runs if args.runs != 3 else "")
    lines = [
        "Command: `%s` (took %.0f s)" % (cmd, elapsed),
        "",
        "Machine: %d CPUs, kernel %s, glibc %s; load average %.2f before, %.2f after." % (
            len(os.sched_getaffinity(0)), platform.release(),
            os.confstr("CS_GNU_LIBC_VERSION").split()[-1], load0[0], os.getloadavg()[0]),
        "heapprof: commit %s; source tree %s; default rate, `LD_PRELOAD=%s HEAPPROF=...`." % (
            commit, src, os.path.relpath(lib)),
        "",
        "RSS at each mark: varied_sizes' own /proc/self/statm when it has allocated that many"
        " GiB (median of %d run%s). *Difference* = with heapprof − alone: heapprof's own"
        " memory at that point. Peak: %s, exit dump included." % (
            args.runs, "s" if args.runs > 1 else "",
            runs[(gibs[0], "alone")][0].peak_how),
        "",
    ]
    series = []
    for gib in gibs:
        alone, hp = runs[(gib, "alone")], runs[(gib, "heapprof")]
        marks = [m for m, _ in alone[0].marks]
        lines += ["### %g GiB allocated (`varied_sizes %g`, %s allocations)" % (
            gib, gib, alone[0].done.get("allocs", "?")), "",
                  "| GiB allocated | RSS alone, MiB | RSS with heapprof, MiB | difference, MiB |",
                  "|---:|---:|---:|---:|"]
        pts = []
        for i, m in enumerate(marks):
            a = med([r.marks[i][1] for r in alone if i < len(r.marks) and r.marks[i][0] == m])
            h = med([r.marks[i][1] for r in hp if i < len(r.marks) and r.marks[i][0] == m])
            if a is None or h is None:
                continue
            pts.append((m, (h - a) / 1024))
            lines.append("| %.3f | %s | %s | %+.1f |" % (m, mib(a), mib(h), (h - a) / 1024))
        series.append(("%g GiB run" % gib, pts))
        def row(what, a_vals, h_vals, fmt=mib):
            """Medians, the difference of the medians, and each run's value
            when there are several (runs of heapprof vary: a bucket table
            that doubles just before the end shows in one run, not in
            another)."""
            a, h = med(a_vals), med(h_vals)
            each = ""
            if len(h_vals) > 1:
                each = " (runs: %s)" % ", ".join(fmt(v) for v in h_vals)
            return "| %s | %s | %s%s | %+.1f |" % (what, fmt(a), fmt(h), each, (h - a) / 1024)

        last_a = [r.marks[-1][1] for r in alone]
        last_h = [r.marks[-1][1] for r in hp]
        la = med([float(r.done["seconds"]) for r in alone])
        lh = med([float(r.done["seconds"]) for r in hp])
        wa, wh = med([r.wall for r in alone]), med([r.wall for r in hp])
        prof = med([r.profile_bytes for r in hp if r.profile_bytes is not None])
        lines += ["",
                  "| %g GiB | alone | with heapprof | difference, MiB |" % gib,
                  "|---|---:|---:|---:|",
                  row("RSS at the last mark, MiB", last_a, last_h),
                  row("VmHWM before exit, MiB", [int(r.done["hwm_kib"]) for r in alone],
                      [int(r.done["hwm_kib"]) for r in hp]),
                  row("peak RSS, MiB (exit dump included)", [r.peak_kib for r in alone],
                      [r.peak_kib for r in hp]),
                  "| allocation loop, s | %.2f | %.2f | %.2fx |" % (la, lh, lh / la if la else 0),
                  "| whole run (fork to exit), s | %.2f | %.2f | %.2fx |" % (wa, wh, wh / wa),
                  "| profile size | — | %s | |" % (
                      "%d bytes" % prof if prof is not None else "none written"),
                  ""]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    svg = svg_plot(series,
                   "heapprof's own memory over a run: RSS with heapprof − RSS alone",
                   "varied_sizes: one call site, buffers of 1..1 MiB, 64 live;"
                   " heapprof at the default rate",
                   "heapprof commit %s; median of %d run%s per point" % (
                       commit, args.runs, "s" if args.runs > 1 else ""),
                   "GiB allocated", "MiB (RSS with heapprof − RSS alone)")
    with open(args.svg, "w") as f:
        f.write(svg)
    log("bounded: plot written to %s" % args.svg)


if __name__ == "__main__":
    main()
