#!/bin/bash
# Series assembly on real files arranged the ways hospital folders are:
# two series in one folder, missing slices, a duplicate, a file of another
# size under the same Series Instance UID, a stray non-DICOM file, and a
# gantry tilt made with dcmtk's dcmodify.
. "$(dirname "$0")/lib.sh"
need dcmodify "$PY"
p001=$(data covid-ct-md/P001)
cap=$(data covid-ct-md/cap001)
ctsmall=$(data dicom-conformance/pydicom-2.3.1-debian/CT_small.dcm)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out.txt"

# 1. Two series and a text file in one folder: both found, the larger
#    (cap001, 168 slices) is the main volume, the text file is skipped.
mkdir -p "$tmp/two/a" "$tmp/two/b"
cp "$p001"/*.dcm "$tmp/two/a/"
cp "$cap"/*.dcm "$tmp/two/b/"
echo "not dicom" >"$tmp/two/notes.txt"
"$COVCT_BIN" info --no-decode "$tmp/two" >"$out" 2>&1
check "info on two series exits 0" [ $? -eq 0 ]
check "2 series found" grep -q "2 series, 1 file skipped" "$out"
check "cap001 (168 slices) is the main volume" \
    grep -A4 "(main CT volume)" "$out" -q -e "168 images"
check "P001 listed with 148 slices" grep -q "148 images in 148 files" "$out"

# 2. Missing slices: remove 3 consecutive slices from the middle of P001.
#    Instance Numbers 70-72 are consecutive positions (README: label i is
#    InstanceNumber i+1 sorted by SliceLocation).
mkdir -p "$tmp/gap"
for f in "$p001"/*.dcm; do
    n=$(dcmdump +P 0020,0013 "$f" | sed -n 's/.*IS \[\([0-9]*\)\].*/\1/p')
    if [ "$n" -lt 70 ] || [ "$n" -gt 72 ]; then cp "$f" "$tmp/gap/"; fi
done
"$COVCT_BIN" info --no-decode "$tmp/gap" >"$out" 2>&1
check "gap reported" grep -q "gap: 8.00 mm between slices" "$out"
check "3 slices missing" grep -q "about 3 slice(s) missing" "$out"
check "145 slices left" grep -q "145 images in 145 files" "$out"
"$COVCT_BIN" volume "$tmp/gap" -o "$tmp/gap.nii" -q
check "volume with a gap still builds" [ $? -eq 0 ]

# 3. Duplicate: the same image twice under another file name.
mkdir -p "$tmp/dup"
cp "$p001"/*.dcm "$tmp/dup/"
cp "$p001/98C14734-ASSH_1.dcm" "$tmp/dup/zz_copy.dcm"
"$COVCT_BIN" info --no-decode "$tmp/dup" >"$out" 2>&1
check "duplicate reported" grep -q "duplicate image at position" "$out"
check "148 slices from 149 files" grep -q "148 images in 149 files" "$out"

# 4. Mixed sizes under one Series Instance UID: CT_small (128x128) is
#    given P001's series UID with dcmodify.
mkdir -p "$tmp/mixed"
cp "$p001"/*.dcm "$tmp/mixed/"
uid=$(dcmdump +P 0020,000e "$p001/98C14734-ASSH_1.dcm" | sed -n 's/.*UI \[\(.*\)\].*/\1/p')
cp "$ctsmall" "$tmp/mixed/other.dcm"
dcmodify -nb -i "(0020,000e)=$uid" "$tmp/mixed/other.dcm"
"$COVCT_BIN" info --no-decode "$tmp/mixed" >"$out" 2>&1
check "mixed sizes reported" grep -q "mixed image sizes" "$out"
check "main volume stays the 148 slices" grep -A3 "(main CT volume)" "$out" -q -e "148 images"

# 5. Gantry tilt: shift each slice's y position by z * tan(10 degrees).
mkdir -p "$tmp/tilt"
i=0
for f in "$p001"/*.dcm; do
    i=$((i + 1)); [ $i -gt 30 ] && break
    cp "$f" "$tmp/tilt/"
    g="$tmp/tilt/$(basename "$f")"
    ipp=$(dcmdump +P 0020,0032 "$g" | sed -n 's/.*DS \[\(.*\)\].*/\1/p')
    new=$("$PY" -c "import math,sys; x,y,z=map(float,sys.argv[1].split('\\\\')); print('%.6f\\\\%.6f\\\\%.6f' % (x, y + z*math.tan(math.radians(10)), z))" "$ipp")
    dcmodify -nb -m "(0020,0032)=$new" "$g"
