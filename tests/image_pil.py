"""Pillow's pixels for tests/image_pil.sh (the peer of src/image/image.c).

usage: image_pil.py SEMISEG_DIR TMP_DIR OUT

Writes OUT: for each image a line "GROUP MODE WIDTH HEIGHT PATH" and then
WIDTH*HEIGHT bytes, the pixels Pillow decodes; test_image --expect OUT
decodes PATH with covct and compares.  MODE is GRAY (Pillow's
convert("L"); for JPEG, draft("L"), i.e. libjpeg's own gray output) or
INDEX (palette indices of mode "P", gray values of mode "L"/"1").

Images: the covid-semiseg-train slices and masks, and synthetic PNG/JPEG
files written into TMP_DIR covering what the training set lacks (RGB,
RGBA, LA, palettes short of 256 entries, 1/2/4/16-bit, Adam7 interlace,
colour and progressive JPEG).  The PNGs Pillow cannot write are written
here with zlib; Pillow still decodes them.

One documented difference: for 16-bit grayscale Pillow's convert("L")
clips to 255, covct keeps the high byte (as Pillow does for 16-bit RGB,
RGBA and LA).  For that group the expected value is Pillow's decoded
16-bit value >> 8.
"""
import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image

warnings.simplefilter("ignore")  # Pillow's note on palette transparency


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def pack_rows(a, depth, channels):
    """Rows of a (H x W x C uint16 array) as PNG scanlines (no filter)."""
    h, w = a.shape[:2]
    out = []
    for y in range(h):
        row = a[y].reshape(w * channels)
        if depth == 16:
            out.append(b"\0" + row.astype(">u2").tobytes())
        elif depth == 8:
            out.append(b"\0" + row.astype(np.uint8).tobytes())
        else:
            bits = "".join(format(int(v), "0%db" % depth) for v in row)
            bits += "0" * (-len(bits) % 8)
            out.append(b"\0" + int(bits, 2).to_bytes(len(bits) // 8, "big")
                       if bits else b"\0")
    return b"".join(out)


def png(a, depth, ct, plte=None, trns=None, interlace=False):
    """A PNG of a (H x W or H x W x C) written by hand."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", w, h, depth, ct, 0, 0, 1 if interlace else 0))
    if plte is not None:
        s += chunk(b"PLTE", bytes(plte))
    if trns is not None:
        s += chunk(b"tRNS", bytes(trns))
    if interlace:
        raw = b"".join(pack_rows(a[y0::dy, x0::dx], depth, c)
                       for x0, y0, dx, dy in ADAM7
                       if a[y0::dy, x0::dx].size)
    else:
        raw = pack_rows(a, depth, c)
    return s + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def main():
    semiseg, tmp, out_path = sys.argv[1:4]
    rng = np.random.default_rng(20240501)
    out = open(out_path, "wb")
    count = 0

    def emit(group, mode, path, pixels):
        nonlocal count
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        h, w = pixels.shape
        out.write(("%s %s %d %d %s\n" % (group, mode, w, h, path)).encode())
        out.write(pixels.tobytes())
        count += 1

    def gray(path):
        im = Image.open(path)
        if im.format == "JPEG":
            im.draft("L", im.size)  # libjpeg's gray output, full size
            assert im.mode == "L" and im.size == Image.open(path).size, path
            return np.array(im)
        return np.array(im.convert("L"))

    def index(path):
        im = Image.open(path)
        assert im.mode in ("P", "L", "1"), (path, im.mode)
        return np.array(im).astype(np.uint8)

    # ---- the training set --------------------------------------------------
    dl = os.path.join(semiseg, "LungInfection-Train", "Doctor-label")
    mc = os.path.join(semiseg, "MultiClassInfection-Train")
    names = sorted(f[:-4] for f in os.listdir(os.path.join(dl, "Imgs"))
                   if f.endswith(".jpg"))
    assert len(names) == 50, len(names)
    for n in names:
        p = os.path.join(dl, "Imgs", n + ".jpg")
        emit("Doctor-label/Imgs", "GRAY", p, gray(p))
        p = os.path.join(mc, "Imgs", n + ".jpg")
        emit("MultiClass/Imgs", "GRAY", p, gray(p))
        p = os.path.join(dl, "GT", n + ".png")
        assert Image.open(p).mode == "L", p
        emit("Doctor-label/GT", "INDEX", p, index(p))
        emit("Doctor-label/GT", "GRAY", p, gray(p))
        p = os.path.join(mc, "GT", n + ".png")
        assert Image.open(p).mode == "P", p
        emit("MultiClass/GT", "INDEX", p, index(p))
        emit("MultiClass/GT", "GRAY", p, gray(p))

    # ---- synthetic files ---------------------------------------------------
    def save(name, data):
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def pil_bytes(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    H, W = 29, 43
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (H, W), dtype=np.uint8)
    g8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
    smooth = ((np.add.outer(np.arange(H) * 5, np.arange(W) * 3)) % 256
              ).astype(np.uint8)
    smooth_rgb = np.stack([smooth, 255 - smooth, smooth // 2], axis=2)

    cases = [
        ("rgb8.png", pil_bytes(Image.fromarray(rgb, "RGB"), "PNG"), "GRAY"),
        ("rgba8.png", pil_bytes(Image.fromarray(
            np.dstack([rgb, alpha]), "RGBA"), "PNG"), "GRAY"),
        ("la8.png", pil_bytes(Image.fromarray(
            np.dstack([g8, alpha]), "LA"), "PNG"), "GRAY"),
        ("la8-index.png", pil_bytes(Image.fromarray(
            np.dstack([g8 % 3, alpha]), "LA"), "PNG"), None),
        ("gray8.png", pil_bytes(Image.fromarray(g8, "L"), "PNG"), "BOTH"),
        ("bilevel.png", pil_bytes(Image.fromarray(g8 > 127), "PNG"), "BOTH"),
        ("rgb16.png", png(rng.integers(0, 65536, (H, W, 3)), 16, 2), "GRAY"),
        ("rgba16.png", png(rng.integers(0, 65536, (H, W, 4)), 16, 6), "GRAY"),
        ("la16.png", png(rng.integers(0, 65536, (H, W, 2)), 16, 4), "GRAY"),
        ("gray2.png", png(rng.integers(0, 4, (H, W)), 2, 0), "GRAY"),
        ("gray4.png", png(rng.integers(0, 16, (H, W)), 4, 0), "GRAY"),
        ("rgb8-adam7.png", png(rgb, 8, 2, interlace=True), "GRAY"),
        ("gray1-adam7.png", png(rng.integers(0, 2, (H, W)), 1, 0,
                                interlace=True), "BOTH"),
        ("rgba16-adam7.png", png(rng.integers(0, 65536, (H, W, 4)), 16, 6,
                                 interlace=True), "GRAY"),
    ]
    # Palettes: full random 256, a short one (indices past its end take
    # Pillow's gray ramp), 1/2/4-bit, with tRNS, interlaced.
    pal256 = rng.integers(0, 256, 768, dtype=np.uint8)
    idx = rng.integers(0, 256, (H, W))
    cases.append(("pal8.png", png(idx, 8, 3, plte=pal256), "BOTH"))
    cases.append(("pal8-short.png", png(idx, 8, 3, plte=pal256[:30]),
                  "BOTH"))
    cases.append(("pal8-trns.png", png(idx, 8, 3, plte=pal256,
                                       trns=range(0, 256, 3)), "BOTH"))
    for bits in (1, 2, 4):
        n = 1 << bits
        cases.append(("pal%d.png" % bits,
                      png(rng.integers(0, n, (H, W)), bits, 3,
                          plte=pal256[:3 * max(1, n - 1)]), "BOTH"))
    cases.append(("pal4-adam7.png", png(rng.integers(0, 16, (H, W)), 4, 3,
                                        plte=pal256[:48], interlace=True),
                  "BOTH"))
    # The multi-class palette of the training set, labels 0/1/2.
    lab = rng.integers(0, 3, (H, W)).astype(np.uint8)
    p = Image.fromarray(lab, "P")
    p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    cases.append(("labels.png", pil_bytes(p, "PNG"), "BOTH"))
    # JPEG: gray and colour, 4:2:0 / 4:4:4, progressive, odd sizes.
    cases += [
        ("gray.jpg", pil_bytes(Image.fromarray(smooth, "L"), "JPEG",
                               quality=85), "GRAY"),
        ("gray-prog.jpg", pil_bytes(Image.fromarray(smooth, "L"), "JPEG",
                                    quality=85, progressive=True), "GRAY"),
        ("rgb420.jpg", pil_bytes(Image.fromarray(smooth_rgb, "RGB"), "JPEG",
                                 quality=85), "GRAY"),
        ("rgb444.jpg", pil_bytes(Image.fromarray(smooth_rgb, "RGB"), "JPEG",
                                 quality=95, subsampling=0), "GRAY"),
        ("rgb-prog.jpg", pil_bytes(Image.fromarray(rgb, "RGB"), "JPEG",
                                   quality=75, progressive=True), "GRAY"),
    ]
    for name, data, modes in cases:
        p = save(name, data)
        if modes in ("GRAY", "BOTH"):
            emit("synthetic", "GRAY", p, gray(p))
        if modes in ("INDEX", "BOTH"):
            emit("synthetic", "INDEX", p, index(p))
        if modes is None:  # LA as a label: the gray channel
            emit("synthetic", "INDEX", p,
                 np.array(Image.open(p).convert("L")))
    # 16-bit grayscale: Pillow decodes the values (mode I); covct reads the
    # high byte as a picture and the values themselves as labels.
    v16 = rng.integers(0, 65536, (H, W))
    p = save("gray16.png", png(v16, 16, 0))
    dec = np.array(Image.open(p))
    assert (dec == v16).all()
    emit("synthetic-16bit-gray", "GRAY", p, dec >> 8)
    v16 = rng.integers(0, 3, (H, W))
    p = save("gray16-labels.png", png(v16, 16, 0))
    emit("synthetic-16bit-gray", "INDEX", p, np.array(Image.open(p)))
    out.close()
    print("image_pil.py: %d expected images written" % count)


if __name__ == "__main__":
    main()
