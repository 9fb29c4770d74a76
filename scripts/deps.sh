#!/bin/sh
# Installs Debian 12 packages heapprof needs: with no argument, those to
# build and test it (the list below and scripts/extra-packages.txt); with
# arguments, those listed in the given files instead (bench/deps.sh passes
# bench/packages.txt). Runs apt-get update once and apt-get install once,
# and only when something is missing. Needs root (or sudo).
set -eu

lists() {
    # One or more package names per line; # starts a comment.
    cat "$@" 2>/dev/null | sed 's/#.*//'
}

if [ $# -gt 0 ]; then
    PACKAGES=$(lists "$@")
else
    # Build: compiler, meson, protobuf-c, libunwind, uthash, libdw, zlib,
    # libdeflate (optional: large profiles compress faster with it).
    # Tests: python3, Go's pprof; the rest is in extra-packages.txt.
    PACKAGES="gcc g++ meson ninja-build pkg-config protobuf-c-compiler libprotobuf-c-dev
libunwind-dev uthash-dev libdw-dev libelf-dev zlib1g-dev libdeflate-dev python3 golang-go
ca-certificates
$(lists "$(dirname "$0")/extra-packages.txt")"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "heapprof: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >&2
