#!/usr/bin/env python3
"""nibabel side of tests/test_nifti.c: the independent NIfTI-1 peer.

  nifti_check.py probe            exit 0 when nibabel and numpy import
  nifti_check.py check FILE...    load files covct wrote; print what nibabel
                                  sees and dump the voxels to FILE.nib.f64
  nifti_check.py make OUTDIR      write files with nibabel for covct to read;
                                  OUTDIR/manifest.txt says what to expect

Output is line based, "key value...", floats as repr() (exact round trip),
so the C side can parse it with strtod.  Voxel dumps are little-endian
float64 in NIfTI order (x fastest).
"""
import os
import sys

import numpy as np

try:
    import nibabel as nib
    from nibabel.volumeutils import array_to_file
except ImportError:  # the C test decides whether that is a skip or a failure
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        sys.exit(1)
    raise


def nums(values):
    return " ".join(repr(float(x)) for x in np.ravel(values))


def dump(arr, path):
    np.asarray(arr, dtype="<f8").ravel(order="F").tofile(path)


def check(paths):
    for path in paths:
        img = nib.load(path)
        hdr = img.header
        print("file", path)
        print("shape", " ".join(str(int(s)) for s in img.shape))
        print("dtype", np.dtype(hdr.get_data_dtype()).name)
        print("endian", hdr.endianness)
        print("codes", int(hdr["sform_code"]), int(hdr["qform_code"]))
        sform = hdr.get_sform()
        print("sform", nums(sform))
        print("qform", nums(hdr.get_qform()))
        # nibabel's own qform for the file's sform (SVD polar
        # decomposition), to judge covct's nifti_mat44_to_quatern port
        # on sheared (gantry tilt) matrices.
        other = nib.Nifti1Header()
        other.set_qform(sform, code=1, strip_shears=True)
        print("qform_nib", nums(other.get_qform()))
        print("pixdim", nums(hdr["pixdim"]))
        print("units", int(hdr["xyzt_units"]))
        # img.header has the scaling and the offset moved into
        # img.dataobj; read the stored fields.
        with nib.openers.ImageOpener(path) as f:
            raw = nib.Nifti1Header.from_fileobj(f)
        print("vox_offset", repr(float(raw["vox_offset"])))
        print("scl", repr(float(raw["scl_slope"])),
              repr(float(raw["scl_inter"])))
        print("magic", hdr["magic"].item().decode("ascii", "replace"))
        print("descrip", hdr["descrip"].item().decode("ascii", "replace"))
        data = np.asarray(img.dataobj)
        print("sum", repr(float(np.sum(data, dtype=np.float64))))
        dump(data, path + ".nib.f64")
        print("end")


