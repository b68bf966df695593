"""covct phantom + covct analyze against the phantom's exact ground truth.

Usage: phantom_e2e.py PHANTOM_DIR REPORT_DIR [--network]

Truth comes from construction (truth_*.nii.gz, truth.json written by the
phantom generator); the analysis never sees it.  Checked:
  - each lung: Dice >= 0.95 with the truth lung, volume within 5 %;
  - ground-glass and consolidation volumes within 10 % of the truth;
  - at least 90 % of the voxels found as each class lie in a truth lesion;
  - report.json: the severity score is the sum of the lobe scores, one
    slice entry per slice.
With --network (the report came from the lesion network, not the density
method) the same class volumes are checked: since session 9 the network's
lesions pass the density check (src/analysis/lesions-check.c: well-aerated
voxels dropped, dense balls made consolidation), which is what brings the
phantom's homogeneous consolidation, which the network alone does not
call, into the result.  Also checked for the network: the largest lesion
(21 ml of ground glass) is >= 80 % detected, and >= 90 % of all voxels
found as lesion lie in (or next to) a truth lesion.  For both methods:
every lesion's detected voxels lie >= 95 % in its truth lobe, every
lesion of >= 1 ml is at least half detected, and every lesion lies
>= 85 % inside the lung mask (lesions against the pleura at the lung's
base and apex too: the issue asks that consolidation against the pleura
be inside the lung mask; before the rolling ball of the lung stage, seed
3's two such consolidations were 52 % and 64 % inside).
"""
import json
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage

T, R = sys.argv[1:3]
network = "--network" in sys.argv[3:]
L = lambda p: np.asanyarray(nib.load(p).dataobj)
tl, tb, tles = (L(T + "/truth_lungs.nii.gz"), L(T + "/truth_lobes.nii.gz"),
                L(T + "/truth_lesions.nii.gz"))
pl, pb, ples = (L(R + "/lungs.nii.gz"), L(R + "/lobes.nii.gz"),
                L(R + "/lesions.nii.gz"))
truth = json.load(open(T + "/truth.json"))
rep = json.load(open(R + "/report.json"))
vml = truth["grid"]["voxel_ml"]
fails, ok = [], 0


def check(cond, msg):
    global ok
    if cond:
        ok += 1
    else:
        fails.append(msg)


def dice(a, b):
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


for lab, name in ((1, "right"), (2, "left")):
    d = dice(tl == lab, pl == lab)
    tv, pv = (tl == lab).sum() * vml, (pl == lab).sum() * vml
    print("%s lung: Dice %.3f, %.0f ml (truth %.0f)" % (name, d, pv, tv))
    check(d >= 0.95, "%s lung Dice %.3f < 0.95" % (name, d))
    check(abs(pv - tv) <= 0.05 * tv, "%s lung %.0f ml vs truth %.0f" % (name, pv, tv))

comp, n = ndimage.label(tles > 0, structure=np.ones((3, 3, 3)))
for i in range(1, n + 1):
    m = comp == i
    lobe = int(np.bincount(tb[m]).argmax())
    det = m & (ples > 0)
    frac = det.sum() / m.sum()
    in_lobe = (pb[det] == lobe).mean() if det.any() else 1.0
    in_lung = (pl[m] > 0).mean()
    print("lesion %d: %.2f ml, truth lobe %d, %.0f %% in the lung mask, detected "
          "%.0f %%, %.0f %% of it in the truth lobe"
          % (i, m.sum() * vml, lobe, 100 * in_lung, 100 * frac, 100 * in_lobe))
    check(in_lung >= 0.85, "lesion %d only %.0f %% inside the lung mask"
          % (i, 100 * in_lung))
    check(in_lobe >= 0.95, "lesion %d assigned to another lobe (%.0f %% in lobe %d)"
          % (i, 100 * in_lobe, lobe))
    check(m.sum() * vml < 1.0 or frac >= 0.5,
          "lesion %d (%.2f ml) detected %.0f %%" % (i, m.sum() * vml, 100 * frac))

tc = truth["totals"]["consolidation_ml"]
pc = rep["lesions"]["consolidation_ml"]
tg = truth["totals"]["ground_glass_ml"]
pg = rep["lesions"]["ggo_ml"]
print("ground glass %.1f ml (truth %.1f)" % (pg, tg))
print("consolidation %.1f ml (truth %.1f)" % (pc, tc))
near = ndimage.binary_dilation(tles > 0, structure=np.ones((3, 3, 3)))
check(abs(pg - tg) <= 0.10 * tg, "ground glass %.1f ml vs truth %.1f" % (pg, tg))
check(abs(pc - tc) <= 0.10 * tc, "consolidation %.1f ml vs truth %.1f" % (pc, tc))
if network:
    sizes = ndimage.sum(np.ones_like(comp), comp, range(1, n + 1))
    big = comp == 1 + int(np.argmax(sizes))
    frac = (big & (ples > 0)).sum() / big.sum()
    check(frac >= 0.80, "network: largest lesion only %.0f %% detected" % (100 * frac))
    det = ples > 0
    prec = (det & near).sum() / max(det.sum(), 1)
    print("any lesion: %.1f %% of the detected voxels in a truth lesion" % (100 * prec))
    check(prec >= 0.90, "network: only %.0f %% of the lesion voxels in a truth lesion"
          % (100 * prec))
# What is found must be lesion: at least 90 % of the detected voxels of
# each class lie in a truth lesion (dilated by one voxel for the blur).
for lab, name in (() if network else ((1, "ground glass"), (2, "consolidation"))):
    det = ples == lab
    prec = (det & near).sum() / max(det.sum(), 1)
    print("%s: %.0f %% of the detected voxels in a truth lesion" % (name, 100 * prec))
    check(prec >= 0.90, "%s: only %.0f %% of the detected voxels in a truth lesion"
          % (name, 100 * prec))
check(rep["ct_severity_score"] == sum(v["score"] for v in rep["lobes"].values()),
      "severity score is not the sum of the lobe scores")
check(len(rep["slices"]) == tl.shape[2], "slices in report.json != slices")
for f in fails:
    print("FAIL:", f)
print("%d passed, %d failed" % (ok, len(fails)))
sys.exit(1 if fails else 0)
