#!/bin/bash
# The built-in example and the command line's manners: help texts, usage
# errors, and the synthetic series checked by dicom3tools and nibabel.
. "$(dirname "$0")/lib.sh"
need dciodvfy dcmdump "$PY"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$COVCT_BIN" demo demo >demo.log 2>&1
check "covct demo exits 0" [ $? -eq 0 ]
check "demo writes 40 files" [ "$(ls demo | wc -l)" -eq 40 ]
check "demo info finds one series" grep -q "1 series, 0 files skipped" demo.log
check "demo NIfTI written" [ -s demo.nii.gz ]
dciodvfy "$(ls demo/*.dcm | head -1)" >dciodvfy.log 2>&1
check "dciodvfy finds no errors in a demo slice" bash -c "! grep -q '^Error' dciodvfy.log"
# Slice order: the NIfTI's slice k must sit at the k-th lowest Image
# Position z that dcmtk reads from the files (written out of order).
for f in demo/*.dcm; do
    dcmdump +P 0020,0032 "$f" | sed -n 's/.*DS \[\(.*\)\].*/\1/p'
done >ipp.txt
"$PY" - <<'PYEOF'
import sys
import nibabel as nib
import numpy as np
img = nib.load("demo.nii.gz")
z = sorted(float(l.split("\\")[2]) for l in open("ipp.txt"))
a = img.affine
ok = img.shape == (256, 256, 40) and np.allclose(img.header.get_zooms(), (1.4, 1.4, 5.0))
kz = [a[2, 2] * k + a[2, 3] for k in range(img.shape[2])]
ok = ok and np.allclose(kz, z, atol=1e-3)
print("shape", img.shape, "zooms", img.header.get_zooms(), "z", kz[0], "..", kz[-1])
sys.exit(0 if ok else 1)
PYEOF
check "demo volume ordered by position, not file name" [ $? -eq 0 ]

for c in "" info dump volume demo analyze phantom segment train eval model; do
    "$COVCT_BIN" $c --help >help.txt 2>&1
    check "covct $c --help exits 0" [ $? -eq 0 ]
    check "covct $c --help prints usage" grep -q "Usage: covct" help.txt
done
"$COVCT_BIN" frobnicate >err.txt 2>&1
check "unknown command exits 2" [ $? -eq 2 ]
check "unknown command named" grep -q "unknown command 'frobnicate'" err.txt
"$COVCT_BIN" volume demo >err.txt 2>&1
check "volume without -o exits 2" [ $? -eq 2 ]
check "volume without -o says what is missing" grep -q -- "-o OUT.nii.gz is required" err.txt
"$COVCT_BIN" info /nonexistent/x.dcm >err.txt 2>&1
check "missing input exits 1" [ $? -eq 1 ]
check "missing input named" grep -q "/nonexistent/x.dcm" err.txt
# Not a chest CT: said plainly, exit 1, and the report still written.
ctsmall=$(data dicom-conformance/pydicom-2.3.1-debian/CT_small.dcm)
"$COVCT_BIN" analyze "$ctsmall" -o nc -q >err.txt 2>&1
check "analyze on a non-chest image exits 1" [ $? -eq 1 ]
check "it says it is not a chest CT" grep -q "not a chest CT: " err.txt
check "the report says so too" grep -q "Not a chest CT" nc/report.html
"$PY" -c 'import json,sys; r=json.load(open("nc/report.json")); sys.exit(0 if r["is_chest"] is False and r["ct_severity_score"] is None else 1)'
check "report.json: is_chest false, no score" [ $? -eq 0 ]

# A folder holding two patients' series is refused, naming both patients
# (a report is of one patient); two series of one patient are analysed
# with a note naming the series chosen.
mkdir mixed
for f in "$(data covid-ct-md/P001)"/*; do ln -s "$f" "mixed/p_${f##*/}"; done
for f in "$(data covid-ct-md/normal001)"/*; do ln -s "$f" "mixed/n_${f##*/}"; done
"$COVCT_BIN" analyze mixed -o mixed_out -q >err.txt 2>&1
check "two patients in one folder: exit 1" [ $? -eq 1 ]
check "both patients named" bash -c "grep 'more than one patient' err.txt | grep '98C14734-ASSH' | grep -q '99C628-ASAD'"
check "it says how to choose" grep -q -- "--series N" err.txt
check "no report for two patients" [ ! -e mixed_out/report.json ]
"$COVCT_BIN" volume mixed -o mixed.nii.gz >err.txt 2>&1
check "volume refuses two patients too" [ $? -eq 1 ]
check "volume names them" grep -q "more than one patient" err.txt
"$COVCT_BIN" phantom --seed 1 -o ph1 >/dev/null 2>&1 &&
    "$COVCT_BIN" phantom --seed 2 -o ph2 >/dev/null 2>&1
check "two phantoms written" [ $? -eq 0 ]
mkdir same
cp ph1/dicom/*.dcm same/
for f in ph2/dicom/*.dcm; do cp "$f" "same/b_${f##*/}"; done
"$COVCT_BIN" analyze same -o same_out -q >err.txt 2>&1
check "two series of one patient: analysed" [ $? -eq 0 ]
check "the note names the series chosen" grep -q "holds 2 image series of this patient; reading series 1 (CT, 120 slices" err.txt
check "its report written" [ -s same_out/report.json ]
finish
