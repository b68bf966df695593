#!/bin/sh
# Install the Debian 12 packages covct needs to build, test and benchmark.
# Idempotent: does nothing when everything is installed.  Needs root (or
# sudo) only when something is missing.
# orthanc is a benchmark peer only (bench/net_ingest.sh runs a private
# instance through scripts/orthanc-temp.sh): installing it must not leave
# Debian's system Orthanc service running.  While apt-get runs, a
# temporary /usr/sbin/policy-rc.d answers 101 (action forbidden), so no
# package's maintainer script starts a service (invoke-rc.d asks it); an
# existing policy-rc.d (Docker images have one) is left as it is.  Under
# systemd the new orthanc unit is also disabled and stopped.
set -eu

# ocl-icd-opencl-dev: Debian's libdnnl-dev only recommends it, but its
# dnnl-config.cmake (oneDNN built with the OpenCL GPU runtime) fails
# without the OpenCL library and headers; --no-install-recommends below.
PACKAGES="
build-essential cmake pkg-config
zlib1g-dev libjpeg62-turbo-dev libopenjp2-7-dev libcharls-dev
libcjson-dev libpng-dev libdnnl-dev ocl-icd-opencl-dev libsqlite3-dev libssl-dev sqlite3 libxxhash-dev
libpq-dev postgresql libsodium-dev libmicrohttpd-dev
dcmtk
clang libclang-rt-14-dev
python3 python3-numpy python3-nibabel python3-scipy python3-pil python3-sklearn python3-torch python3-pydicom
dicom3tools dcm2niix libgdcm-tools time curl
orthanc orthanc-dicomweb wrk
chromium nodejs
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

# npm for the pages' end-to-end test (playwright-core from its lock file):
# Debian's npm package, unless a Node.js that brings its own npm is there
# (NodeSource's nodejs package clashes with Debian's npm).
command -v npm >/dev/null 2>&1 || missing="$missing npm"

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
POLICY=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$POLICY" ]; then
    $SUDO sh -c "printf '#!/bin/sh\\n# temporary, scripts/install-deps.sh\\nexit 101\\n' >$POLICY && chmod 755 $POLICY"
    own_policy=1
    trap '$SUDO rm -f "$POLICY"' EXIT
    trap 'exit 1' HUP INT TERM
fi
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
if [ "$own_policy" = 1 ]; then
    $SUDO rm -f "$POLICY"
    trap - EXIT
fi
case " $missing " in
*" orthanc "*)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/orthanc ]; then
        $SUDO /etc/init.d/orthanc stop >/dev/null 2>&1 || true
    fi
    if pgrep -x Orthanc >/dev/null 2>&1; then
        echo "covct: warning: a system Orthanc is running (pgrep -a Orthanc);" \
             "the benchmarks start their own (scripts/orthanc-temp.sh)" >&2
    fi
    ;;
esac
# PostgreSQL is a test peer only (the case database's second backend): the
# tests start a throw-away server in a temporary folder
# (scripts/postgres-temp.sh); Debian's system cluster is not needed.
case " $missing " in
*" postgresql "*)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
    ;;
esac
