#!/bin/bash
# GE and Toshiba slices of TCIA COVID-19-NY-SBU: HU values and the outside
# mask (vendor Pixel Padding Value, out-of-field fill) against dcmtk.
. "$(dirname "$0")/lib.sh"
need dcmdump "$PY"
root=$(data covid19-ny-sbu-slices)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mapfile -t files < <(find "$root" -name '*.dcm' | sort)
check "20 NY-SBU slices found" [ "${#files[@]}" -eq 20 ]
check "HU and outside mask equal dcmtk's for every slice" \
    "$PY" "$(dirname "$0")/padding_check.py" "$COVCT_BIN" "$tmp" "${files[@]}"
finish
