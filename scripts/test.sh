#!/bin/sh
# Installs what is missing, builds heapprof with warnings as errors, runs every
# test, and ends with the line `N passed, N failed` (and `, N skipped`).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
BUILD=${BUILD:-build-test}
if [ -d "$BUILD" ]; then
    meson setup --reconfigure "$BUILD" -Dwerror=true -Dbuildtype=debugoptimized >/dev/null
else
    meson setup "$BUILD" -Dwerror=true -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$BUILD"
status=0
meson test -C "$BUILD" --print-errorlogs --num-processes 2 "$@" || status=$?
python3 scripts/summary.py "$BUILD/meson-logs/testlog.json"
