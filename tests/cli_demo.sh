#!/bin/bash
# The built-in example and the command line's manners: help texts, usage
# errors, and the synthetic series checked by dicom3tools and nibabel.
. "$(dirname "$0")/lib.sh"
need dciodvfy "$PY"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$COVCT_BIN" demo demo >demo.log 2>&1
check "covct demo exits 0" [ $? -eq 0 ]
check "demo writes 40 files" [ "$(ls demo | wc -l)" -eq 40 ]
check "demo info finds one series" grep -q "1 series, 0 files skipped" demo.log
check "demo NIfTI written" [ -s demo.nii.gz ]
dciodvfy demo/IM0001.dcm >dciodvfy.log 2>&1
check "dciodvfy finds no errors in a demo slice" bash -c "! grep -q '^Error' dciodvfy.log"
"$PY" - <<'PYEOF'
import sys
import nibabel as nib
import numpy as np
img = nib.load("demo.nii.gz")
d = np.asanyarray(img.dataobj)
ok = d.shape == (256, 256, 40) and np.allclose(img.header.get_zooms(), (1.5, 1.5, 5.0))
# Slice order: the phantom's heart (40 HU) exists only below z = 40 mm,
# i.e. in the lower slices (k small, z increasing with k in LPS/RAS).
heart = (d[150:170, 110:130, :] == 40).any(axis=(0, 1))
ok = ok and heart[:5].all() and not heart[-5:].any()
print("shape", d.shape, "zooms", img.header.get_zooms(), "heart slices", np.nonzero(heart)[0])
sys.exit(0 if ok else 1)
PYEOF
check "demo volume ordered by position, not file name" [ $? -eq 0 ]

for c in "" info dump volume demo analyze phantom; do
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
finish
