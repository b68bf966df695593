#!/bin/bash
# Dense tissue behind the lungs (docs/internals/lungs.md): consolidation of
# the dependent lower lobes or pleural effusion, too thick for the lung
# mask.  Where it holds air bronchograms it is airless lung and joins the
# lungs; otherwise it is measured and reported apart, and such a scan is
# never called negative.
#  1. The phantom with the back 30 % of its lungs' depth consolidated in
#     both lower lobes, its small airways open (covct phantom --dependent
#     0.3): the consolidation joins the lungs (at least 65 % of it inside
#     the lung mask; under 20 % in case 2, without the bronchograms),
#     the lower lobes' consolidation is within 25 % of the truth and their
#     scores those of the truth masks, and nothing is left apart.
#  2. The same phantom with its bronchograms filled with fluid (+10 HU):
#     effusion-like, nothing joins the lungs; what the lung mask leaves
#     out is found (60 to 120 % of it: the phantom's chest wall between its
#     lung and cavity outlines adds some) and reported apart.
#  3. Real anatomy: normal001 (COVID-CT-MD, a normal scan) with the back
#     30 % of its lower lobes (covct's own lobes) set to +30 HU with 15 HU
#     of noise, airways included, ~1 L: covct called it negative before the
#     dense-tissue step; now at least 30 % of what the mask leaves out is
#     found (the consolidated costophrenic recesses are not: liver and
#     spleen lie beside them) and the category is not negative.  The
#     unchanged scan: 0 ml, negative.
#  2 and 3: the mean density reported is the tissue's, and a key image
#  outlines it.
#  4. The standard phantom: 0 ml.  The same region as (3) at -100 HU
#     (fat, neither consolidation nor effusion): under 50 ml.
. "$(dirname "$0")/lib.sh"
need "$PY" dciodvfy dcmdump
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COVCT_BIN" phantom --dependent 0.3 -o "$tmp/dep" >/dev/null
check "phantom --dependent 0.3" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/dep/dicom" -o "$tmp/o_lung" >"$tmp/lung.log" 2>&1
check "analyze the dependent phantom" [ $? -eq 0 ]
check "the progress says it is lung" grep -q "holds air bronchograms" "$tmp/lung.log"
check "the page says it" grep -q "Airless lung at the back" "$tmp/o_lung/report.html"
check "nothing left apart" bash -c "! grep -q 'Look at the back' '$tmp/o_lung/report.html'"
# The bronchograms filled with fluid: the holes of the truth consolidation
# in each slice (the lumens it encloses) set to +10 HU in a copy of the
# phantom's DICOM series (pydicom; the truth mask's voxel centres mapped to
# each image's rows and columns by the two files' own geometry).
"$PY" - "$tmp" <<'PYEOF'
import glob, os, sys
import nibabel as nib
import numpy as np
import pydicom
from scipy import ndimage as ndi
t = sys.argv[1]
tl = nib.load(t + "/dep/truth_lesions.nii.gz")
cons = np.asarray(tl.dataobj) == 2
holes = np.zeros_like(cons)
for k in range(cons.shape[2]):
    holes[:, :, k] = ndi.binary_fill_holes(cons[:, :, k]) & ~cons[:, :, k]
ijk = np.argwhere(holes)
xyz = nib.affines.apply_affine(tl.affine, ijk) * [-1, -1, 1]  # RAS -> LPS
rng = np.random.default_rng(0)
os.makedirs(t + "/fluid")
done = 0
for f in sorted(glob.glob(t + "/dep/dicom/*")):
    ds = pydicom.dcmread(f)
    ipp = np.array(ds.ImagePositionPatient, float)
    row, col = (np.array(ds.ImageOrientationPatient, float).reshape(2, 3))
    ps = np.array(ds.PixelSpacing, float)  # row spacing, column spacing
    on = np.abs(xyz[:, 2] - ipp[2]) < 0.25 * float(ds.SliceThickness)
    d = xyz[on] - ipp
    c = np.rint(d @ row / ps[1]).astype(int)
    r = np.rint(d @ col / ps[0]).astype(int)
    a = ds.pixel_array.copy()
    hu = np.round(10 + rng.normal(0, 15, len(r)))
    a[r, c] = ((hu - float(ds.RescaleIntercept)) /
               float(ds.RescaleSlope)).astype(a.dtype)
    ds.PixelData = a.tobytes()
    ds.save_as(t + "/fluid/" + os.path.basename(f))
    done += len(r)
print("filled %d of %d voxels of air bronchograms" % (done, len(ijk)))
sys.exit(0 if done == len(ijk) and done > 100 else 1)
PYEOF
check "the phantom with fluid in its bronchograms written" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/fluid" -o "$tmp/o_dep" --dicom >"$tmp/dep.log" 2>&1
check "analyze it" [ $? -eq 0 ]
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
cases = [("phantom, fluid in the bronchograms", "o_dep", t + "/dep_cons.nii.gz", 0.6, 1.2),
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
# 1. The phantom with open bronchograms: its consolidation is lung.
r = report("o_lung")
T = np.asarray(nib.load(t + "/dep_cons.nii.gz").dataobj) > 0
L = np.asarray(nib.load(t + "/o_lung/lungs.nii.gz").dataobj) > 0
inside = float((T & L).sum()) / T.sum()
# The same phantom with fluid in its bronchograms: the lung mask without
# the air-bronchogram step.
L0 = np.asarray(nib.load(t + "/o_dep/lungs.nii.gz").dataobj) > 0
inside0 = float((T & L0).sum()) / T.sum()
lower = sum(l["volume_ml"] for l in dep)
got = sum(r["lobes"][n]["consolidation_ml"] for n in ("RLL", "LLL"))
print("phantom, open bronchograms: %.0f ml taken as lung, %.0f %% of the "
      "consolidation in the lung mask (%.0f %% with fluid in them), lower "
      "lobes' consolidation %.0f ml (truth %.0f), left apart %.1f ml"
      % (r["lungs"]["dense_lung_ml"], 100 * inside, 100 * inside0, got, lower,
         r["lungs"]["dense_behind_ml"]))
ok &= inside >= 0.65 and inside0 < 0.2 and abs(got - lower) <= 0.25 * lower
ok &= r["lungs"]["dense_behind_ml"] < 50 and r["files"]["dense_behind_mask"] is None
# The lower lobes' scores (Pan et al.) are those of the truth masks.
TL = np.asarray(nib.load(t + "/dep/truth_lobes.nii.gz").dataobj)
TS = np.asarray(nib.load(t + "/dep/truth_lesions.nii.gz").dataobj) > 0
def pan(p):
    return 0 if p == 0 else 1 if p < 5 else 2 if p <= 25 else 3 if p <= 50 \
        else 4 if p <= 75 else 5
for name, code in (("LLL", 2), ("RLL", 5)):
    lobe = TL == code
    want = pan(100.0 * (lobe & TS).sum() / lobe.sum())
    print("  %s score %d, truth %d (%.1f %% involved, truth %.1f %%)"
          % (name, r["lobes"][name]["score"], want,
             r["lobes"][name]["involvement_pct"],
             100.0 * (lobe & TS).sum() / lobe.sum()))
    ok &= r["lobes"][name]["score"] == want
ok &= r["lungs"]["dense_lung_ml"] > 0 and report("o_dep")["lungs"]["dense_lung_ml"] == 0
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
for d, want in (("o_ndep", True), ("o_dep", True), ("o_n", False),
                ("o_lung", False)):
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
