#!/bin/bash
# covct deid against every row of PS3.15 Table E.1-1
# (src/govern/deid-table.txt), not only the attributes sample files carry:
# pydicom writes an object holding every non-K row with a value of its VR,
# covct de-identifies it, and tests/govern_deid_table.py reads both with
# dcmdump and checks each row's outcome against the table's action.
# Also: the C table is what tools/deidgen.py makes of the text.
. "$(dirname "$0")/lib.sh"
need "$PY" dcmdump dcmodify
if ! "$PY" -c 'import pydicom' 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: python3-pydicom not installed (scripts/install-deps.sh installs it)" >&2; exit 1
    fi
    echo "SKIP: python3-pydicom not installed" >&2; exit 77
fi
src="${COVCT_SOURCE_DIR:-$(dirname "$0")/..}"
table="$src/src/govern/deid-table.txt"
chk="$src/tests/govern_deid_table.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
B=$COVCT_BIN

"$PY" "$src/tools/deidgen.py" "$table" >"$tmp/table.c"
check "deid-table.c is tools/deidgen.py's output for deid-table.txt" \
    diff -u "$src/src/govern/deid-table.c" "$tmp/table.c"

"$PY" "$chk" make "$table" "$tmp/in.dcm"
check "pydicom wrote the object" [ -s "$tmp/in.dcm" ]
"$B" deid --new-key "$tmp/k" >/dev/null
"$B" deid "$tmp/in.dcm" "$tmp/out.dcm" --key "$tmp/k" -q 2>"$tmp/err"
check "covct deid" [ $? -eq 0 ]
cat "$tmp/err" >&2
check "no sanitizer report" eval "! sanitizer_report '$tmp/err'"
check "dcmdump: every row of Table E.1-1 got its action" \
    "$PY" "$chk" check "$table" "$tmp/in.dcm" "$tmp/out.dcm"

# The checker itself must fail on what it is there to catch.
cp "$tmp/out.dcm" "$tmp/bad1.dcm"
dcmodify -nb -i "(0010,1000)=John Doe" "$tmp/bad1.dcm" >/dev/null 2>&1
check "checker catches an X attribute put back" \
    eval "! '$PY' '$chk' check '$table' '$tmp/in.dcm' '$tmp/bad1.dcm' 2>/dev/null"
"$B" deid "$tmp/in.dcm" "$tmp/bad2.dcm" --key "$tmp/k" --keep-institution -q
check "checker catches kept institution names (an option not in the defaults)" \
    eval "! '$PY' '$chk' check '$table' '$tmp/in.dcm' '$tmp/bad2.dcm' 2>/dev/null"
"$B" deid "$tmp/in.dcm" "$tmp/bad3.dcm" --key "$tmp/k" --no-date-shift -q
check "checker catches dates not shifted" \
    eval "! '$PY' '$chk' check '$table' '$tmp/in.dcm' '$tmp/bad3.dcm' 2>/dev/null"
finish
