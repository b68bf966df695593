#!/bin/bash
# End to end on the synthetic phantom: covct phantom, covct analyze, and
# the result against the phantom's exact truth (tests/phantom_e2e.py):
# the density lesion method with every check, the lesion network (the
# default) with the checks that apply to it (phantom_e2e.py --network).
. "$(dirname "$0")/lib.sh"
need "$PY"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COVCT_BIN" phantom -o "$tmp/ph" >/dev/null
check "covct phantom" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/r" -q --lesions density
check "covct analyze --lesions density on the phantom" [ $? -eq 0 ]
check "report.html written" [ -s "$tmp/r/report.html" ]
check "density method: phantom results against the truth" \
    "$PY" "$(dirname "$0")/phantom_e2e.py" "$tmp/ph" "$tmp/r"
check "report.json names the density method" \
    grep -q '"name":[[:space:]]*"density"' "$tmp/r/report.json"
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/n" -q
check "covct analyze (network, the default) on the phantom" [ $? -eq 0 ]
check "network: phantom results against the truth" \
    "$PY" "$(dirname "$0")/phantom_e2e.py" "$tmp/ph" "$tmp/n" --network
check "report.json names the network" \
    grep -q '"name":[[:space:]]*"network"' "$tmp/n/report.json"
finish
