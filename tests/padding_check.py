"""covct's HU values and outside-the-body mask against dcmtk, per file.

Usage: padding_check.py COVCT_BIN WORKDIR FILE...

For each single-slice file: covct writes the volume and its outside mask;
the reference is dcmtk's raw pixel data (dcmdump +W) with Bits Stored,
Pixel Representation, the rescale, Pixel Padding Value (and Range Limit)
as dcmdump prints them, and the rule of docs/decisions.md (padding, or
below -1500 HU).  Values and masks must agree voxel for voxel.
"""
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np

covct, work = sys.argv[1:3]
fails = 0
total_outside = 0
for n, path in enumerate(sys.argv[3:]):
    d = os.path.join(work, "f%d" % n)
    os.mkdir(d)
    dump = subprocess.run(["dcmdump", "+W", d, path], check=True,
                          capture_output=True, text=True).stdout

    def val(tag):
        m = re.search(r"^\(%s\) (\w\w) (?:\[([^\]]*)\]|(-?\d+))" % tag, dump, re.M)
        if not m:
            return None
        return m.group(2) if m.group(2) is not None else m.group(3)

    rows, cols = int(val("0028,0010")), int(val("0028,0011"))
    bs, rep = int(val("0028,0101")), int(val("0028,0103"))
    raws = [f for f in os.listdir(d) if f.endswith(".raw")]
    raw = np.fromfile(os.path.join(d, raws[0]), "<u2")[: rows * cols]
    raw = (raw & ((1 << bs) - 1)).astype(np.int64)
    if rep:
        raw = np.where(raw >= 1 << (bs - 1), raw - (1 << bs), raw)
    slope = float(val("0028,1053") or 1)
    inter = float(val("0028,1052") or 0)
    hu = raw * slope + inter
    outside = hu < -1500
    pad = val("0028,0120")
    if pad is not None:
        lo = int(pad)
        hi = int(val("0028,0121")) if val("0028,0121") is not None else lo
        if rep and lo > 32767:
            lo -= 65536
        if rep and hi > 32767:
            hi -= 65536
        lo, hi = min(lo, hi), max(lo, hi)
        outside |= (raw >= lo) & (raw <= hi)
    hu = hu.reshape(rows, cols).T
    outside = outside.reshape(rows, cols).T
    vol, mask = os.path.join(d, "v.nii"), os.path.join(d, "m.nii")
    subprocess.run([covct, "volume", path, "-o", vol, "--outside-mask", mask,
                    "-q"], check=True)
    v = np.asanyarray(nib.load(vol).dataobj)[:, :, 0]
    m = np.asanyarray(nib.load(mask).dataobj)[:, :, 0]
    bad_hu = np.count_nonzero(v != hu)
    bad_mask = np.count_nonzero((m != 0) != outside)
    total_outside += int(outside.sum())
    status = "ok" if bad_hu == 0 and bad_mask == 0 else "FAIL"
    print("%s %s: padding %s, %d outside, %d HU and %d mask voxels differ"
          % (status, os.path.basename(path), pad, outside.sum(), bad_hu, bad_mask))
    fails += status != "ok"
if total_outside == 0:
    print("FAIL: no file had any outside voxel: the test would prove nothing")
    fails += 1
print("%d passed, %d failed" % (len(sys.argv) - 3 - fails, fails))
sys.exit(1 if fails else 0)
