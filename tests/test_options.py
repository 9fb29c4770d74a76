"""The table of HEAPPROF_* variables (src/record/config.c) is the one
source of truth: the README's table of variables names exactly its
documented variables, with the same defaults where the table has a number,
and every variable the wrapper (tools/heapprof) sets is in it.

  test_options.py TABLE_PRINTER README WRAPPER
"""
import re
import subprocess
import sys

import helpers as h
from helpers import check


def table(printer):
    out = subprocess.run([printer], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        name, alias, kind, default, lo, hi, setuid, hidden, doc = line.split("\t")
        rows[name] = {"alias": None if alias == "-" else alias, "kind": kind,
                      "default": int(default), "hidden": hidden == "1", "doc": doc}
    return rows


def check_all(printer, readme, wrapper):
    rows = table(printer)
    names = {n for n, r in rows.items() if not r["hidden"]}
    spellings = set(rows) | {r["alias"] for r in rows.values() if r["alias"]}
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    listed = {}
    row = re.compile(r"^\| `(HEAPPROF[A-Z_]*)`(?: \(or `(HEAPPROF[A-Z_]*)`\))? \|(.*)\|[ \t]*(.*?)"
                     r"[ \t]*\|[ \t]*$", re.M)
    for m in row.finditer(text):
        listed[m.group(1)] = (m.group(2), m.group(4))
    check(set(listed) == names,
          f"README's variables {sorted(listed)} differ from the table's {sorted(names)}: "
          f"missing {sorted(names - set(listed))}, not in the table {sorted(set(listed) - names)}")
    for name, (alias, default) in listed.items():
        r = rows[name]
        check(alias == r["alias"], f"{name}: the README gives the older spelling {alias}, "
              f"the table {r['alias']}")
        if r["kind"] == "int" and r["default"] > 1:
            check(default.startswith(str(r["default"])),
                  f"{name}: the README's default {default!r}, the table's {r['default']}")
    with open(wrapper, encoding="utf-8") as f:
        # @HEAPPROF_...@ are meson's substitutions, not variables.
        used = set(re.findall(r"(?<!@)\b(HEAPPROF(?:_[A-Z]+)*)\b(?!@)", f.read()))
    stray = sorted(used - spellings - {"HEAPPROF_WRAPPER"})
    check(not stray, f"the wrapper uses variables the table does not know: {stray}")


if __name__ == "__main__":
    h.main(check_all, *sys.argv[1:4])
