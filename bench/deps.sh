#!/bin/sh
# Installs the Debian packages that bench/run.py compares heapprof against
# (bench/packages.txt), through the project's installer. run.py installs
# nothing itself: it only reports what is missing and points here.
set -eu
exec sh "$(dirname "$0")/../scripts/deps.sh" "$(dirname "$0")/packages.txt"
