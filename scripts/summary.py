#!/usr/bin/env python3
"""Reads meson's testlog.json and prints, last, `N passed, N failed, N skipped`.

Skipped tests are listed with the reason they printed. Exits 1 when any test
failed (or timed out), 0 otherwise.
"""
import json
import sys


def main(path):
    passed, failed, skipped = [], [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            res = t.get("result", "")
            name = t.get("name", "?")
            if res in ("OK", "EXPECTEDFAIL"):
                passed.append(name)
            elif res == "SKIP":
                out = (t.get("stdout") or "").strip().splitlines()
                skipped.append((name, out[-1] if out else "no reason given"))
            else:
                failed.append((name, res))
    for name, why in skipped:
        print(f"skipped: {name}: {why}")
    for name, res in failed:
        print(f"failed: {name} ({res})")
    print(f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
