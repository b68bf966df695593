"""Choose the infection cut of the lesion network by cross-validation.

Usage: /usr/bin/python3 tools/cv_cut.py OOF_DIR GT_DIR FOLD_MODEL...

OOF_DIR holds out-of-fold infection maps STEM.png (each training slice
segmented by the fold model that did not see it: `covct segment --model
foldK.covctnn` on that fold's validation slices); GT_DIR the masks
STEM.png (value > 0 is infection); the fold models are read with `covct
model` for their `validation_slices` (which fold each slice belongs to).

For every level t = 1..254 the mean per-image Dice of (map >= t) is
computed over the slices with a non-empty mask (as the Inf-Net evaluation
and `covct eval` do).  Printed:
  - the curve around its best level, and the level chosen on all folds
    together (what `covct model --infection-cut` is then given);
  - the nested estimate: for each fold, the level chosen on the other
    folds' maps, scored on that fold's maps; the mean over all slices is
    the honest cross-validated Dice of "cut chosen by cross-validation";
  - Dice at 128 for comparison.
Ties go to the level closest to 128.
"""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

COVCT = os.environ.get("COVCT_BIN", "build/covct")


def fold_of(models):
    out = {}
    for f, path in enumerate(models, 1):
        text = subprocess.run([COVCT, "model", path], capture_output=True,
                              text=True, check=True).stdout
        card = json.loads(text[text.index("model card: ") + 12:])
        for name in card["training"]["validation_slices"]:
            out[os.path.splitext(name)[0]] = f
    return out


def dice_curve(maps, gts):
    """Per-image Dice for every level 0..255: array (images, 256)."""
    rows = []
    for m, g in zip(maps, gts):
        # predicted pixels >= t, and true positives >= t, for all t at once
        hist_all = np.bincount(m.ravel(), minlength=256)
        hist_tp = np.bincount(m[g].ravel(), minlength=256)
        pp = hist_all[::-1].cumsum()[::-1]
        tp = hist_tp[::-1].cumsum()[::-1]
        rows.append(2.0 * tp / (pp + g.sum()))
    return np.array(rows)


def best_level(curve):
    mean = curve.mean(axis=0)
    levels = np.arange(1, 255)
    score = mean[1:255]
    top = score.max()
    cand = levels[score >= top - 1e-12]
    return int(cand[np.argmin(np.abs(cand - 128))]), top


def main():
    oof, gt_dir, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    folds = fold_of(models)
    stems, maps, gts, fl = [], [], [], []
    for stem in sorted(folds, key=lambda s: int(s) if s.isdigit() else s):
        g = np.asarray(Image.open(os.path.join(gt_dir, stem + ".png"))) > 0
        if g.ndim == 3:
            g = g.any(axis=2)
        if not g.any():
            continue  # empty masks are left out, as in the evaluation
        m = np.asarray(Image.open(os.path.join(oof, stem + ".png")).convert("L"))
        stems.append(stem)
        maps.append(m)
        gts.append(g)
        fl.append(folds[stem])
    fl = np.array(fl)
    curve = dice_curve(maps, gts)
    level, top = best_level(curve)
    mean = curve.mean(axis=0)
    print("%d slices with infection, %d folds" % (len(stems), len(models)))
    print("mean Dice at 128: %.4f" % mean[128])
    for t in range(max(1, level - 20), min(255, level + 21), 4):
        print("  level %3d: %.4f%s" % (t, mean[t], "  <- best" if t == level else ""))
    print("level chosen on all folds: %d (mean Dice %.4f)" % (level, top))
    nested = np.zeros(len(stems))
    for f in sorted(set(fl)):
        inner, _ = best_level(curve[fl != f])
        nested[fl == f] = curve[fl == f, inner]
        print("  fold %d: level %3d chosen on the other folds, Dice %.4f "
              "(at 128: %.4f)" % (f, inner, curve[fl == f, inner].mean(),
                                  curve[fl == f, 128].mean()))
    per_fold = [nested[fl == f].mean() for f in sorted(set(fl))]
    print("nested cross-validated Dice: %.4f (mean over slices); per fold "
          "mean %.4f +- %.4f (sd)" % (nested.mean(), np.mean(per_fold),
                                      np.std(per_fold, ddof=1)))


if __name__ == "__main__":
    main()
