"""Make a thick-slice CT from a thin-slice one, as a scanner would
reconstruct it: each output slice is the mean of the input over a slab of
T mm (the input resampled to 1/f of its spacing by linear interpolation
along z first, so that any T that is a multiple of that step works).

Usage: slab.py IN.nii.gz T_MM OUT.nii.gz

Used by tests/thick_slices.sh to check covct analyze on 5 mm slices made
from COVID-CT-MD's 2 mm series.  The input is a covct volume NIfTI (HU,
axial, z along the third axis).
"""
import sys

import nibabel as nib
import numpy as np


def main():
    src, t_mm, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    im = nib.load(src)
    d = np.asanyarray(im.dataobj).astype(np.float32)
    dz = abs(float(im.affine[2, 2]))
    f = max(1, int(round(dz)))  # step of about 1 mm
    step = dz / f
    k = int(round(t_mm / step))
    if k < 1 or abs(k * step - t_mm) > 1e-3:
        sys.exit("slab.py: %.3g mm is not a multiple of the %.3g mm step"
                 % (t_mm, step))
    n = d.shape[2]
    fine = np.empty(d.shape[:2] + ((n - 1) * f + 1,), np.float32)
    for j in range(f):
        w = j / f
        fine[:, :, j:(n - 1) * f:f] = (1 - w) * d[:, :, :-1] + w * d[:, :, 1:]
    fine[:, :, -1] = d[:, :, -1]
    m = fine.shape[2] // k * k
    t = fine[:, :, :m].reshape(d.shape[0], d.shape[1], m // k, k).mean(3)
    a = im.affine.copy()
    a[:3, 2] = im.affine[:3, 2] / f * k
    a[:3, 3] += im.affine[:3, 2] / f * (k - 1) / 2.0
    nib.save(nib.Nifti1Image(np.round(t).astype(np.int16), a), out)


if __name__ == "__main__":
    main()
