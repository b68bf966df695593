#!/bin/bash
# `covct info` on every file of the conformance set (MANIFEST.tsv): each
# file that dcmtk's dcmdump parses must give exit 0 (headers and pixels);
# the others must fail cleanly with a message; none may crash, hang or
# trip the sanitizers.
. "$(dirname "$0")/lib.sh"
root=$(data dicom-conformance)
manifest="$root/MANIFEST.tsv"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# Files whose pixel data is corrupt on purpose (their README says so): the
# data set parses, but `covct info` must refuse the pixels, not show garbage.
corrupt_pixels="pydicom-2.3.1-debian/JPEG2000-embedded-sequence-delimiter.dcm"
n=0
# Columns: 1 path, 14 dcmtk_dcmdump (read via awk: empty fields matter).
while IFS=$'\t' read -r dcmtk path; do
    n=$((n + 1))
    timeout 120 "$COVCT_BIN" info "$root/$path" >"$tmp" 2>&1
    rc=$?
    if sanitizer_report "$tmp" || [ $rc -ge 124 ]; then
        bad "$path: crashed, hung or sanitizer report (exit $rc)"; sed -n 1,30p "$tmp" >&2
        continue
    fi
    if [ "$path" = "$corrupt_pixels" ]; then
        if [ $rc -eq 1 ] && grep -q "JPEG 2000" "$tmp"; then ok
        else bad "$path: corrupt J2K pixels not refused (exit $rc)"; fi
        "$COVCT_BIN" info --no-decode "$root/$path" >"$tmp" 2>&1
        check "$path: headers parse" [ $? -eq 0 ]
    elif [ "$dcmtk" = ok ]; then
        if [ $rc -eq 0 ]; then ok; else bad "$path: dcmtk parses it, covct info exit $rc: $(grep error: "$tmp" | head -3)"; fi
    else
        if [ $rc -le 1 ] && { [ $rc -eq 0 ] || grep -q "error:" "$tmp"; }; then ok
        else bad "$path: dcmtk fails; covct exit $rc without a clear error"; fi
    fi
done < <(awk -F'\t' 'NR>1 {print $14 "\t" $1}' "$manifest")
check "manifest lists 264 files" [ "$n" -eq 264 ]
# A file that is not DICOM gets a message that says so and names it.
readme="$root/pydicom-2.3.1-debian/dicomdirtests/TINY_ALPHA/README"
"$COVCT_BIN" info "$readme" >"$tmp" 2>&1
rc=$?
check "README refused with exit 1" [ $rc -eq 1 ]
check "README: 'not a DICOM file' message" grep -q "README: not a DICOM file" "$tmp"
# A transfer syntax covct cannot decode: the error names it and the file.
# The meta header of a P001 slice is patched (same length) from JPEG
# Lossless SV1 (...4.70) to JPEG 2000 Part 2 (...4.92); dcmdump still
# parses it, and covct must refuse the pixels, never show garbage.
p001=$(data covid-ct-md/P001/98C14734-ASSH_1.dcm)
"$PY" -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.index(b"1.2.840.10008.1.2.4.70"); open(sys.argv[2],"wb").write(d[:i]+b"1.2.840.10008.1.2.4.92"+d[i+22:])' "$p001" "$tmp.j2kp2.dcm"
check "dcmdump parses the patched file" dcmdump -q "$tmp.j2kp2.dcm"
"$COVCT_BIN" info "$tmp.j2kp2.dcm" >"$tmp" 2>&1
check "undecodable transfer syntax: exit 1" [ $? -eq 1 ]
check "message names the syntax and the file" \
    grep -q "j2kp2.dcm: frame 1: unsupported transfer syntax 1.2.840.10008.1.2.4.92" "$tmp"
rm -f "$tmp.j2kp2.dcm"
finish
