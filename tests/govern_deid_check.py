#!/usr/bin/env python3
"""Check covct deid output against its input with dcmtk's dcmdump (not
covct's reader) and pydicom:

    govern_deid_check.py TABLE.txt ORIG OUT [ORIG OUT ...]

For each pair: no element whose PS3.15 Table E.1-1 action (read from the
table's source text) is D, Z, X, U or compound keeps its original non-empty
value at any nesting level, except where covct's default options keep it
(patient characteristics; descriptions of plain vocabulary; times, which
the date shift leaves); no private element remains; Patient Identity
Removed is YES with the DCM 113100 code; the original patient name, ID,
institution and UIDs appear nowhere in the output bytes; pixel data are
unchanged (the same bytes when the transfer syntax is kept, the same
decoded values otherwise)."""
import os
import re
import subprocess
import sys

import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
from deidtable import entries  # noqa: E402

LINE = re.compile(r"^(\s*)\(([0-9a-f]{4}),([0-9a-f]{4})\) (\w\w) (.*?)\s+#\s*\d+")


def dump(path):
    """(tag, vr, value, depth) for every element, from dcmdump."""
    out = subprocess.run(["dcmdump", "-q", "+L", "-M", path],
                         capture_output=True, text=True, errors="replace")
    if out.returncode != 0:
        raise SystemExit(f"dcmdump failed on {path}: {out.stderr}")
    rows = []
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        tag = int(m.group(2) + m.group(3), 16)
        val = m.group(5)
        if val.startswith("["):
            val = val[1:val.rfind("]")]
        elif val.startswith("(no value") or val.startswith("(Sequence") \
                or val.startswith("(Item") or val.startswith("(PixelSequence"):
            val = ""
        rows.append((tag, m.group(4), val.strip(), len(m.group(1)) // 2))
    return rows


def table(path):
    basic, keep = {}, set()
    for section, parts, _ in entries(path):
        if section == "basic" and "x" not in parts[0]:
            basic[int(parts[0], 16)] = parts[1]
        elif section == "pat" and parts[1] == "K":
            keep.add(int(parts[0], 16))
        elif section == "desc":
            # Kept when clean: checked separately (vocabulary words only).
            keep.update(int(t, 16) for t in parts)
    return basic, keep


def pixel_same(orig, out):
    a = pydicom.dcmread(orig)
    b = pydicom.dcmread(out)
    if "PixelData" not in a:
        return "PixelData" not in b
    ta = a.file_meta.TransferSyntaxUID
    tb = b.file_meta.TransferSyntaxUID
    if ta.is_compressed:
        return ta == tb and a.PixelData == b.PixelData
    if ta == tb:
        return a.PixelData == b.PixelData
    return (a.pixel_array == b.pixel_array).all()


def main():
    basic, keep = table(sys.argv[1])
    pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
    bad = 0
    for orig, out in pairs:
        o, d = dump(orig), dump(out)
        out_vals = {}
        for tag, vr, val, _ in d:
            out_vals.setdefault(tag, set()).add(val)
        problems = []
        for tag, vr, val, _ in o:
            act = basic.get(tag)
            if not val or act is None or act == "K" or tag in keep:
                continue
            if vr == "TM" or val.startswith("=") or val.startswith("1.2.840.10008."):
                continue  # times kept by the date shift; well-known UIDs
            if val in out_vals.get(tag, ()):
                problems.append(f"({tag >> 16:04x},{tag & 0xffff:04x}) {act} "
                                f"kept its value [{val}]")
        for tag, vr, val, _ in d:
            if (tag >> 16) & 1:
                problems.append(f"private element ({tag >> 16:04x},"
                                f"{tag & 0xffff:04x}) left")
        if "YES" not in out_vals.get(0x00120062, ()):
            problems.append("Patient Identity Removed is not YES")
        if "113100" not in out_vals.get(0x00080100, ()):
            problems.append("no DCM 113100 in the method code sequence")
        raw = open(out, "rb").read()
        for tag in (0x00100010, 0x00100020, 0x00080080, 0x00080090,
                    0x00080050, 0x0020000D, 0x0020000E, 0x00080018,
                    0x00200052, 0x00081155):
            for tg, vr, val, _ in o:
                if tg == tag and len(val) >= 5 and not val.startswith("="):
                    if val.encode() in raw:
                        problems.append(f"({tag >> 16:04x},{tag & 0xffff:04x}) "
                                        f"value [{val}] found in the output")
        if not pixel_same(orig, out):
            problems.append("pixel data changed")
        for p in problems:
            print(f"FAIL: {orig} -> {out}: {p}", file=sys.stderr)
        bad += bool(problems)
    print(f"{len(pairs) - bad} of {len(pairs)} files clean")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
