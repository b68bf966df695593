"""Score covct analyze on COVID-CT-MD against the dataset's own labels.

Usage: covidctmd_eval.py COVCT_BIN DATA_DIR WORK_DIR [--json OUT] [-- ANALYZE_OPTIONS]

Options after "--" go to every `covct analyze` (e.g. -- --lesions density
to score the density method instead of the network).

Runs `covct analyze` on P001 (COVID-19), cap001 (community-acquired
pneumonia) and normal001, then checks the issue's acceptance criteria:
  - normal001: CT severity score 0 or 1 and category "negative";
  - P001 and cap001: score >= 2;
  - every case: left lung smaller than right, both in an adult range;
  - per-slice lesion_mm2 separates slices labelled infected from the
    others with ROC AUC >= 0.90 over the three cases (labels: slice-labels
    .csv, column slice_label_updated1, joined by InstanceNumber);
  - per-lobe lobe_lesion_mm2 against the lobe labels: AUC reported for each
    lobe (LLL, LUL, RLL, RML, RUL), and required >= 0.90 where a lobe has
    positive slices.
Also printed, as information: the AUC per lung (the lesion area of a
lung's lobes against "any of its lobes labelled"), which separates finding
the lesion from naming its lobe (docs/evaluation.md).
The AUC is the Mann-Whitney statistic (ties count one half).
"""
import csv
import json
import os
import subprocess
import sys
import time

covct, data, work = sys.argv[1:4]
extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
own = sys.argv[:sys.argv.index("--")] if "--" in sys.argv else sys.argv
out_json = own[own.index("--json") + 1] if "--json" in own else None
LOBES = ["LLL", "LUL", "RLL", "RML", "RUL"]
CASES = ["P001", "cap001", "normal001"]


def auc(pos, neg):
    if not pos or not neg:
        return None
    neg_sorted = sorted(neg)
    import bisect
    total = 0.0
    for p in pos:
        lo = bisect.bisect_left(neg_sorted, p)
        hi = bisect.bisect_right(neg_sorted, p)
        total += lo + 0.5 * (hi - lo)
    return total / (len(pos) * len(neg))


labels = {}
with open(os.path.join(data, "covid-ct-md", "slice-labels.csv")) as f:
    for row in csv.DictReader(f):
        labels[(row["case"], int(row["instance_number"]))] = row

reports = {}
fails = []
for case in CASES:
    out = os.path.join(work, case)
    t = time.time()
    r = subprocess.run([covct, "analyze", os.path.join(data, "covid-ct-md", case),
                        "-o", out, "-q"] + extra, capture_output=True, text=True)
    dt = time.time() - t
    if r.returncode != 0:
        fails.append("%s: covct analyze exit %d: %s" % (case, r.returncode, r.stderr[-500:]))
        continue
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    reports[case] = rep
    lungs = rep["lungs"]
    print("%-9s score %2d  %-13s right %5.0f ml left %5.0f ml  GGO %6.1f ml  cons %6.1f ml  (%.1f s)"
          % (case, rep["ct_severity_score"], rep["category"], lungs["right_ml"],
             lungs["left_ml"], rep["lesions"]["ggo_ml"], rep["lesions"]["consolidation_ml"], dt))
    if not lungs["left_ml"] < lungs["right_ml"]:
        fails.append("%s: left lung %.0f ml not smaller than right %.0f ml"
                     % (case, lungs["left_ml"], lungs["right_ml"]))
    for side in ("left_ml", "right_ml"):
        if not 800 <= lungs[side] <= 5000:
            fails.append("%s: %s %.0f outside the adult range 800-5000 ml" % (case, side, lungs[side]))

if "normal001" in reports:
    n = reports["normal001"]
    if n["ct_severity_score"] > 1 or n["category"] != "negative":
        fails.append("normal001: score %d, category %s (want <= 1, negative)"
                     % (n["ct_severity_score"], n["category"]))
for case in ("P001", "cap001"):
    if case in reports and reports[case]["ct_severity_score"] < 2:
        fails.append("%s: score %d (want >= 2)" % (case, reports[case]["ct_severity_score"]))

# Per-slice and per-lobe AUCs over the three cases.
pos, neg = [], []
lobe_pos = {l: [] for l in LOBES}
lobe_neg = {l: [] for l in LOBES}
# Per lung (information, not a criterion): which lung holds the lesion,
# whatever lobe the labels or the lobe model name.
SIDES = {"left": ["LLL", "LUL"], "right": ["RLL", "RML", "RUL"]}
side_pos = {k: [] for k in SIDES}
side_neg = {k: [] for k in SIDES}
joined = 0
for case, rep in reports.items():
    for s in rep["slices"]:
        inst = s.get("instance_number")
        lab = labels.get((case, inst)) if inst is not None else None
        if case == "normal001":
            infected, lobe_lab = False, {l: False for l in LOBES}
        elif lab is None:
            continue
        else:
            infected = lab["slice_label_updated1"] == "1"
            lobe_lab = {l: lab[l] == "1" for l in LOBES}
        joined += 1
        (pos if infected else neg).append(s["lesion_mm2"])
        for l in LOBES:
            (lobe_pos if lobe_lab[l] else lobe_neg)[l].append(s["lobe_lesion_mm2"][l])
        for side, ls in SIDES.items():
            (side_pos if any(lobe_lab[l] for l in ls) else side_neg)[side].append(
                sum(s["lobe_lesion_mm2"][l] for l in ls))
a = auc(pos, neg)
for case in ("P001", "cap001"):
    cp = [s["lesion_mm2"] for s in reports.get(case, {}).get("slices", [])
          if labels.get((case, s.get("instance_number")), {}).get("slice_label_updated1") == "1"]
    cn = [s["lesion_mm2"] for s in reports.get(case, {}).get("slices", [])
          if labels.get((case, s.get("instance_number")), {}).get("slice_label_updated1") == "0"]
    ca = auc(cp, cn)
    print("within %s: AUC %s (%d infected, %d not)" % (case, "n/a" if ca is None else "%.3f" % ca, len(cp), len(cn)))
print("slices joined to labels: %d (%d infected)" % (joined, len(pos)))
print("per-slice AUC: %s" % ("n/a" if a is None else "%.3f" % a))
if a is None or a < 0.90:
    fails.append("per-slice AUC %s < 0.90" % a)
lobe_auc = {}
for l in LOBES:
    la = auc(lobe_pos[l], lobe_neg[l])
    lobe_auc[l] = la
    print("  %s AUC: %s (%d positive slices)" % (l, "n/a" if la is None else "%.3f" % la, len(lobe_pos[l])))
    if la is not None and la < 0.90:
        fails.append("%s per-lobe AUC %.3f < 0.90" % (l, la))
for side in SIDES:
    sa = auc(side_pos[side], side_neg[side])
    print("  %s lung AUC (any of its lobes): %s (%d positive slices; information)"
          % (side, "n/a" if sa is None else "%.3f" % sa, len(side_pos[side])))
if out_json:
    with open(out_json, "w") as f:
        json.dump({"slice_auc": a, "lobe_auc": lobe_auc,
                   "cases": {c: {k: reports[c][k] for k in ("ct_severity_score", "category", "lungs", "lesions")}
                             for c in reports}}, f, indent=1)
for f in fails:
    print("FAIL:", f)
print("%d passed, %d failed" % (1 if not fails else 0, len(fails)))
sys.exit(1 if fails else 0)
