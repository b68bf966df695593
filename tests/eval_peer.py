#!/usr/bin/python3
"""Independent peer for 'covct eval' (tests/eval.sh).

  eval_peer.py make-synth DIR           synthetic maps and masks, and the
                                        folders of the error cases
  eval_peer.py make-real SEMISEG DIR    soft maps made from the real
                                        covid-semiseg-train masks
  eval_peer.py check PRED GT JSON [--class K] [--gt-threshold T]
                [--pred-suffix S] [--bootstrap N] [--seed S]
                                        recompute every number of covct's
                                        JSON and compare (1e-6)

Fixed-threshold metrics come from scikit-learn (f1_score, recall_score,
precision_score, jaccard_score); the Inf-Net protocol from infnet_curves()
below, written from the authors' description (EvaluationTool/main.m and
Fmeasure_calu.m of github.com/DengPingFan/Inf-Net); the bootstrap from
splitmix64 and numpy.percentile.  Nothing here is taken from covct."""
import json
import os
import re
import sys
import warnings

import numpy as np
from PIL import Image, ImageFilter
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

TOL = 1e-6
M64 = (1 << 64) - 1
FIXED = ["dice", "sensitivity", "specificity", "precision", "iou"]
PROTO = ["mean_dice", "max_dice", "mean_sensitivity", "mean_specificity"]


# ---- the peer ------------------------------------------------------------

def infnet_curves(pred, gt):
    """Dice, sensitivity, specificity of one image at the thresholds
    1, 254/255, ..., 0 (rows of the result), as the Inf-Net tool:
    resmap = mapminmax(pred/255, 0, 1) (a constant map is left as is),
    binarised with resmap >= threshold; Fmeasure_calu.m gives 0 for all
    three when nothing infected is found.  Comparisons are exact."""
    p = pred.astype(np.int64)
    lo, hi = int(p.min()), int(p.max())
    g = gt.astype(bool)
    npos = int(g.sum())
    nneg = g.size - npos
    out = np.zeros((256, 3))
    for k in range(256):
        j = 255 - k  # threshold j/255
        if hi > lo:
            b = 255 * (p - lo) >= j * (hi - lo)  # (p-lo)/(hi-lo) >= j/255
        else:
            b = p >= j  # p/255 >= j/255
        tp = int(np.count_nonzero(b & g))
        fp = int(np.count_nonzero(b & ~g))
        if tp > 0:
            spe = (nneg - fp) / nneg if nneg else 1.0
            out[k] = (2 * tp / (npos + tp + fp), tp / npos, spe)
    return out


def fixed_metrics(pred, gt):
    """Fixed threshold 128 with scikit-learn; the zero_division choices are
    covct's documented conventions."""
    y = gt.ravel().astype(bool)
    yp = (pred.ravel() >= 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "dice": f1_score(y, yp, zero_division=1),
            "sensitivity": recall_score(y, yp) if y.any() else None,
            "specificity": recall_score(~y, ~yp, zero_division=1),
            "precision": precision_score(y, yp, zero_division=0),
            "iou": jaccard_score(y, yp, zero_division=1),
            "tp": int(np.sum(y & yp)), "fp": int(np.sum(~y & yp)),
            "fn": int(np.sum(y & ~yp)), "tn": int(np.sum(~y & ~yp)),
        }


def splitmix64_counts(seed, resamples, n):
    """How often each image is drawn in each resample: splitmix64 from the
    seed, image = next % n, n draws per resample."""
    counts = np.zeros((resamples, n))
    s = seed & M64
    for b in range(resamples):
        for _ in range(n):
            s = (s + 0x9E3779B97F4A7C15) & M64
            z = s
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            counts[b, (z ^ (z >> 31)) % n] += 1
    return counts


def natural_key(s):
    return [(0, int(t), t) if t.isdigit() else (1, 0, t)
            for t in re.findall(r"\d+|\D+", s)] + [(2, 0, s)]


def image_files(folder, suffix=""):
    out = {}
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        if suffix:
            if not stem.endswith(suffix) or len(stem) == len(suffix):
                continue
            stem = stem[: -len(suffix)]
        out[stem] = os.path.join(folder, name)
    return out


# ---- comparison ----------------------------------------------------------

class Checker:
    def __init__(self):
        self.bad = 0
        self.n = 0

    def num(self, what, got, want):
        self.n += 1
        if want is None or got is None:
            if want is not None or got is not None:
                self.fail(f"{what}: covct {got}, peer {want}")
        elif not abs(float(got) - float(want)) <= TOL:
            self.fail(f"{what}: covct {got!r}, peer {want!r}")

    def same(self, what, got, want):
        self.n += 1
        if got != want:
            self.fail(f"{what}: covct {got!r}, peer {want!r}")

    def fail(self, msg):
        self.bad += 1
        if self.bad <= 40:
            print("MISMATCH", msg, file=sys.stderr)


