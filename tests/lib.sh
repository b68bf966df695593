# Shared helpers for covct's shell tests.  Sourced, not run.
set -u
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }
check() { # check DESCRIPTION COMMAND...
    d=$1; shift
    if "$@"; then ok; else bad "$d"; fi
}
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ] && [ "$PASS" -gt 0 ]
    exit $?
}
# data REL: path under the shared data folder; fails in CI, skips elsewhere.
data() {
    p="${COVCT_SHARED_DATA:-../shared/data}/$1"
    if [ ! -e "$p" ]; then
        if [ "${CI:-}" = true ]; then
            echo "FAIL: shared test data missing: $p" >&2; exit 1
        fi
        echo "SKIP: shared test data missing: $p" >&2; exit 77
    fi
    printf '%s\n' "$p"
}
# need TOOL...: a peer program; fails in CI, skips elsewhere.
need() {
    for t in "$@"; do
        if ! command -v "$t" >/dev/null 2>&1; then
            if [ "${CI:-}" = true ]; then
                echo "FAIL: $t not installed (scripts/install-deps.sh installs it)" >&2; exit 1
            fi
            echo "SKIP: $t not installed" >&2; exit 77
        fi
    done
}
# Debian's python3, which has numpy and nibabel (not a pyenv one).
PY=/usr/bin/python3
sanitizer_report() { grep -qE 'runtime error|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer' "$1"; }
# A TCP port free on loopback now (for a peer the test starts).
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The SHA-256 of a Part 10 file's data set: the bytes after its file meta
# information, whose length is the UL value at byte 140 (PS3.10 7.1).
dataset_sha() {
    $PY - "$1" <<'EOF'
import hashlib, struct, sys
b = open(sys.argv[1], "rb").read()
assert b[128:132] == b"DICM" and b[132:136] == b"\x02\x00\x00\x00"
gl = struct.unpack("<I", b[140:144])[0]
print(hashlib.sha256(b[144 + gl:]).hexdigest())
EOF
}
