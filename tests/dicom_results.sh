#!/bin/bash
# covct analyze --dicom: the DICOM Segmentation, the TID 1500 SR and the
# Secondary Capture key images, checked by real peers on a small phantom:
#   dciodvfy (dicom3tools)  no "Error" line for any object (warnings are
#                           printed, and listed in docs/internals/dicom-results.md);
#   dcmdump, dsrdump (dcmtk) read every object; the SR shows the total CT
#                           severity score of report.json;
#   pydicom + nibabel       tests/dicom_results_check.py: UIDs, references
#                           to the source images, Frame of Reference, every
#                           SEG frame against the NIfTI masks of the same
#                           run (pydicom's own 1-bit unpacking), SR values
#                           against report.json, the key images' banner.
# Then the refusals: a NIfTI input, a source image without a SOP Instance
# UID.  With the argument p001: the same peers on COVID-CT-MD's P001 (real
# scanner images, JPEG lossless; shared data), lesion network.
. "$(dirname "$0")/lib.sh"
need "$PY" dciodvfy dsrdump dcmdump dcmodify
if ! "$PY" -c 'import pydicom, nibabel, numpy' 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: python3-pydicom not installed (scripts/install-deps.sh installs it)" >&2; exit 1
    fi
    echo "SKIP: python3-pydicom not installed" >&2; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$(dirname "$0")

if [ "${1:-}" = p001 ]; then
    src=$(data covid-ct-md/P001) || exit $?
    "$COVCT_BIN" analyze "$src" -o "$tmp/p" --dicom -q 2>"$tmp/p.err"
    check "covct analyze --dicom P001" [ $? -eq 0 ]
    cat "$tmp/p.err" >&2
    for f in "$tmp"/p/dicom/*.dcm; do
        n=$(basename "$f")
        dciodvfy "$f" >"$tmp/v.txt" 2>&1
        check "P001 dciodvfy $n: no errors" eval "! grep -q '^Error' '$tmp/v.txt'"
        grep '^Error' "$tmp/v.txt" >&2
        grep '^Warning' "$tmp/v.txt" | sort | uniq -c | sed "s|^|  $n: |"
    done
    check "P001 dsrdump" eval "dsrdump '$tmp/p/dicom/sr.dcm' >/dev/null 2>&1"
    check "P001: pydicom + nibabel against the source and the masks" \
        "$PY" "$here/dicom_results_check.py" "$src" "$tmp/p"
    finish
fi

# 239 x 239 pixels: an odd number per frame, so the SEG's 1-bit frames do
# not start on byte boundaries (PS3.5 8.1.1), which the peers must follow.
"$COVCT_BIN" phantom -o "$tmp/ph" --slice 5 --spacing 1.5 >/dev/null
check "covct phantom" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/r" --lesions density --dicom \
    >"$tmp/r.out" 2>"$tmp/r.err"
check "covct analyze --dicom on the phantom" [ $? -eq 0 ]
check "the summary names the DICOM results" \
    grep -q "^DICOM results: $tmp/r/dicom/" "$tmp/r.out"
for f in seg.dcm sr.dcm key-01.dcm key-02.dcm; do
    check "$f written" [ -s "$tmp/r/dicom/$f" ]
done
check "no sanitizer report" eval "! sanitizer_report '$tmp/r.err'"

for f in "$tmp"/r/dicom/*.dcm; do
    n=$(basename "$f")
    dciodvfy "$f" >"$tmp/v.txt" 2>&1
    errs=$(grep -c '^Error' "$tmp/v.txt")
    check "dciodvfy $n: no errors" [ "$errs" -eq 0 ]
    [ "$errs" -eq 0 ] || grep '^Error' "$tmp/v.txt" >&2
    # Warnings are allowed; show them once per kind for the log.
    grep '^Warning' "$tmp/v.txt" | sort | uniq -c | sed "s|^|  $n: |"
    dcmdump "$f" >"$tmp/d.txt" 2>&1
    check "dcmdump $n" [ $? -eq 0 ]
    check "dcmdump $n: no errors" eval "! grep -q '^E:' '$tmp/d.txt'"
done

score=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["ct_severity_score"])' \
    "$tmp/r/report.json")
dsrdump +Pl "$tmp/r/dicom/sr.dcm" >"$tmp/sr.txt" 2>"$tmp/sr.err"
check "dsrdump reads the SR" [ $? -eq 0 ]
check "dsrdump: TID 1500 measurement report" \
    grep -q 'CONTAINER:(,,"Imaging Measurement Report")' "$tmp/sr.txt"
check "dsrdump: total CT severity score $score, as report.json" \
    grep -q "NUM:(,,\"CT severity score (Pan 2020, 0-25)\")=\"$score\"" "$tmp/sr.txt"
check "dsrdump: lobe volumes in ml" \
    grep -q 'NUM:(,,"Volume")="[0-9.]*" (ml,UCUM,"ml")' "$tmp/sr.txt"
check "dsrdump: the RSNA category" \
    grep -q 'RSNA COVID-19 CT pattern category' "$tmp/sr.txt"
check "dsrdump: the AI notice" \
    grep -q 'AI result, to be confirmed by a radiologist' "$tmp/sr.txt"
check "dsrdump: unverified" grep -q 'Verification Flag *: UNVERIFIED' "$tmp/sr.txt"

check "pydicom + nibabel: SEG, SR and key images against the source and the masks" \
    "$PY" "$here/dicom_results_check.py" "$tmp/ph/dicom" "$tmp/r"

# The lesion network (the default) names itself in the SEG.
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/n" --dicom -q 2>"$tmp/n.err"
check "covct analyze --dicom (network)" [ $? -eq 0 ]
check "network: SEG names the lesion network" \
    eval "dcmdump '$tmp/n/dicom/seg.dcm' | grep -q 'U-Net.*SegmentAlgorithmName'"
check "network: peers agree" \
    "$PY" "$here/dicom_results_check.py" "$tmp/ph/dicom" "$tmp/n"

check "--help mentions --dicom" eval "'$COVCT_BIN' analyze --help | grep -q -- --dicom"

# NIfTI: no source images to reference; refused before any work.
"$COVCT_BIN" volume "$tmp/ph/dicom" -o "$tmp/v.nii.gz" -q
"$COVCT_BIN" analyze "$tmp/v.nii.gz" -o "$tmp/x" --dicom -q 2>"$tmp/x.err"
check "NIfTI with --dicom: exit 2" [ $? -eq 2 ]
check "NIfTI with --dicom: says why" grep -q "NIfTI" "$tmp/x.err"
check "NIfTI with --dicom: nothing written" [ ! -e "$tmp/x" ]

# A source image without SOP Instance UID (as some research sets have):
# the report is written, the DICOM results are refused, exit 1.
cp -r "$tmp/ph/dicom" "$tmp/bad"
first=$(ls "$tmp/bad" | head -1)
dcmodify -nb -e "(0008,0018)" "$tmp/bad/$first" >/dev/null 2>&1
"$COVCT_BIN" analyze "$tmp/bad" -o "$tmp/b" --lesions density --dicom -q \
    2>"$tmp/b.err"
check "no SOP Instance UID: exit 1" [ $? -eq 1 ]
check "no SOP Instance UID: says which attribute" \
    grep -q "SOP Instance UID" "$tmp/b.err"
check "no SOP Instance UID: the report is still written" [ -s "$tmp/b/report.html" ]
check "no SOP Instance UID: no DICOM object written" [ ! -e "$tmp/b/dicom/seg.dcm" ]
finish
