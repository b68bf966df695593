#!/bin/sh
# Install the Debian 12 packages covct needs to build, test and benchmark.
# Idempotent: does nothing when everything is installed.  Needs root (or
# sudo) only when something is missing.
set -eu

PACKAGES="
build-essential cmake pkg-config
zlib1g-dev libjpeg62-turbo-dev libopenjp2-7-dev libcharls-dev
libcjson-dev libpng-dev libdnnl-dev libsqlite3-dev libssl-dev sqlite3
dcmtk
clang libclang-rt-14-dev
python3 python3-numpy python3-nibabel python3-scipy python3-pil python3-sklearn python3-torch
dicom3tools dcm2niix libgdcm-tools time
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "covct: all build and test dependencies are installed"
    exit 0
fi

echo "covct: installing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "covct: error: run this as root (or install sudo) to install:$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
