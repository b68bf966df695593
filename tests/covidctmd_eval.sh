#!/bin/bash
# The analysis issue's acceptance on COVID-CT-MD (P001, cap001, normal001):
# severity and category per case, lung volumes, and ROC AUC of per-slice
# and per-lobe lesion areas against the dataset's slice and lobe labels.
. "$(dirname "$0")/lib.sh"
need "$PY"
data_root=$(dirname "$(data covid-ct-md/slice-labels.csv)")
data_root=$(dirname "$data_root")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" "$(dirname "$0")/covidctmd_eval.py" "$COVCT_BIN" "$data_root" "$tmp"
