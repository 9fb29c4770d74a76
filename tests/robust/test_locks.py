"""The lock and blocking hooks change nothing a program can see: rb_locks
(recursive, error-checking, robust and priority-inheritance mutexes,
EOWNERDEAD, timed locks, rwlocks, spin locks, cancellation inside six kinds
of wait, EINTR, errors, fork while another thread holds locks) prints the
same lines with heapprof as without it.

Usage: test_locks.py MODE   (off: preloaded, profiling off; on: both
profiles keep every event; sampled: the mutex profile 1 in 3, the block
profile at 1 ms)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import helpers as h  # noqa: E402

MODES = {
    "off": {},
    "on": {"HEAPPROF_HTTP": "127.0.0.1:0", "HEAPPROF_MUTEX_FRACTION": "1",
           "HEAPPROF_BLOCK_RATE": "1"},
    "sampled": {"HEAPPROF_HTTP": "127.0.0.1:0", "HEAPPROF_MUTEX_FRACTION": "3",
                "HEAPPROF_BLOCK_RATE": "1000000"},
}


def check(mode):
    exe = os.path.join(h.env_path("RB_BIN"), "rb_locks")
    base = h.run([exe], env=h.base_env(), timeout=60)
    h.check(base.returncode == 0 and base.stdout.endswith("done\n"),
            "without heapprof: " + h.describe(base))
    env = h.base_env()
    env.update({"LD_PRELOAD": h.lib_path(), **MODES[mode]})
    r = h.run([exe], env=env, timeout=60)
    h.check(r.returncode == 0, f"with heapprof ({mode}): " + h.describe(r))
    if r.stdout != base.stdout:
        a, b = base.stdout.splitlines(), r.stdout.splitlines()
        diff = [f"  without: {x!r}\n  with:    {y!r}" for x, y in zip(a, b) if x != y]
        h.check(False, f"{mode}: the output differs from the run without heapprof:\n" +
                "\n".join(diff or [f"  {len(a)} lines against {len(b)}"]))


if __name__ == "__main__":
    h.main(check, sys.argv[1])
