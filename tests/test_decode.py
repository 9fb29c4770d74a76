"""Unit tests of heapprof-decode on hand-made profiles: a valid one it must
print correctly in each mode, and broken ones it must refuse with exit status
1 and a message naming the problem, as `go tool pprof` would refuse them.

Usage: test_decode.py CHECK   (CHECK: cli, text, json, functions, invalid,
pprof-agrees). The profiles are encoded here with a small protobuf writer so
the test depends on neither the library nor the decoder's own code.
"""

import copy
import gzip
import os
import sys

import helpers
from helpers import Failure, check


# ---- a minimal protobuf encoder -------------------------------------------

def varint(n):
    n &= (1 << 64) - 1  # negative int64 values are ten-byte two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def f_varint(num, value):
    return varint(num << 3) + varint(value) if value else b""


def f_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_packed(num, values):
    if not values:
        return b""
    return f_bytes(num, b"".join(varint(v) for v in values))


# ---- the model of a profile -------------------------------------------------

def sample_profile():
    """A small valid heap profile. Names include characters JSON must
    escape. Stacks (leaf first):
      s0: leaf_fn <- main                        values 1 100 1 100, bytes=100
      s1: app::thing(int) [inlined in] main      values 2 64 0 0,    bytes=32
      s2: leaf_fn <- app::thing <- main <- main  values 4 400 4 400, bytes=100
    """
    return {
        "strings": ["", "alloc_objects", "count", "alloc_space", "bytes", "inuse_objects",
                    "inuse_space", "space", "/bin/demo", "abc123", "leaf_fn", "main",
                    "app::thing(int)", "_ZN3app5thingEi", "demo.c", 'we"ird\\dir/x\n\x01.c',
                    "a comment"],
        "sample_type": [(1, 2), (3, 4), (5, 2), (6, 4)],
        "period_type": (7, 4),
        "period": 1,
        "time_nanos": 1700000000000000000,
        "duration_nanos": 5000,
        "default_sample_type": 0,
        "comment": [16],
        "mapping": [{"id": 1, "start": 0x400000, "limit": 0x500000, "offset": 0x1000,
                     "file": 8, "build_id": 9, "flags": (1, 1, 1, 1)}],
        "function": [{"id": 1, "name": 10, "system_name": 10, "file": 14},
                     {"id": 2, "name": 11, "system_name": 11, "file": 14},
                     {"id": 3, "name": 12, "system_name": 13, "file": 15}],
        "location": [{"id": 1, "mapping": 1, "address": 0x401000, "lines": [(1, 10)]},
                     {"id": 2, "mapping": 1, "address": 0x402000, "lines": [(2, 20)]},
                     {"id": 3, "mapping": 1, "address": 0x403000, "lines": [(3, 5), (2, 21)]}],
        "sample": [{"locations": [1, 2], "values": [1, 100, 1, 100], "labels": [(4, 0, 100)]},
                   {"locations": [3], "values": [2, 64, 0, 0], "labels": [(4, 0, 32)]},
                   {"locations": [1, 3, 2], "values": [4, 400, 4, 400],
                    "labels": [(4, 0, 100)]}],
    }


def encode(p):
    out = bytearray()
    for t, u in p["sample_type"]:
        out += f_bytes(1, f_varint(1, t) + f_varint(2, u))
    for s in p["sample"]:
        body = f_packed(1, s["locations"]) + f_packed(2, s["values"])
        for key, strv, num in s["labels"]:
            body += f_bytes(3, f_varint(1, key) + f_varint(2, strv) + f_varint(3, num))
        out += f_bytes(2, body)
    for m in p["mapping"]:
        body = (f_varint(1, m["id"]) + f_varint(2, m["start"]) + f_varint(3, m["limit"]) +
                f_varint(4, m["offset"]) + f_varint(5, m["file"]) + f_varint(6, m["build_id"]))
        for i, flag in enumerate(m["flags"]):
            body += f_varint(7 + i, flag)
        out += f_bytes(3, body)
    for loc in p["location"]:
        body = f_varint(1, loc["id"]) + f_varint(2, loc["mapping"]) + f_varint(3, loc["address"])
        for fn, line in loc["lines"]:
            # An explicit function_id 0 must still be encoded to be tested.
            body += f_bytes(4, varint(1 << 3) + varint(fn) + f_varint(2, line))
        out += f_bytes(4, body)
    for fn in p["function"]:
        out += f_bytes(5, f_varint(1, fn["id"]) + f_varint(2, fn["name"]) +
                       f_varint(3, fn["system_name"]) + f_varint(4, fn["file"]))
    for s in p["strings"]:
        out += f_bytes(6, s.encode())
    out += f_varint(9, p["time_nanos"]) + f_varint(10, p["duration_nanos"])
    out += f_bytes(11, f_varint(1, p["period_type"][0]) + f_varint(2, p["period_type"][1]))
    out += f_varint(12, p["period"])
    out += f_packed(13, p["comment"])
    out += f_varint(14, p["default_sample_type"])
    return bytes(out)


