#!/bin/bash
# covct analyze on thick slices: COVID-CT-MD's 2 mm series of normal001
# (normal) and P001 (COVID-19) made into 5 mm slices the way a scanner
# reconstructs them (tools/slab.py: the mean over each 5 mm slab).  The
# dataset's diagnoses are the expected answers: normal001 must stay
# negative with a severity score of 0 or 1 (before the thick-slice check
# the slabs' partial volume of the diaphragm, heart and apex made 24 ml of
# "opacity" and a score of 5, indeterminate); P001 must score 2 or more,
# and its opacity volume must stay within 25 % of what its own 2 mm
# series gives (the check must not eat real lesions).
. "$(dirname "$0")/lib.sh"
need "$PY"
cmd=$(data covid-ct-md)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in normal001 P001; do
    "$COVCT_BIN" volume "$cmd/$c" -o "$tmp/$c.nii.gz" -q
    check "$c: volume" [ $? -eq 0 ]
    "$PY" "$COVCT_SOURCE_DIR/tools/slab.py" "$tmp/$c.nii.gz" 5 "$tmp/${c}_5.nii.gz"
    check "$c: 5 mm slabs" [ $? -eq 0 ]
    "$COVCT_BIN" analyze "$tmp/${c}_5.nii.gz" -o "$tmp/${c}_5" 2>"$tmp/${c}_5.log" >/dev/null
    check "$c at 5 mm: analyze" [ $? -eq 0 ]
done
"$COVCT_BIN" analyze "$tmp/P001.nii.gz" -o "$tmp/P001_2" -q
check "P001 at 2 mm: analyze" [ $? -eq 0 ]
check "normal001 at 5 mm: the progress says what the check left out" \
    grep -q "top and bottom" "$tmp/normal001_5.log"
check "normal001 at 5 mm: the page names the thick-slice check" \
    grep -q "Thick slices (5.0 mm)" "$tmp/normal001_5/report.html"
check "thick slices: diagnoses and volumes" "$PY" - "$tmp" <<'PYEOF'
import json, sys
t = sys.argv[1]
r = lambda d: json.load(open("%s/%s/report.json" % (t, d)))
n5, p5, p2 = r("normal001_5"), r("P001_5"), r("P001_2")
for name, x in (("normal001 5 mm", n5), ("P001 5 mm", p5), ("P001 2 mm", p2)):
    print("%-15s score %2d  %-13s opacities %.1f ml" % (
        name, x["ct_severity_score"], x["category"], x["lesions"]["total_ml"]))
ok = n5["category"] == "negative" and n5["ct_severity_score"] <= 1
ok &= p5["ct_severity_score"] >= 2
a, b = p5["lesions"]["total_ml"], p2["lesions"]["total_ml"]
ok &= abs(a - b) <= 0.25 * b
# report.json says how much the check left out: something on 5 mm slices,
# nothing on 2 mm ones.
ok &= n5["lesion_method"]["thick_slice_ml"] > 0
ok &= p2["lesion_method"]["thick_slice_ml"] == 0
sys.exit(0 if ok else 1)
PYEOF
finish