done
"$COVCT_BIN" info --no-decode "$tmp/tilt" >"$out" 2>&1
check "tilt reported" grep -q "gantry tilt: slices are stacked 10.00 degrees" "$out"
"$COVCT_BIN" volume "$tmp/tilt" -o "$tmp/tilt.nii.gz" -q
"$PY" - "$tmp/tilt.nii.gz" <<'PYEOF'
import math, sys
import nibabel as nib
a = nib.load(sys.argv[1]).get_sform()
# k column of the RAS affine: y (anterior) component = -(dz * tan 10deg)
k = a[:3, 2]
ok = abs(abs(k[1]) - abs(k[2]) * math.tan(math.radians(10))) < 1e-3
print("k column", k, "sheared as expected" if ok else "NOT sheared")
sys.exit(0 if ok else 1)
PYEOF
check "tilt kept as a shear in the affine" [ $? -eq 0 ]
# 6. Varying spacing: move one slice 0.5 mm (steps become 2.5 and 1.5 mm).
mkdir -p "$tmp/vary"
cp "$p001"/*.dcm "$tmp/vary/"
for f in "$tmp/vary"/*.dcm; do
    n=$(dcmdump +P 0020,0013 "$f" | sed -n 's/.*IS \[\([0-9]*\)\].*/\1/p')
    if [ "$n" -eq 50 ]; then
        ipp=$(dcmdump +P 0020,0032 "$f" | sed -n 's/.*DS \[\(.*\)\].*/\1/p')
        new=$("$PY" -c "import sys; x,y,z=map(float,sys.argv[1].split('\\\\')); print('%g\\\\%g\\\\%g' % (x, y, z+0.5))" "$ipp")
        chmod u+w "$f"; dcmodify -nb -m "(0020,0032)=$new" "$f"
    fi
done
"$COVCT_BIN" info --no-decode "$tmp/vary" >"$out" 2>&1
check "varying spacing reported" grep -q "varying slice spacing: 1.500 to 2.500 mm" "$out"

# 7. One enhanced multi-frame CT file (2 frames): positions come from the
#    per-frame functional groups, which dcmdump lists in frame order.
ect=$(data dicom-conformance/pydicom-data/data_store/data/eCT_Supplemental.dcm)
"$COVCT_BIN" volume "$ect" -o "$tmp/ect.nii" -q
check "enhanced CT to volume" [ $? -eq 0 ]
ipps=$(dcmdump +P 0020,0032 "$ect" | sed -n 's/.*DS \[\(.*\)\].*/\1/p' | tr '\n' ';')
iop=$(dcmdump +P 0020,0037 "$ect" | sed -n '1s/.*DS \[\(.*\)\].*/\1/p')
"$PY" - "$tmp/ect.nii" "$ipps" "$iop" <<'PYEOF'
import sys
import nibabel as nib
import numpy as np
img = nib.load(sys.argv[1])
p = [np.array([float(v) for v in s.split("\\")]) for s in sys.argv[2].strip(";").split(";")]
o = np.array([float(v) for v in sys.argv[3].split("\\")])
normal = np.cross(o[:3], o[3:])
# slices are ordered along the normal of Image Orientation (row x column)
first, second = sorted(p, key=lambda q: float(np.dot(q, normal)))
ras = np.diag([-1.0, -1.0, 1.0])
ok = img.shape == (512, 512, 2)
ok = ok and np.allclose(img.affine[:3, 3], ras @ first, atol=1e-3)
ok = ok and np.allclose(img.affine[:3, 2], ras @ (second - first), atol=1e-3)
print("shape", img.shape, "origin", img.affine[:3, 3], "k", img.affine[:3, 2])
sys.exit(0 if ok else 1)
PYEOF
check "enhanced CT geometry from the functional groups" [ $? -eq 0 ]
finish
