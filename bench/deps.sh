#!/bin/sh
# Installs the Debian packages that bench/run.py compares heapprof against
# (bench/packages.txt). run.py installs nothing itself: it only reports what
# is missing and points here. Runs apt-get only when something is missing.
# Needs root (or sudo).
set -eu

PACKAGES="$(grep -v '^#' "$(dirname "$0")/packages.txt")"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "bench: all benchmark packages are installed" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "bench: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >&2
