#!/bin/bash
# End to end on the synthetic phantom: covct phantom, covct analyze, and
# the result against the phantom's exact truth (tests/phantom_e2e.py):
# the density lesion method with every check, the lesion network (the
# default) with the checks that apply to it (phantom_e2e.py --network).
. "$(dirname "$0")/lib.sh"
need "$PY"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COVCT_BIN" phantom -o "$tmp/ph" >/dev/null
check "covct phantom" [ $? -eq 0 ]
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/r" -q --lesions density
check "covct analyze --lesions density on the phantom" [ $? -eq 0 ]
check "report.html written" [ -s "$tmp/r/report.html" ]
check "density method: phantom results against the truth" \
    "$PY" "$(dirname "$0")/phantom_e2e.py" "$tmp/ph" "$tmp/r"
check "report.json names the density method" \
    grep -q '"name":[[:space:]]*"density"' "$tmp/r/report.json"
"$COVCT_BIN" analyze "$tmp/ph/dicom" -o "$tmp/n" -q
check "covct analyze (network, the default) on the phantom" [ $? -eq 0 ]
check "network: phantom results against the truth" \
    "$PY" "$(dirname "$0")/phantom_e2e.py" "$tmp/ph" "$tmp/n" --network
check "report.json: the density check ran" grep -q '"density_check":[[:space:]]*true' "$tmp/n/report.json"
check "report.json names the network" \
    grep -q '"name":[[:space:]]*"network"' "$tmp/n/report.json"
# A series that is not axial (the phantom turned into sagittal slices): the
# network does not run, the lung stage says why, the report is written.
"$COVCT_BIN" volume "$tmp/ph/dicom" -o "$tmp/v.nii.gz" -q
"$PY" - "$tmp/v.nii.gz" "$tmp/sag.nii.gz" <<'PYEOF'
import sys
import nibabel as nib
import numpy as np
im = nib.load(sys.argv[1])
d = np.asanyarray(im.dataobj)
nib.save(nib.Nifti1Image(np.transpose(d, (2, 1, 0)).astype(np.int16),
                         im.affine[:, [2, 1, 0, 3]]), sys.argv[2])
PYEOF
"$COVCT_BIN" analyze "$tmp/sag.nii.gz" -o "$tmp/s" -q >"$tmp/s.log" 2>&1
check "a sagittal series: exit 1" [ $? -eq 1 ]
check "a sagittal series: says it is not axial" grep -q "not an axial series" "$tmp/s.log"
check "a sagittal series: report written" [ -s "$tmp/s/report.html" ]
finish
