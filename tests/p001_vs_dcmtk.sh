#!/bin/bash
# covct volume on COVID-CT-MD P001 against dcmtk: every HU value equals
# dcmtk's decode (dcmdjpeg) with the modality rescale, slices ordered by
# position, and the NIfTI geometry (read by nibabel) matches the DICOM
# Image Position / Orientation / Pixel Spacing.
. "$(dirname "$0")/lib.sh"
need dcmdjpeg dcmdump "$PY"
series=$(data covid-ct-md/P001)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check "covct volume P001" "$COVCT_BIN" volume "$series" -o "$tmp/p001.nii.gz" -q
check "P001 HU and geometry equal dcmtk's" "$PY" "$(dirname "$0")/p001_check.py" "$series" "$tmp/p001.nii.gz" "$tmp"
finish
