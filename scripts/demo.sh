#!/bin/sh
# The main job on a bundled example: installs what is missing, builds
# heapprof, runs examples/leaky under it, and shows the three results: the
# profile written, the leak summary, and `go tool pprof -top` of the profile.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
BUILD=${BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" >/dev/null
fi
ninja -C "$BUILD" >/dev/null
OUT="$BUILD/demo"
mkdir -p "$OUT"
rm -f "$OUT/leaky.pb.gz"

echo "== heapprof -o $OUT/leaky.pb.gz -r 1 -- examples/leaky"
echo "   (-r 1: exact mode, every allocation recorded; the default samples"
echo "    one every 512 KiB on average)"
"$BUILD/tools/heapprof" -o "$OUT/leaky.pb.gz" -r 1 -- "$BUILD/examples/leaky"
echo
echo "== go tool pprof -top -sample_index=inuse_space $OUT/leaky.pb.gz"
go tool pprof -top -sample_index=inuse_space "$OUT/leaky.pb.gz" 2>/dev/null
echo
echo "== go tool pprof -top -tagfocus=leak=definite -sample_index=inuse_space $OUT/leaky.pb.gz"
echo "   (only the memory the leak check found lost)"
go tool pprof -top -tagfocus=leak=definite -sample_index=inuse_space "$OUT/leaky.pb.gz" 2>/dev/null
echo
echo "== go tool pprof -top -sample_index=alloc_space $OUT/leaky.pb.gz"
go tool pprof -top -sample_index=alloc_space "$OUT/leaky.pb.gz" 2>/dev/null
echo
echo "Open it in a browser with: go tool pprof -http=: $OUT/leaky.pb.gz"
