#!/bin/bash
# The DICOM JSON Model encoder (src/http/dicomjson.c) against real peers:
# dcmtk's dcm2json and pydicom's Dataset.to_json_dict(), on every file of
# the shared conformance set and on the slices of COVID-CT-MD P001.  The
# comparison and the differences accepted (each with its reason from the
# standard) are in tests/dicomweb_json_check.py and
# docs/internals/dicomweb-json.md.  Usage: dicomweb_json.sh DUMP_PROGRAM
. "$(dirname "$0")/lib.sh"
DUMP=$1
need dcm2json dcmodify
conf=$(data dicom-conformance)
p001=$(data covid-ct-md/P001)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Every conformance file (malformed ones included: covct must either refuse
# them or write JSON that the peers agree with), pydicom on each.
find "$conf" -type f ! -name '*.tsv' ! -name '*.md' | sort > "$tmp/conf.txt"
check "conformance files agree with dcm2json and pydicom" \
    $PY "$(dirname "$0")/dicomweb_json_check.py" "$DUMP" "$tmp" $(cat "$tmp/conf.txt")

# All P001 slices with dcm2json; pydicom on every 10th.
check "P001 slices agree with dcm2json" \
    env DICOMWEB_PYDICOM_EVERY=10 $PY "$(dirname "$0")/dicomweb_json_check.py" \
    "$DUMP" "$tmp" "$p001"/*.dcm

# The series as one array with bulk data URIs, as series metadata is
# served: valid JSON, one object per slice, pixel data by reference.
"$DUMP" --bulk "https://h/dicom-web/bulk/" --array "$p001"/*.dcm > "$tmp/series.json" 2> "$tmp/err.txt"
check "series array written" test -s "$tmp/series.json"
check "series array is JSON with one object per slice and bulk URIs" $PY -c '
import json, sys
a = json.load(open(sys.argv[1]))
assert isinstance(a, list) and len(a) == int(sys.argv[2]), len(a)
assert all(o["7FE00010"]["BulkDataURI"].endswith("/7FE00010") for o in a)
assert all("InlineBinary" not in o["7FE00010"] for o in a)
' "$tmp/series.json" "$(ls "$p001"/*.dcm | wc -l)"
check "no sanitizer report" bash -c "! grep -qE 'runtime error|AddressSanitizer' '$tmp/err.txt'"
# Timing is reported, never asserted.
"$DUMP" --time --headers --bulk "https://h/b/" "$p001"/*.dcm >&2 || bad "timing run"
finish
