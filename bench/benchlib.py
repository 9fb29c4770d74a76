"""Helpers the benchmark scripts share."""

import json
import os
import subprocess
import sys


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def commit_of(build):
    """The commit measured, and the source tree the build came from."""
    try:
        with open(os.path.join(build, "meson-info", "meson-info.json")) as f:
            src = json.load(f)["directories"]["source"]
    except (OSError, KeyError, ValueError):
        return "?", "?"
    git = ["git", "-C", src]
    c = subprocess.run(git + ["rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True).stdout.strip()
    if not c:
        return "not a git checkout", src
    # What is measured is the library: name the last commit that changed it.
    lib = subprocess.run(git + ["log", "-1", "--format=%h", "--", "src", "include"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--", "src", "include"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True).stdout.strip()
    if dirty:
        return c + ", src/ or include/ modified", src
    return "%s (src/ and include/ as of %s)" % (c, lib) if lib and lib != c else c, src


def parse_kv(text):
    """The key=value words of a program's report lines (report.h)."""
    kv = {}
    for line in text.splitlines():
        for tok in line.split():
            if "=" in tok:
                k, _, v = tok.partition("=")
                kv[k] = v
    return kv
