#!/bin/bash
# End to end on the synthetic phantom: covct phantom, covct analyze, and
# the result against the phantom's exact truth (tests/phantom_e2e.py).
. "$(dirname "$0")/lib.sh"
need "$PY"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COVCT_BIN" phantom -o "$tmp/ph" >/dev/null
check "covct phantom" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/r" -q
check "covct analyze on the phantom" [ $? -eq 0 ]
check "report.html written" [ -s "$tmp/r/report.html" ]
check "phantom results against the truth" "$PY" "$(dirname "$0")/phantom_e2e.py" "$tmp/ph" "$tmp/r"
finish
