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