def write(dirname, name, profile, compress=True):
    path = os.path.join(dirname, name)
    data = encode(profile)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)
    return path


# ---- broken variants --------------------------------------------------------
# (name, mutation, words the error message must contain, does Go 1.19's
# pprof refuse it too)

def _set(path, value):
    def mutate(p):
        obj = p
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return mutate


def _extra_function(p):
    p["function"].append(dict(p["function"][0]))


def _extra_location(p):
    p["location"].append(dict(p["location"][1]))


def _extra_mapping(p):
    m = dict(p["mapping"][0])
    m["start"], m["limit"] = 0x600000, 0x700000
    p["mapping"].append(m)


INVALID = [
    ("first string not empty", _set(["strings", 0], "x"), "string_table[0]", True),
    ("function name out of range", _set(["function", 0, "name"], 99), "out of range", True),
    ("label key out of range", _set(["sample", 0, "labels", 0], (42, 0, 100)), "out of range",
     True),
    ("sample type out of range", _set(["sample_type", 1], (3, 77)), "out of range", True),
    ("mapping id 0", _set(["mapping", 0, "id"], 0), "id 0", True),
    ("location id 0", _set(["location", 0, "id"], 0), "id 0", True),
    ("function id 0", _set(["function", 2, "id"], 0), "id 0", True),
    ("duplicate mapping id", _extra_mapping, "duplicate mapping", True),
    ("duplicate location id", _extra_location, "duplicate location", True),
    ("duplicate function id", _extra_function, "duplicate function", True),
    ("sample names missing location", _set(["sample", 1, "locations"], [3, 9]),
     "missing location", True),
    ("too few values", _set(["sample", 2, "values"], [4, 400, 4]), "values", True),
    ("too many values", _set(["sample", 0, "values"], [1, 2, 3, 4, 5]), "values", True),
    ("line names missing function", _set(["location", 2, "lines"], [(3, 5), (7, 21)]),
     "missing function", True),
    # pprof itself does not check these two; heapprof's own reader does.
    ("location names missing mapping", _set(["location", 1, "mapping"], 5), "missing mapping",
     False),
    ("address outside mapping", _set(["location", 0, "address"], 0x500000),
     "outside mapping", False),
]


def expect_invalid(path, words):
    proc = helpers.decode(path)
    check(proc.returncode == 1,
          f"heapprof-decode exited {proc.returncode} on {os.path.basename(path)}, "
          f"wanted 1:\n{proc.stderr}")
    msg = proc.stderr.strip()
    check(msg.count("\n") == 0 and msg, f"want a one-line message, got {msg!r}")
    check(words in msg, f"message {msg!r} does not mention {words!r}")
    check(proc.stdout == "", f"printed output for an invalid profile: {proc.stdout[:300]!r}")


# ---- checks -----------------------------------------------------------------

def check_cli():
    dec = helpers.decoder_path()
    proc = helpers.run([dec, "--help"])
    check(proc.returncode == 0 and "--functions" in proc.stdout and "--json" in proc.stdout,
          "--help: " + helpers.describe(proc))
    proc = helpers.run([dec, "--bogus", "x"])
    check(proc.returncode == 2, "unknown option should exit 2: " + helpers.describe(proc))
    proc = helpers.run([dec])
    check(proc.returncode == 2, "no FILE should exit 2: " + helpers.describe(proc))
    tmp = helpers.tempdir()
    proc = helpers.decode(os.path.join(tmp, "missing.pb.gz"))
    check(proc.returncode == 1 and "missing.pb.gz" in proc.stderr,
          "a missing file should exit 1 naming it: " + helpers.describe(proc))


def check_text():
    tmp = helpers.tempdir()
    p = sample_profile()
    gz = helpers.decode_ok(write(tmp, "p.pb.gz", p))
    raw = helpers.decode_ok(write(tmp, "p.pb", p, compress=False))
    check(gz == raw, "gzipped and plain input print differently")
    with open(os.path.join(tmp, "p.pb.gz"), "rb") as f:
        piped = helpers.run([helpers.decoder_path(), "-"], stdin=f)
    check(piped.returncode == 0 and piped.stdout == gz, "reading stdin ('-') differs")
    for want in ["alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes",
                 "space/bytes", "/bin/demo", "abc123", "a comment",
                 "1 100 1 100  bytes=100 : leaf_fn (demo.c:10) <- main (demo.c:20)",
                 "2 64 0 0  bytes=32 : app::thing(int) (",
                 "leaf_fn (demo.c:10) <- app::thing(int) ("]:
        check(want in gz, f"text output lacks {want!r}:\n{gz}")
    # Inline frames are expanded in proto order: the inlined callee first.
    check(":5) <- main (demo.c:21) <- main (demo.c:20)" in gz,
          f"inline frames not expanded innermost first:\n{gz}")


