"""Out-of-fold estimate of an ensemble of lesion networks.

Usage: /usr/bin/python3 tools/cv_ensemble.py DATA_DIR OUT_DIR OOF_DIR...

DATA_DIR is COVID-SemiSeg's MultiClassInfection-Train (GT/); each OOF_DIR
holds out-of-fold infection maps STEM.png of one cross-validation run
(WORK_DIR/oof of tools/cv_report.py): every slice segmented by a fold
model that did not see it.  Runs with different seeds split the slices
into folds differently, but each map of each run is still out of sample
for its slice, so their per-pixel mean is an honest prediction of the
ensemble of those runs' models for that slice.

Writes the mean maps (rounded, 0..255) into OUT_DIR/ens and scores each
OOF_DIR and the mean with `covct eval` (Dice at 128 and the Inf-Net
protocol's mean and max Dice, over the slices with a non-empty mask).
"""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

COVCT = os.environ.get("COVCT_BIN", "build/covct")


def stems(d):
    return sorted(f[:-4] for f in os.listdir(d)
                  if f.endswith(".png") and "_" not in f)


def score(pred, gt, out_json):
    subprocess.run([COVCT, "eval", pred, gt, "--json", out_json], check=True,
                   capture_output=True)
    with open(out_json) as f:
        return json.load(f)


def main():
    data, out = sys.argv[1], sys.argv[2]
    oofs = sys.argv[3:]
    if len(oofs) < 2:
        sys.exit("cv_ensemble.py: give at least two OOF_DIRs")
    names = stems(oofs[0])
    for d in oofs[1:]:
        if stems(d) != names:
            sys.exit("cv_ensemble.py: %s and %s hold different slices"
                     % (oofs[0], d))
    ens = os.path.join(out, "ens")
    gt = os.path.join(out, "gt")
    os.makedirs(ens, exist_ok=True)
    os.makedirs(gt, exist_ok=True)
    for s in names:
        maps = [np.asarray(Image.open(os.path.join(d, s + ".png")).convert("L"),
                           dtype=np.float64) for d in oofs]
        mean = np.floor(sum(maps) / len(maps) + 0.5).astype(np.uint8)
        Image.fromarray(mean).save(os.path.join(ens, s + ".png"))
        dst = os.path.join(gt, s + ".png")
        if not os.path.lexists(dst):
            os.symlink(os.path.abspath(os.path.join(data, "GT", s + ".png")),
                       dst)
    rows = [(d, score(d, gt, os.path.join(out, "eval%d.json" % i)))
            for i, d in enumerate(oofs)]
    rows.append(("mean of the %d" % len(oofs),
                 score(ens, gt, os.path.join(out, "eval_ens.json"))))
    print("%-40s %8s %8s %8s" % ("maps", "Dice@128", "meanDice", "maxDice"))
    for name, r in rows:
        m = r["averages"]
        print("%-40s %8.4f %8.4f %8.4f" % (name, m["dice"], m["mean_dice"],
                                          m["max_dice"]))


main()
