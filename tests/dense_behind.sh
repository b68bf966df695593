#!/bin/bash
# Dense tissue behind the lungs (docs/internals/lungs.md): consolidation of
# the dependent lower lobes, too thick for the lung mask, is measured and
# reported, and such a scan is never called negative.
#  1. The phantom with the back 30 % of its lungs' depth consolidated in
#     both lower lobes (covct phantom --dependent 0.3): the lung mask
#     leaves most of that consolidation out (measured here from the truth
#     masks); dense_behind_ml must find at least 60 % of what it leaves
#     out and at most 120 % (the phantom's chest wall between its lung and
#     cavity outlines adds some).
#  2. Real anatomy: normal001 (COVID-CT-MD, a normal scan) with the back
#     30 % of its lower lobes (covct's own lobes) set to +30 HU with 15 HU
#     of noise, ~1 L: covct called it negative before this check; now at
#     least 30 % of what the mask leaves out is found (the consolidated
#     costophrenic recesses are not: liver and spleen lie beside them) and
#     the category is not negative.  The unchanged scan: 0 ml, negative.
#  Both: the mean density reported is the consolidation's, and a key
#  image outlines the tissue.
#  3. The standard phantom: 0 ml.  The same region as (2) at -100 HU
#     (fat, neither consolidation nor effusion): under 50 ml.
. "$(dirname "$0")/lib.sh"
need "$PY" dciodvfy dcmdump
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COVCT_BIN" phantom --dependent 0.3 -o "$tmp/dep" >/dev/null
check "phantom --dependent 0.3" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/dep/dicom" -o "$tmp/o_dep" --dicom >"$tmp/dep.log" 2>&1
check "analyze the dependent phantom" [ $? -eq 0 ]
check "the progress says it" grep -q "dense tissue lies behind the lower" "$tmp/dep.log"
check "the page says it" grep -q "Look at the back of the lower" "$tmp/o_dep/report.html"
# The DICOM results carry it: a segment of the SEG, a measurement group
# of the SR (dicom3tools finds no error in either).
for f in seg sr; do
    dciodvfy "$tmp/o_dep/dicom/$f.dcm" >"$tmp/v.txt" 2>&1
    check "dciodvfy $f.dcm: no errors" eval "! grep -q '^Error' '$tmp/v.txt'"
done
dcmdump "$tmp/o_dep/dicom/seg.dcm" >"$tmp/seg.txt" 2>&1
check "the SEG has the segment" grep -q '(0062,0005) LO \[Dense tissue behind the lungs\]' "$tmp/seg.txt"
dcmdump "$tmp/o_dep/dicom/sr.dcm" >"$tmp/sr.txt" 2>&1
check "the SR names it" grep -q "Dense tissue behind the lungs" "$tmp/sr.txt"
"$COVCT_BIN" phantom -o "$tmp/std" >/dev/null &&
    "$COVCT_BIN" analyze "$tmp/std/dicom" -o "$tmp/o_std" -q
check "analyze the standard phantom" [ $? -eq 0 ]
check "the standard phantom's page does not" bash -c "! grep -q 'Look at the back' '$tmp/o_std/report.html'"
"$COVCT_BIN" volume "$(data covid-ct-md/normal001)" -o "$tmp/n.nii.gz" -q &&
    "$COVCT_BIN" analyze "$tmp/n.nii.gz" -o "$tmp/o_n" -q
check "analyze normal001" [ $? -eq 0 ]
"$PY" - "$tmp" <<'PYEOF'
import sys
import nibabel as nib
import numpy as np
t = sys.argv[1]
img = nib.load(t + "/n.nii.gz")
ct = np.asarray(img.dataobj).astype(np.int16)
A = img.affine
lungs = np.asarray(nib.load(t + "/o_n/lungs.nii.gz").dataobj) > 0
lobes = np.asarray(nib.load(t + "/o_n/lobes.nii.gz").dataobj)
ylps = -(A[1, 1] * np.arange(ct.shape[1]) + A[1, 3])  # RAS affine -> LPS y
ys = ylps[np.nonzero(lungs.any(axis=(0, 2)))[0]]
cut = ys.max() - 0.3 * (ys.max() - ys.min())
m = lungs & ((lobes == 2) | (lobes == 5)) & (ylps[None, :, None] >= cut)
rng = np.random.default_rng(0)
fat = ct.copy()
ct[m] = np.round(30 + rng.normal(0, 15, int(m.sum()))).astype(np.int16)
nib.save(nib.Nifti1Image(ct, A, header=img.header), t + "/ndep.nii.gz")
fat[m] = np.round(-100 + rng.normal(0, 15, int(m.sum()))).astype(np.int16)
nib.save(nib.Nifti1Image(fat, A, header=img.header), t + "/nfat.nii.gz")
nib.save(nib.Nifti1Image(m.astype(np.uint8), A), t + "/ndep_truth.nii.gz")
PYEOF
check "normal001 with dependent consolidation written" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/ndep.nii.gz" -o "$tmp/o_ndep" -q
check "analyze it" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/nfat.nii.gz" -o "$tmp/o_nfat" -q
check "analyze the same region as fat" [ $? -eq 0 ]
check "found, not negative" "$PY" - "$tmp" <<'PYEOF'
import json, sys
import nibabel as nib
import numpy as np
t = sys.argv[1]
ok = True
def missed(truth, lungs_file):
    T = np.asarray(nib.load(truth).dataobj) > 0
    L = np.asarray(nib.load(lungs_file).dataobj) > 0
    z = nib.load(lungs_file).header.get_zooms()
    return float((T & ~L).sum()) * z[0] * z[1] * z[2] / 1000