def check(argv):
    pred_dir, gt_dir, json_path = argv[:3]
    rest = [a for a in argv[3:] if a not in ("-v", "--verbose")]
    opts = dict(zip(rest[0::2], rest[1::2]))
    cls = int(opts["--class"]) if "--class" in opts else None
    gthr = int(opts.get("--gt-threshold", 0))
    resamples = int(opts.get("--bootstrap", 2000))
    seed = int(opts.get("--seed", 1))
    with open(json_path) as f:
        js = json.load(f)
    c = Checker()
    preds = image_files(pred_dir, opts.get("--pred-suffix", ""))
    gts = image_files(gt_dir)
    stems = sorted(preds, key=natural_key)
    c.same("pairs", sorted(preds), sorted(gts))
    c.same("image order", [e["name"] for e in js["images"]], stems)
    if c.bad:
        return 1

    per, curves = [], []
    for stem, e in zip(stems, js["images"]):
        pred = np.asarray(Image.open(preds[stem]).convert("L"))
        im = Image.open(gts[stem])
        if cls is None:
            gt = np.asarray(im.convert("L")) > gthr
        else:
            assert im.mode in ("P", "L"), im.mode
            gt = np.asarray(im) == cls
        c.same(f"{stem} size", (e["width"], e["height"]), pred.shape[::-1])
        fx = fixed_metrics(pred, gt)
        empty = not gt.any()
        c.same(f"{stem} empty_ground_truth", e["empty_ground_truth"], empty)
        c.same(f"{stem} prediction range", (e["prediction_min"], e["prediction_max"]),
               (int(pred.min()), int(pred.max())))
        for k in ("tp", "fp", "fn", "tn"):
            c.same(f"{stem} {k}", e[k], fx[k])
        for k in FIXED:
            c.num(f"{stem} {k}", e[k], fx[k])
        if empty:
            for k in PROTO:
                c.num(f"{stem} {k}", e[k], None)
            continue
        cu = infnet_curves(pred, gt)
        mine = [cu[:, 0].mean(), cu[:, 0].max(), cu[:, 1].mean(), cu[:, 2].mean()]
        for k, v in zip(PROTO, mine):
            c.num(f"{stem} {k}", e[k], v)
        per.append([fx[k] for k in FIXED] + mine)
        curves.append(cu)

    n = len(per)
    cnt = js["counts"]
    c.same("counts", (cnt["images"], cnt["evaluated"], cnt["empty_ground_truth"]),
           (len(stems), n, len(stems) - n))
    V = np.array(per)  # n x 9, same order as covct's metrics
    C = np.array(curves)  # n x 256 x 3
    col = C.mean(axis=0)  # the averaged curves (MATLAB's column_*)
    want = dict(zip(FIXED, V[:, :5].mean(axis=0)))
    want.update(mean_dice=col[:, 0].mean(), max_dice=col[:, 0].max(),
                mean_sensitivity=col[:, 1].mean(),
                mean_specificity=col[:, 2].mean(),
                max_dice_threshold=(255 - int(np.argmax(col[:, 0]))) / 255)
    for k, v in want.items():
        c.num(f"average {k}", js["averages"][k], v)
    thr = np.array([(255 - k) / 255 for k in range(256)])
    for q, name in enumerate(("dice", "sensitivity", "specificity")):
        for k in range(256):
            c.num(f"curve {name}[{k}]", js["curves"][name][k], col[k, q])
    for k in range(256):
        c.num(f"curve threshold[{k}]", js["curves"]["thresholds"][k], thr[k])

    if resamples == 0:
        c.same("ci95", js["ci95"], None)
    else:
        cnts = splitmix64_counts(seed, resamples, n)
        stats = cnts @ V / n
        stats[:, 6] = (np.einsum("bi,ik->bk", cnts, C[:, :, 0]) / n).max(axis=1)
        lo, hi = np.percentile(stats, [2.5, 97.5], axis=0)
        for m, k in enumerate(FIXED + PROTO):
            c.num(f"ci95 {k} low", js["ci95"][k][0], lo[m])
            c.num(f"ci95 {k} high", js["ci95"][k][1], hi[m])
    print(f"eval_peer: {c.n} numbers compared, {c.bad} mismatches "
          f"({len(stems)} images, {n} evaluated)")
    return 1 if c.bad else 0


# ---- test data -----------------------------------------------------------

def save(path, a, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(a, dtype=np.uint8)).save(path, **kw)


def blobs(rng, h, w, n):
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


def soft(rng, gt, radius, noise):
    im = Image.fromarray((gt * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius))
    a = np.asarray(im, float) + rng.normal(0, noise, gt.shape)
    return np.clip(np.rint(a), 0, 255)