def check_json():
    tmp = helpers.tempdir()
    doc = helpers.decode_json(write(tmp, "p.pb.gz", sample_profile()))
    check(doc["sample_types"] == [["alloc_objects", "count"], ["alloc_space", "bytes"],
                                  ["inuse_objects", "count"], ["inuse_space", "bytes"]],
          f"sample_types {doc['sample_types']}")
    check(doc["period_type"] == ["space", "bytes"], f"period_type {doc['period_type']}")
    check(doc["period"] == 1 and doc["default_sample_type"] == "", "period/default type")
    check(doc["time_nanos"] == 1700000000000000000 and doc["duration_nanos"] == 5000, "times")
    check(doc["mappings"] == [{"id": 1, "start": 0x400000, "limit": 0x500000,
                               "offset": 0x1000, "file": "/bin/demo", "build_id": "abc123",
                               "has_functions": True, "has_filenames": True,
                               "has_line_numbers": True, "has_inline_frames": True}],
          f"mappings {doc['mappings']}")
    check(len(doc["samples"]) == 3, "sample count")
    s1 = doc["samples"][1]
    check(s1["values"] == [2, 64, 0, 0] and s1["labels"] == {"bytes": 32}, f"sample 1 {s1}")
    check(s1["stack"] == [{"address": 0x403000, "mapping": 1, "lines": [
        {"function": "app::thing(int)", "system_name": "_ZN3app5thingEi",
         "file": 'we"ird\\dir/x\n\x01.c', "line": 5},
        {"function": "main", "system_name": "main", "file": "demo.c", "line": 21}]}],
        f"sample 1 stack (escaping or inline order wrong): {s1['stack']}")
    s2 = doc["samples"][2]
    check([loc["address"] for loc in s2["stack"]] == [0x401000, 0x403000, 0x402000],
          "stack not leaf first")


def check_functions():
    tmp = helpers.tempdir()
    path = write(tmp, "p.pb.gz", sample_profile())
    flat = helpers.decode_ok(path, "--functions=flat")
    check(flat == helpers.decode_ok(path, "--functions"), "--functions is not flat")
    check(flat.splitlines() == ["5\t500\t5\t500\tleaf_fn", "2\t64\t0\t0\tapp::thing(int)"],
          f"--functions=flat:\n{flat}")
    cum = helpers.decode_ok(path, "--functions=cum")
    # main is on every stack (twice on s2: counted once); ties sort by name.
    check(cum.splitlines() == ["5\t500\t5\t500\tleaf_fn", "7\t564\t5\t500\tmain",
                               "6\t464\t4\t400\tapp::thing(int)"],
          f"--functions=cum:\n{cum}")


def check_invalid():
    tmp = helpers.tempdir()
    for i, (name, mutate, words, _) in enumerate(INVALID):
        p = copy.deepcopy(sample_profile())
        mutate(p)
        try:
            expect_invalid(write(tmp, f"bad{i}.pb.gz", p), words)
        except Failure as e:
            raise Failure(f"{name}: {e}")
    garbage = os.path.join(tmp, "garbage.pb")
    with open(garbage, "wb") as f:
        f.write(b"\x0a\xff\xff\xff\xff\x0f not a profile")
    expect_invalid(garbage, "protobuf")
    truncated = os.path.join(tmp, "truncated.pb.gz")
    with open(truncated, "wb") as f:
        f.write(gzip.compress(encode(sample_profile()))[:40])
    expect_invalid(truncated, "gzip")


def check_pprof_agrees():
    """The valid profile passes `go tool pprof -raw`, and every broken
    variant that pprof refuses is refused by heapprof-decode (check_invalid)
    too: the two readers agree on what is a profile."""
    helpers.go_or_skip()
    tmp = helpers.tempdir()
    proc = helpers.pprof(["-raw", write(tmp, "good.pb.gz", sample_profile())], tmp)
    check(proc.returncode == 0, "pprof refused the valid profile: " + proc.stderr[-1000:])
    check("leaf_fn" in proc.stdout and "app::thing(int)" in proc.stdout,
          "pprof -raw lost the names:\n" + proc.stdout)
    for i, (name, mutate, _, refused) in enumerate(INVALID):
        p = copy.deepcopy(sample_profile())
        mutate(p)
        proc = helpers.pprof(["-raw", write(tmp, f"bad{i}.pb.gz", p)], tmp)
        check((proc.returncode != 0) == refused,
              f"{name}: expected go tool pprof to {'refuse' if refused else 'accept'} it, "
              f"exit status {proc.returncode}: {proc.stderr[-500:]}")


CHECKS = {"cli": check_cli, "text": check_text, "json": check_json,
          "functions": check_functions, "invalid": check_invalid,
          "pprof-agrees": check_pprof_agrees}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
        print("usage: test_decode.py " + "|".join(CHECKS))
        sys.exit(2)
    helpers.main(CHECKS[sys.argv[1]])