def rotation(axis, deg):
    axis = np.asarray(axis, dtype=float)
    axis /= np.linalg.norm(axis)
    t = np.deg2rad(deg)
    k = np.array([[0, -axis[2], axis[1]],
                  [axis[2], 0, -axis[0]],
                  [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def affine(rot, zooms, offset):
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(zooms)
    a[:3, 3] = offset
    return a


def write_lowlevel(path, data, out_dtype, aff, slope=None, inter=None,
                   sform_code=1, qform_code=1, endianness="<", zooms=None):
    """Header and voxels written separately, so the scaling fields and the
    codes are exactly what the test asks for (nibabel's image API chooses
    its own scaling on save)."""
    hdr = nib.Nifti1Header(endianness=endianness)
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(out_dtype)
    if aff is not None:
        hdr.set_qform(aff, code=qform_code)
        hdr.set_sform(aff, code=sform_code)
    else:
        hdr["qform_code"] = 0
        hdr["sform_code"] = 0
        hdr.set_zooms(zooms)
    if slope is not None:
        hdr.set_slope_inter(slope, inter)
    with open(path, "wb") as f:
        hdr.write_to(f)
        array_to_file(data, f, out_dtype, offset=hdr.get_data_offset())


def make(outdir):
    rng = np.random.default_rng(20200317)
    a_obl = affine(rotation([1, 2, 3], 25), [0.7, 0.8, 2.5],
                   [120.5, -80.25, -300.0])
    a_neg = affine(rotation([0.2, -1, 0.4], 140), [0.9, 1.1, 3.0],
                   [-10.0, 20.0, 30.0])
    a_neg[:3, 0] *= -1  # one axis flipped: negative determinant
    shape = (7, 5, 3)
    i16 = rng.integers(-1024, 3000, size=shape).astype(np.int16)
    i16[0, 0, 0], i16[-1, -1, -1] = -32768, 32767
    manifest = []

    def add(name, extra=""):
        img = nib.load(os.path.join(outdir, name))
        fdata = img.get_fdata()
        integral = bool(np.all(np.isfinite(fdata))
                        and np.all(fdata == np.round(fdata))
                        and fdata.min() >= -32768 and fdata.max() <= 32767)
        dump(fdata, os.path.join(outdir, name + ".f64"))
        sh = list(img.shape[:3])
        manifest.append("file %s %s %s %s" % (
            name, " ".join(str(s) for s in sh),
            "int16" if integral else "float32", img.header.endianness))
        if extra:
            manifest.append(extra)
        else:
            manifest.append("affine " + nums(img.affine))

    # 1, 2: int16 through the image API, oblique, both codes scanner.
    for name in ("i16.nii", "i16.nii.gz"):
        img = nib.Nifti1Image(i16, a_obl)
        img.set_sform(a_obl, code=1)
        img.set_qform(a_obl, code=1)
        img.to_filename(os.path.join(outdir, name))
        add(name)

    # 3: big endian int16 ("newbyteorder": stored swapped on disk).
    hdr = nib.Nifti1Header(endianness=">")
    img = nib.Nifti1Image(i16.astype(np.dtype(np.int16).newbyteorder(">")),
                          a_obl, hdr)
    img.set_sform(a_obl, code=1)
    img.to_filename(os.path.join(outdir, "i16_be.nii"))
    assert nib.load(os.path.join(outdir, "i16_be.nii")).header.endianness \
        == ">"
    add("i16_be.nii")

    # 4: uint8, gzip.
    u8 = rng.integers(0, 256, size=(4, 6, 5)).astype(np.uint8)
    img = nib.Nifti1Image(u8, a_neg)
    img.to_filename(os.path.join(outdir, "u8.nii.gz"))
    add("u8.nii.gz")

    # 5: float64 with scl_slope / scl_inter, non-integral results.
    f64 = rng.normal(0, 100, size=shape)
    write_lowlevel(os.path.join(outdir, "f64_scl.nii"), f64, np.float64,
                   a_neg, slope=2.5, inter=-3.25)
    add("f64_scl.nii")

    # 6: the CT case: int16 stored values, slope 1, intercept -1024.
    raw = rng.integers(0, 4000, size=shape).astype(np.int16)
    write_lowlevel(os.path.join(outdir, "i16_inter.nii"), raw, np.int16,
                   a_obl, slope=1.0, inter=-1024.0)
    add("i16_inter.nii")

    # 7: nibabel's own choice of scaling for half-integer data in int16,
    # big endian, gzip.
    half = rng.integers(-2000, 2000, size=shape) * 0.5
    hdr = nib.Nifti1Header(endianness=">")
    img = nib.Nifti1Image(half, a_obl, hdr)
    img.set_data_dtype(np.int16)
    img.to_filename(os.path.join(outdir, "i16_nibscaled_be.nii.gz"))
    add("i16_nibscaled_be.nii.gz")

    # 8: qform only (sform_code 0), improper rotation: qfac = -1.
    f32 = rng.normal(0, 1, size=shape).astype(np.float32)
    write_lowlevel(os.path.join(outdir, "qonly.nii"), f32, np.float32,
                   a_neg, sform_code=0, qform_code=1)
    assert nib.load(os.path.join(outdir, "qonly.nii")).header["pixdim"][0] \
        == -1
    add("qonly.nii")

    # 9: neither form: nifti1.h method 1, x = pixdim[1] * i, no offset
    # (nibabel's img.affine would centre the grid instead).
    write_lowlevel(os.path.join(outdir, "noform.nii"), i16, np.int16, None,
                   zooms=(0.5, 0.6, 3.0))
    add("noform.nii", "affine " + nums(np.diag([0.5, 0.6, 3.0, 1.0])))

    # 10: 4-D with one volume.
    img = nib.Nifti1Image(i16[..., None], a_obl)
    img.to_filename(os.path.join(outdir, "i16_4d.nii"))
    add("i16_4d.nii")

    # 11-14: the other stored types.
    u16 = rng.integers(0, 65535, size=shape).astype(np.uint16)
    nib.Nifti1Image(u16, a_obl).to_filename(os.path.join(outdir, "u16.nii"))
    add("u16.nii")
    i32 = rng.integers(-3000, 3000, size=shape).astype(np.int32)
    nib.Nifti1Image(i32, a_obl).to_filename(os.path.join(outdir, "i32.nii"))
    add("i32.nii")
    i8 = rng.integers(-128, 128, size=shape).astype(np.int8)
    nib.Nifti1Image(i8, a_obl).to_filename(os.path.join(outdir, "i8.nii"))
    add("i8.nii")
    nib.Nifti1Image(f32, a_neg).to_filename(os.path.join(outdir,
                                                         "f32.nii.gz"))
    add("f32.nii.gz")

    # 15: a two-file pair, which covct refuses.
    nib.Nifti1Pair(i16, a_obl).to_filename(os.path.join(outdir, "pair.img"))
    manifest.append("error pair.hdr")

    with open(os.path.join(outdir, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "probe":
        return 0
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        check(sys.argv[2:])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
