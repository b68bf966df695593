"""Compare covct's NIfTI of a DICOM series with dcmtk's decoding.

Usage: p001_check.py SERIES_DIR VOLUME.nii.gz WORKDIR

Reference side: dcmtk's dcmdjpeg decompresses each file, dcmdump prints
its attributes and writes the pixel data to a raw file (+W); numpy applies
Bits Stored, Pixel Representation and the rescale.  covct side: nibabel
reads the NIfTI.  No covct code runs on the reference side.
"""
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np

series, vol_path, work = sys.argv[1:4]


def attr(dump, tag):
    m = re.search(r"^\(%s\) \w\w \[([^\]]*)\]" % tag, dump, re.M)
    return m.group(1) if m else None


def num(dump, tag):
    m = re.search(r"^\(%s\) \w\w (-?\d+)" % tag, dump, re.M)
    return int(m.group(1))


slices = []
for i, name in enumerate(sorted(os.listdir(series))):
    src = os.path.join(series, name)
    unc = os.path.join(work, "u%d.dcm" % i)
    rawdir = os.path.join(work, "raw%d" % i)
    os.mkdir(rawdir)
    subprocess.run(["dcmdjpeg", src, unc], check=True)
    dump = subprocess.run(["dcmdump", "+W", rawdir, unc], check=True,
                          capture_output=True, text=True).stdout
    rows, cols = num(dump, "0028,0010"), num(dump, "0028,0011")
    bits_stored, rep = num(dump, "0028,0101"), num(dump, "0028,0103")
    raw = np.fromfile(os.path.join(rawdir, os.listdir(rawdir)[0]), "<u2")
    raw = (raw & ((1 << bits_stored) - 1)).astype(np.int64)
    if rep:
        raw = np.where(raw >= 1 << (bits_stored - 1), raw - (1 << bits_stored), raw)
    slope = float(attr(dump, "0028,1053") or 1)
    inter = float(attr(dump, "0028,1052") or 0)
    hu = raw.reshape(rows, cols) * slope + inter
    ipp = np.array([float(v) for v in attr(dump, "0020,0032").split("\\")])
    iop = np.array([float(v) for v in attr(dump, "0020,0037").split("\\")])
    ps = [float(v) for v in attr(dump, "0028,0030").split("\\")]
    slices.append((ipp, iop, ps, hu))
    os.remove(unc)

iop = slices[0][1]
normal = np.cross(iop[:3], iop[3:])
slices.sort(key=lambda s: float(np.dot(s[0], normal)))
ref = np.stack([s[3] for s in slices], axis=-1)        # [row, col, slice]
ref = np.transpose(ref, (1, 0, 2))                      # [col, row, slice]

img = nib.load(vol_path)
data = np.asanyarray(img.dataobj)
fails = []
if data.shape != ref.shape:
    fails.append("shape %s, dcmtk %s" % (data.shape, ref.shape))
else:
    diff = np.count_nonzero(data.astype(np.float64) != ref)
    if diff:
        fails.append("%d voxels differ from dcmtk's HU" % diff)
print("shape", data.shape, "dtype", data.dtype)

# Expected RAS affine from the DICOM geometry (LPS -> RAS flips x, y).
first, last = slices[0][0], slices[-1][0]
ps = slices[0][2]
lps = np.eye(4)
lps[:3, 0] = iop[:3] * ps[1]
lps[:3, 1] = iop[3:] * ps[0]
lps[:3, 2] = (last - first) / (len(slices) - 1)
lps[:3, 3] = first
ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
for name, aff, code in (("sform", img.get_sform(), int(img.header["sform_code"])),
                        ("qform", img.get_qform(), int(img.header["qform_code"]))):
    if code <= 0:
        fails.append("%s_code is %d" % (name, code))
    if not np.allclose(aff, ras, atol=1e-3):
        fails.append("%s\n%s\nexpected\n%s" % (name, aff, ras))
zooms = img.header.get_zooms()
print("zooms", zooms, "expected", ps[1], ps[0], np.linalg.norm(lps[:3, 2]))
if not np.allclose(zooms, (ps[1], ps[0], np.linalg.norm(lps[:3, 2])), atol=1e-4):
    fails.append("pixdim %s" % (zooms,))
for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
