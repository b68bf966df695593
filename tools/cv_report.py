"""Cross-validation table of the lesion network's fold models.

Usage: /usr/bin/python3 tools/cv_report.py DATA_DIR WORK_DIR FOLD_MODEL...
           [--json OUT.json] [--flip]

DATA_DIR is COVID-SemiSeg's MultiClassInfection-Train (Imgs/, GT/); each
FOLD_MODEL is `covct train --fold K` output, whose model card lists its
validation slices.  For each fold model, in order (fold 1 first):
  1. `covct segment` on its validation slices (with --flip: the flip
     test-time augmentation) into WORK_DIR/foldK/maps, the infection maps
     linked into WORK_DIR/foldK/pred and the masks into WORK_DIR/foldK/gt;
  2. `covct eval --json` on those: Dice at 128 with its bootstrap
     interval, sensitivity, specificity, precision, Inf-Net mean and max
     Dice.
Every out-of-fold map is also linked into WORK_DIR/oof (the input of
tools/cv_cut.py).  Printed: one line per fold, then mean +- sample
standard deviation over the folds; with --json, the same as the
`cross_validation.folds` entries of the model card.
"""
import json
import os
import statistics
import subprocess
import sys

COVCT = os.environ.get("COVCT_BIN", "build/covct")


def card_of(model):
    text = subprocess.run([COVCT, "model", model], capture_output=True,
                          text=True, check=True).stdout
    return json.loads(text[text.index("model card: ") + 12:])


def link(src, dst):
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.abspath(src), dst)


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    out_json = argv[argv.index("--json") + 1] if "--json" in argv else None
    if out_json:
        args.remove(out_json)
    flip = "--flip" in argv
    if len(args) < 3:
        sys.exit(__doc__)
    data, work, models = args[0], args[1], args[2:]
    oof = os.path.join(work, "oof")
    os.makedirs(oof, exist_ok=True)
    folds = []
    for k, model in enumerate(models, 1):
        names = card_of(model)["training"]["validation_slices"]
        raw = os.path.join(work, "fold%d" % k, "maps")
        pred = os.path.join(work, "fold%d" % k, "pred")
        gt = os.path.join(work, "fold%d" % k, "gt")
        for d in (raw, pred, gt):
            os.makedirs(d, exist_ok=True)
        stems = [os.path.splitext(n)[0] for n in names]
        subprocess.run([COVCT, "segment", "-q", "--model", model] +
                       (["--flip"] if flip else []) +
                       [os.path.join(data, "Imgs", n) for n in names] +
                       ["-o", raw], check=True)
        for s in stems:  # the infection maps only (not _ggo, _consolidation)
            link(os.path.join(data, "GT", s + ".png"), os.path.join(gt, s + ".png"))
            link(os.path.join(raw, s + ".png"), os.path.join(pred, s + ".png"))
            link(os.path.join(raw, s + ".png"), os.path.join(oof, s + ".png"))
        js = os.path.join(work, "fold%d" % k, "eval.json")
        subprocess.run([COVCT, "eval", pred, gt, "--json", js], check=True,
                       capture_output=True)
        with open(js) as f:
            ev = json.load(f)
        folds.append({"fold": k, "model": os.path.basename(model), "ev": ev})
    rows = []
    for f in folds:
        ev = f["ev"]
        m = ev["averages"]
        row = {"fold": f["fold"], "images": ev["counts"],
               "dice": round(m["dice"], 4),
               "dice_ci95": [round(x, 4) for x in ev["ci95"]["dice"]],
               "sensitivity": round(m["sensitivity"], 4),
               "specificity": round(m["specificity"], 4),
               "precision": round(m["precision"], 4),
               "inf_net_mean_dice": round(m["mean_dice"], 4),
               "inf_net_max_dice": round(m["max_dice"], 4)}
        rows.append(row)
        print("fold %d: Dice %.4f [%.4f, %.4f]  sens %.3f  spec %.3f  prec %.3f"
              "  Inf-Net mean %.4f max %.4f" % (
                  row["fold"], row["dice"], row["dice_ci95"][0], row["dice_ci95"][1],
                  row["sensitivity"], row["specificity"], row["precision"],
                  row["inf_net_mean_dice"], row["inf_net_max_dice"]))
    d = [r["dice"] for r in rows]
    mx = [r["inf_net_max_dice"] for r in rows]
    sd = statistics.stdev if len(rows) > 1 else (lambda v: 0.0)
    summary = {"folds": rows,
               "dice_mean": round(statistics.mean(d), 4), "dice_sd": round(sd(d), 4),
               "inf_net_max_dice_mean": round(statistics.mean(mx), 4),
               "inf_net_max_dice_sd": round(sd(mx), 4),
               "test_time_augmentation": "flip" if flip else "none"}
    print("mean over %d folds: Dice %.4f +- %.4f, Inf-Net max Dice %.4f +- %.4f%s"
          % (len(rows), summary["dice_mean"], summary["dice_sd"],
             summary["inf_net_max_dice_mean"], summary["inf_net_max_dice_sd"],
             " (flip TTA)" if flip else ""))
    if out_json:
        with open(out_json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