def report(d):
    return json.load(open("%s/%s/report.json" % (t, d)))
# 1. the phantom: its consolidation (label 2) the mask leaves out
T = np.asarray(nib.load(t + "/dep/truth_lesions.nii.gz").dataobj) == 2
nib.save(nib.Nifti1Image(T.astype(np.uint8),
                         nib.load(t + "/dep/truth_lesions.nii.gz").affine),
         t + "/dep_cons.nii.gz")
cases = [("phantom --dependent 0.3", "o_dep", t + "/dep_cons.nii.gz", 0.6, 1.2),
         ("normal001 + dependent consolidation", "o_ndep",
          t + "/ndep_truth.nii.gz", 0.3, 1.05)]
# The mean density: normal001's synthetic consolidation is +30 HU; the
# phantom's, the volume-weighted design HU of its two dependent lesions
# (its blurred edges and chest wall pull it a little).
tj = json.load(open(t + "/dep/truth.json"))
dep = [l for l in tj["lesions"] if l["lobe"] in ("RLL", "LLL")]
design = sum(l["design_hu"] * l["volume_ml"] for l in dep) / sum(
    l["volume_ml"] for l in dep)
hu_want = {"o_dep": (design, 8.0), "o_ndep": (30.0, 5.0)}
for name, d, truth, lo, hi in cases:
    r = report(d)
    out = missed(truth, "%s/%s/lungs.nii.gz" % (t, d))
    got = r["lungs"]["dense_behind_ml"]
    hu = r["lungs"]["dense_behind_hu"]
    print("%-36s left out of the lungs %6.0f ml, found %6.0f ml (%.0f %%), "
          "mean %+.1f HU (expected %+.1f), %s, score %d"
          % (name, out, got, 100 * got / out, hu, hu_want[d][0],
             r["category"], r["ct_severity_score"]))
    ok &= out > 300 and lo * out <= got <= hi * out
    # Per slice: the areas are those of the mask written beside the
    # report, read back by nibabel (slice index k = the NIfTI's third).
    img = nib.load("%s/%s/%s" % (t, d, r["files"]["dense_behind_mask"]))
    mask = np.asarray(img.dataobj) == 1
    zx, zy = img.header.get_zooms()[:2]
    worst = max(abs(x["dense_behind_mm2"] -
                    float(mask[:, :, x["index"]].sum()) * zx * zy)
                for x in r["slices"])
    print("%-36s slices' dense_behind_mm2 against the mask: worst %.2f mm2"
          % ("", worst))
    ok &= worst <= 0.1
    ok &= abs(hu - hu_want[d][0]) <= hu_want[d][1]
    ok &= r["category"] != "negative"
for name, d in (("standard phantom", "o_std"), ("normal001", "o_n"),
                ("normal001, the region as fat", "o_nfat")):
    r = report(d)
    print("%-36s found %.1f ml, %s" % (name, r["lungs"]["dense_behind_ml"],
                                       r["category"]))
    ok &= r["lungs"]["dense_behind_ml"] < 50
    ok &= (r["lungs"]["dense_behind_hu"] is None) == (
        r["lungs"]["dense_behind_ml"] == 0)
ok &= report("o_n")["category"] == "negative"
# The key images outline it in magenta (255, 0, 255) when the report warns
# of it: more than the legend's swatch on one image; nothing on normal001.
import glob
from PIL import Image
def magenta(d):
    most = 0
    for f in glob.glob("%s/%s/key_axial_*.png" % (t, d)):
        a = np.asarray(Image.open(f).convert("RGB")).astype(int)
        most = max(most, int(((a[:, :, 0] > 240) & (a[:, :, 1] < 20) &
                              (a[:, :, 2] > 240)).sum()))
    return most
for d, want in (("o_ndep", True), ("o_dep", True), ("o_n", False)):
    px = magenta(d)
    print("%-8s most magenta pixels on a key image: %d" % (d, px))
    ok &= (px > 400) == want and (want or px == 0)
    # Its mask: as many ml as reported, on the report's grid; none without.
    f = report(d)["files"]["dense_behind_mask"]
    if want and f:
        img = nib.load("%s/%s/%s" % (t, d, f))
        z = img.header.get_zooms()
        ml = float((np.asarray(img.dataobj) == 1).sum()) * z[0] * z[1] * z[2] / 1000
        print("%-8s %s: %.1f ml" % (d, f, ml))
        ok &= abs(ml - report(d)["lungs"]["dense_behind_ml"]) <= 0.1
    else:
        ok &= not want and f is None
sys.exit(0 if ok else 1)
PYEOF
finish