def make_synth(d):
    rng = np.random.default_rng(20200415)
    P, G = os.path.join(d, "pred"), os.path.join(d, "gt")
    cases = {}
    g = blobs(rng, 64, 80, 3)
    cases["1"] = (soft(rng, g, 3, 20), g)                    # soft, full range
    g = blobs(rng, 100, 70, 4)
    s = soft(rng, g, 2, 10)
    cases["2"] = (40 + np.rint(s * 170 / 255), g)            # range 40..210
    g = blobs(rng, 50, 50, 2)
    cases["3"] = (np.full(g.shape, 77), g)                   # constant map
    cases["4"] = (np.zeros(g.shape), g)                      # empty prediction
    cases["5"] = (np.full(g.shape, 255), g)                  # constant 255
    g = np.zeros((40, 60), bool)
    p = np.zeros(g.shape)
    p[5:15, 10:30] = 200
    cases["6"] = (p, g)                                      # empty GT, FP
    cases["7"] = (np.zeros(g.shape), g)                      # empty GT and pred
    g = blobs(rng, 90, 120, 5)
    cases["8"] = ((blobs(rng, 90, 120, 5) | g) * 255, g)     # 0/255 mask
    g = np.ones((20, 30), bool)
    cases["9"] = (rng.integers(0, 256, g.shape), g)          # GT = whole image
    g = blobs(rng, 64, 64, 3)
    cases["10"] = (g | blobs(rng, 64, 64, 2), g)             # 0/1 mask
    g = np.ones((1, 1), bool)
    cases["12"] = (np.full((1, 1), 200), g)                  # one pixel
    g = blobs(rng, 77, 91, 4)
    cases["13"] = (np.rint(soft(rng, g, 4, 30) / 17) * 17, g)  # 16 levels: ties
    g = blobs(rng, 33, 47, 2)
    cases["14"] = (128 + (soft(rng, g, 1, 5) > 128), g)      # values 128/129
    for stem, (p, g) in cases.items():
        save(f"{P}/{stem}.png", p)
        save(f"{G}/{stem}.png", g * 255)
    g = blobs(rng, 72, 96, 3)                                # JPEG mask
    save(f"{P}/11.png", soft(rng, g, 2, 15))
    save(f"{G}/11.jpg", g * 255, quality=75)
    with open(f"{P}/notes.txt", "w") as f:                   # ignored
        f.write("not an image\n")

    # Error cases, one folder each.
    e = os.path.join(d, "err")
    save(f"{e}/size/pred/a.png", np.zeros((10, 12)))
    save(f"{e}/size/gt/a.png", np.zeros((10, 14)))
    save(f"{e}/missing/pred/a.png", np.zeros((4, 4)))
    save(f"{e}/missing/pred/b.png", np.zeros((4, 4)))
    save(f"{e}/missing/gt/a.png", np.zeros((4, 4)))
    save(f"{e}/missing/gt/c.jpg", np.zeros((4, 4)))
    os.makedirs(f"{e}/empty", exist_ok=True)
    with open(f"{e}/empty/readme.txt", "w") as f:
        f.write("no images here\n")
    save(f"{e}/dup/gt/a.png", np.zeros((4, 4)))
    save(f"{e}/dup/gt/a.jpg", np.zeros((4, 4)))
    save(f"{e}/allempty/pred/a.png", np.full((4, 4), 9))
    save(f"{e}/allempty/gt/a.png", np.zeros((4, 4)))
    save(f"{e}/seg/pred/a.png", np.zeros((4, 4)))
    save(f"{e}/seg/pred/a_ggo.png", np.zeros((4, 4)))
    save(f"{e}/seg/gt/a.png", np.full((4, 4), 255))
    save(f"{e}/jpegclass/gt/a.jpg", np.zeros((4, 4)))
    save(f"{e}/jpegclass/pred/a.png", np.zeros((4, 4)))
    return 0


def make_real(semiseg, d):
    """A soft prediction per training mask: the mask moved by a few pixels,
    blurred, with noise; and, for a few, a hard 0/255 version."""
    rng = np.random.default_rng(7)
    gdir = os.path.join(semiseg, "LungInfection-Train", "Doctor-label", "GT")
    for name in sorted(os.listdir(gdir), key=natural_key):
        g = np.asarray(Image.open(os.path.join(gdir, name)).convert("L")) > 0
        dy, dx = rng.integers(-6, 7, 2)
        g2 = np.roll(np.roll(g, dy, 0), dx, 1)
        p = soft(rng, g2, rng.uniform(1, 6), rng.uniform(5, 40))
        stem = os.path.splitext(name)[0]
        if int(stem) % 7 == 0:
            p = (p >= 128) * 255
        save(os.path.join(d, "pred", stem + ".png"), p)
    return 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "make-synth":
        return make_synth(sys.argv[2])
    if len(sys.argv) >= 4 and sys.argv[1] == "make-real":
        return make_real(sys.argv[2], sys.argv[3])
    if len(sys.argv) >= 5 and sys.argv[1] == "check":
        return check(sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
