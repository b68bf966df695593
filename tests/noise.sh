#!/bin/bash
# covct analyze on noisier scans (a low-dose CT has more quantum noise):
# COVID-CT-MD's normal001 (normal) and P001 (COVID-19) with Gaussian
# noise of 60 HU standard deviation added to every voxel (numpy, fixed
# seed).  The dataset's diagnoses are the expected answers: normal001
# must stay negative with a severity score of 0 or 1; P001 must score 2
# or more with its opacity volume within 25 % of what its own series
# gives; both lungs of both within 2 % of the noiseless volumes.
. "$(dirname "$0")/lib.sh"
need "$PY"
cmd=$(data covid-ct-md)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in normal001 P001; do
    "$COVCT_BIN" volume "$cmd/$c" -o "$tmp/$c.nii.gz" -q
    check "$c: volume" [ $? -eq 0 ]
    "$PY" - "$tmp/$c.nii.gz" "$tmp/${c}_noisy.nii.gz" <<'PYEOF'
import sys
import nibabel as nib
import numpy as np
im = nib.load(sys.argv[1])
d = np.asarray(im.dataobj).astype(np.float32)
d += np.random.default_rng(1).normal(0.0, 60.0, d.shape).astype(np.float32)
nib.save(nib.Nifti1Image(np.clip(np.round(d), -1024, 3071).astype(np.int16),
                         im.affine), sys.argv[2])
PYEOF
    check "$c: noise added" [ $? -eq 0 ]
    for v in "$c" "${c}_noisy"; do
        "$COVCT_BIN" analyze "$tmp/$v.nii.gz" -o "$tmp/$v" -q
        check "$v: analyze" [ $? -eq 0 ]
    done
done
check "noise: diagnoses and volumes" "$PY" - "$tmp" <<'PYEOF'
import json, sys
t = sys.argv[1]
r = lambda d: json.load(open("%s/%s/report.json" % (t, d)))
ok = True
for c in ("normal001", "P001"):
    a, b = r(c), r(c + "_noisy")
    for name, x in ((c, a), (c + " + noise", b)):
        print("%-17s score %2d  %-13s lungs %4.0f / %4.0f ml  opacities %.1f ml" % (
            name, x["ct_severity_score"], x["category"], x["lungs"]["right_ml"],
            x["lungs"]["left_ml"], x["lesions"]["total_ml"]))
    for side in ("right_ml", "left_ml"):
        ok &= abs(b["lungs"][side] - a["lungs"][side]) <= 0.02 * a["lungs"][side]
n, p, p0 = r("normal001_noisy"), r("P001_noisy"), r("P001")
ok &= n["category"] == "negative" and n["ct_severity_score"] <= 1
ok &= p["ct_severity_score"] >= 2
ok &= abs(p["lesions"]["total_ml"] - p0["lesions"]["total_ml"]) <= 0.25 * p0["lesions"]["total_ml"]
sys.exit(0 if ok else 1)
PYEOF
finish
