#!/usr/bin/env python3
"""Checks that src/ is a tree of modules: no circle in what calls what.

  python3 scripts/check_layers.py BUILD_DIR [--dot]

A module is a .c file of src/ (src/record/live.c is `record/live`). What it
depends on is read twice:

- from its `#include "..."` lines (a module's header, src/X/Y.h, stands for
  module X/Y; a header without a .c beside it is the layer's own, e.g.
  src/hp.h, and its includes are followed);
- from the object files the build made (nm): every symbol a module uses and
  another defines. This is what the code really calls, whatever the headers
  say, and it catches calls through a symbol heapprof interposes (a
  `malloc` or `pthread_create` in its own code lands in its own hooks).

It fails (exit 1), naming the modules, when either graph has a circle, when
a module calls one whose header it does not include, or when a module calls
up the layers: common/ calls only libc; record/ calls common/; lifecycle and
the public API call record/; interpose/ calls anything below it; report/
calls record/ (through src/iface.h, the seam) and common/, never the layers
above record/. --dot prints the module graph for Graphviz.
"""
import collections
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")

# Layer of a module, lowest first; a module may call its own layer and those
# below, but for report/, which sits beside the record half's upper layers.
LAYERS = ["common", "record", "lifecycle", "interpose"]


def layer(mod):
    if mod.startswith("common/"):
        return 0
    if mod in ("record/lifecycle", "record/api"):
        return 2
    if mod.startswith("record/"):
        return 1
    if mod.startswith("interpose/"):
        return 3
    if mod.startswith("report/"):
        return None
    return None


def allowed(src, dst):
    ls, ld = layer(src), layer(dst)
    if src.startswith("report/"):
        return dst.startswith("report/") or ld in (0, 1)
    if dst.startswith("report/"):
        return False  # the record half reaches the report half only through struct hp_report
    return ls is not None and ld is not None and ld <= ls


def modules():
    mods = {}
    for path in glob.glob(os.path.join(SRC, "**", "*.c"), recursive=True):
        mods[os.path.relpath(path, SRC)[:-2]] = path
    return mods


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def header_path(name, near):
    for d in (os.path.dirname(near), SRC, os.path.join(SRC, "record"), os.path.join(SRC, "report"),
              os.path.join(SRC, "interpose"), os.path.join(ROOT, "include")):
        p = os.path.normpath(os.path.join(d, name))
        if os.path.exists(p):
            return p
    return None


# Headers of a whole layer: a module that includes one may call every module
# of the layer that has no header of its own.
LAYER_HEADERS = {"hp.h": "common", "iface.h": "record", "record/record.h": "record"}


def include_graph(mods):
    """Module -> modules whose headers it includes (directly, or through a
    header that belongs to no module); a layer's header stands for the
    modules of that layer without a header of their own."""
    g = collections.defaultdict(set)
    by_header = {}
    for m, c in mods.items():
        h = c[:-2] + ".h"
        if os.path.exists(h):
            by_header[os.path.normpath(h)] = m
    own_header = set(by_header.values())
    for rel, lay in LAYER_HEADERS.items():
        by_header.setdefault(os.path.normpath(os.path.join(SRC, rel)), "layer:" + lay)
    for m, c in mods.items():
        seen, todo = set(), [c]
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            with open(f, encoding="utf-8") as fh:
                text = fh.read()
            for name in INCLUDE.findall(text):
                p = header_path(name, f)
                if not p:
                    continue
                owner = by_header.get(p)
                if owner and owner.startswith("layer:"):
                    lay = owner[6:]
                    g[m].update(x for x in mods if x.startswith(lay + "/") and x != m and
                                x not in own_header)
                    todo.append(p)
                elif owner and owner != m:
                    g[m].add(owner)
                elif not owner:
                    todo.append(p)
    return g


def symbol_graph(build, mods):
    """Module -> modules that define a symbol it uses, from the objects of
    the two libraries (and the unit tests' archive, for what neither
    links)."""
    objs = {}
    for pattern in ("src/*.p/*.o",):
        for o in glob.glob(os.path.join(build, pattern)):
            base = os.path.basename(o)
            if not base.endswith(".c.o") or "pb-c" in base:
                continue
            # meson names an object of src/a/b.c "a_b.c.o".
            stem = base[:-4]
            for m in mods:
                if m.replace("/", "_") == stem:
                    objs.setdefault(m, set()).add(o)
    defs, uses = collections.defaultdict(set), collections.defaultdict(set)
    for m, files in objs.items():
        for o in files:
            out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in "TDBRVW" and not parts[2].startswith("."):
                    defs[parts[2]].add(m)
                elif len(parts) == 2 and parts[0] == "U":
                    uses[m].add(parts[1])
    g = collections.defaultdict(set)
    why = {}
    for m, syms in uses.items():
        for s in syms:
            for d in defs.get(s, ()):
                if d != m:
                    g[m].add(d)
                    why.setdefault((m, d), s)
    return g, why, set(objs)


def cycles(g):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    build = sys.argv[1]
    mods = modules()
    inc = include_graph(mods)
    sym, why, built = symbol_graph(build, mods)
    if "--dot" in sys.argv:
        print("digraph heapprof {")
        for m in sorted(sym):
            for d in sorted(sym[m]):
                print(f'  "{m}" -> "{d}";')
        print("}")
        return 0
    problems = []
    # What heapprof interposes is libc's to everyone else: a call to it
    # from heapprof's own code lands in heapprof's hooks, so the code must
    # go through hp_real instead (or, in the reporting half, not allocate
    # from the program's heap at all).
    interposed = {s for (m, d), s in why.items() if d.startswith("interpose/")}
    for m in sorted(sym):
        for d in sorted(sym[m]):
            if d.startswith("interpose/") and not m.startswith("interpose/"):
                problems.append(f"{m} calls {why[(m, d)]}, which heapprof interposes: use hp_real")
    sym = {m: {d for d in ds if not d.startswith("interpose/") or m.startswith("interpose/")}
           for m, ds in sym.items()}
    del interposed
    # The #include graph: a layer's header makes its modules a clique, so
    # circles are sought between modules with headers of their own and
    # between layers.
    def unit(m):
        return m if os.path.exists(mods[m][:-2] + ".h") else "layer " + m.split("/")[0]

    inc_units = collections.defaultdict(set)
    for m, ds in inc.items():
        for d in ds:
            if unit(m) != unit(d):
                inc_units[unit(m)].add(unit(d))
    for name, g in (("#include", inc_units), ("calls", sym)):
        for comp in cycles(g):
            problems.append(f"circle in the {name} graph: " + " <-> ".join(comp))
    for m in sorted(sym):
        for d in sorted(sym[m]):
            s = why[(m, d)]
            # interpose/ calls the others' hooks by their libc names (C++
            # operator new through heapprof's malloc): declared by libc.
            libc_named = m.startswith("interpose/") and d.startswith("interpose/")
            if d not in inc.get(m, ()) and not libc_named:
                problems.append(f"{m} calls {d} ({s}) without including its header")
            if not allowed(m, d):
                problems.append(f"{m} calls up, into {d} ({s})")
    missing = sorted(set(mods) - built)
    if not built:
        problems.append(f"no object files under {build}/src: build first")
    for p in problems:
        print(p)
    print(f"{len(mods)} modules ({len(missing)} not in the build: {', '.join(missing) or '-'}); "
          f"{sum(len(v) for v in sym.values())} call edges; "
          f"{'no circles' if not problems else str(len(problems)) + ' problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
