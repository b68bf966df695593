"""Compare covct's DICOM JSON Model (tests/dicomjson_dump) with dcmtk's
dcm2json and pydicom's Dataset.to_json_dict() on real files.

Usage: dicomweb_json_check.py DUMP OUTDIR FILE...

Per file: both JSONs are loaded and compared tag by tag (vr, values with
numbers at a relative tolerance, PN groups, sequence structure, decoded
InlineBinary bytes).  Differences the standard settles in covct's favour
are counted as "accepted" under a named reason (see
docs/internals/dicomweb-json.md); any other difference fails the file.
Prints a summary; exit status 1 on any unexpected difference.
"""
import base64
import collections
import json
import math
import os
import subprocess
import sys
import warnings

warnings.simplefilter("ignore")

DUMP, OUT, FILES = sys.argv[1], sys.argv[2], sys.argv[3:]
# pydicom as a second opinion on every n-th file (0: never).
PYDICOM_EVERY = int(os.environ.get("DICOMWEB_PYDICOM_EVERY", "1"))
accepted = collections.Counter()
unexpected = []
stats = collections.Counter()


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def same_number(a, b):
    if a == b:
        return True
    if num(a) and num(b):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return False


def norm_str(s):
    return s.rstrip(" \x00") if isinstance(s, str) else s


def cmp_value(path, vr, a, b, peer):
    """a: covct's value, b: peer's.  Returns a difference text or None."""
    if a == b:
        return None
    if path.split("/")[-1].startswith("00080005") and a == "ISO_IR 192":
        # The JSON text is UTF-8 whatever the file used; dcm2json relabels
        # only the top-level (0008,0005), pydicom none.
        accepted[f"{peer}: (0008,0005) relabelled ISO_IR 192 by covct"] += 1
        return None
    if vr in ("DS", "IS", "FL", "FD", "SV", "UV") and same_number(a, b):
        return None
    if vr in ("DS", "IS") and isinstance(a, str) and b is None:
        # covct keeps a non-numeric DS/IS as a string, dcm2json drops it.
        accepted["DS/IS not a number: covct keeps the text"] += 1
        return None
    if vr in ("DS", "IS") and isinstance(a, str) and isinstance(b, str):
        if a == b.strip():
            return None
    if isinstance(a, str) and isinstance(b, str):
        if a == norm_str(b):
            accepted[f"{peer}: trailing padding kept by the peer"] += 1
            return None
        if a == b.strip():
            accepted[f"{peer}: leading spaces kept by the peer ({vr})"] += 1
            return None
    if vr == "PN" and isinstance(a, dict) and isinstance(b, dict):
        bb = {k: v for k, v in b.items() if v != ""}
        if a == bb:
            accepted[f"{peer}: PN empty component group written"] += 1
            return None
        if {k: norm_str(v) for k, v in a.items()} == {k: norm_str(v) for k, v in bb.items()}:
            accepted[f"{peer}: PN padding kept by the peer"] += 1
            return None
    if a is None and b == "":
        # PS3.18 F.2.5: an empty value of a multi-valued attribute is null.
        accepted[f"{peer}: empty value written as \"\" (F.2.5 says null)"] += 1
        return None
    if vr == "PN" and isinstance(a, dict) and isinstance(b, dict):
        strip = lambda d: {k: v.rstrip("^ ") for k, v in d.items() if v.rstrip("^ ")}
        if a == strip(b):
            # PS3.5 6.2.1.1: trailing null components may be omitted.
            accepted[f"{peer}: PN trailing '^' kept by the peer"] += 1
            return None
    if vr == "PN" and a is None and b in ({}, {"Alphabetic": ""}):
        accepted[f"{peer}: empty PN value written as an object"] += 1
        return None
    if vr == "PN" and a == {} and b is None:
        return None
    return f"{path}: value {a!r} != {b!r}"


def cmp_ds(path, a, b, peer, encapsulated):
    diffs = []
    for tag in sorted(set(a) | set(b)):
        p = f"{path}{tag}"
        if tag not in b:
            if tag == "7FE00010" and encapsulated:
                accepted[f"{peer}: encapsulated pixel data (peer cannot write it)"] += 1
                continue
            diffs.append(f"{p}: only in covct")
            continue
        if tag not in a:
            if tag == "FFFCFFFC":
                # PS3.10 7.2: Data Set Trailing Padding is not an attribute.
                accepted[f"{peer}: trailing padding (FFFC,FFFC) written"] += 1
                continue
            if tag.endswith("0000"):
                accepted[f"{peer}: group length written by the peer"] += 1
                continue
            diffs.append(f"{p}: only in {peer} ({b[tag].get('vr')})")
            continue
        ea, eb = a[tag], b[tag]
        vra, vrb = ea.get("vr"), eb.get("vr")
        if vra != vrb:
            if vra == "UN" or vrb == "UN":
                accepted[f"{peer}: VR of a private/unknown tag differs (UN)"] += 1
                continue
            if {vra, vrb} <= {"OB", "OW"} and tag in ("7FE00010",):
                accepted[f"{peer}: pixel data OB/OW"] += 1
            elif {vra, vrb} <= {"US", "SS", "OW"}:
                accepted[f"{peer}: US/SS/OW choice of an ambiguous tag"] += 1
                continue
            else:
                diffs.append(f"{p}: vr {vra} != {vrb}")
                continue
        if "Value" in ea or "Value" in eb:
            va, vb = ea.get("Value", []), eb.get("Value", [])
            if vra == "SQ":
                if len(va) != len(vb):
                    diffs.append(f"{p}: {len(va)} items != {len(vb)}")
                    continue
                for i, (ia, ib) in enumerate(zip(va, vb)):
                    diffs += cmp_ds(f"{p}/{i}/", ia, ib, peer, False)
                continue
            if len(va) != len(vb):
                if tag == "00080005" and va == ["ISO_IR 192"]:
                    accepted[f"{peer}: (0008,0005) relabelled ISO_IR 192 by covct"] += 1
                    continue
                if not va and vra == "PN" and all(
                        isinstance(x, dict) and not any(v.strip("^= ") for v in x.values())
                        for x in vb):
                    accepted[f"{peer}: PN of delimiters only kept by the peer"] += 1
                    continue
                if not va and all(x in (None, "") for x in vb):
                    accepted[f"{peer}: value of only padding written"] += 1
                    continue
                if not vb and all(x is None for x in va):
                    continue
                diffs.append(f"{p}: {len(va)} values != {len(vb)}: {va[:4]!r} vs {vb[:4]!r}")
                continue
            for i, (x, y) in enumerate(zip(va, vb)):
                d = cmp_value(f"{p}[{i}]", vra, x, y, peer)
                if d:
                    diffs.append(d)
        for key in ("InlineBinary", "BulkDataURI"):
            if key in ea or key in eb:
                if key == "InlineBinary" and key in ea and key in eb:
                    x, y = base64.b64decode(ea[key]), base64.b64decode(eb[key])
                    if x != y:
                        sw = bytes(b for i in range(0, len(y) - 1, 2) for b in (y[i + 1], y[i]))
                        if vra in ("OW", "OF", "OD", "OL") and len(x) == len(y) and (
                                x == sw or vra != "OW"):
                            # pydicom writes a big endian file's OW bytes as
                            # stored; covct and dcm2json write them little
                            # endian, the byte order of the value.
                            accepted[f"{peer}: big endian OW bytes not swapped by the peer"] += 1
                        elif len(x) % 2 and y == x + b"\0":
                            # dcmtk pads an odd-length value on reading;
                            # covct writes the bytes the file has.
                            accepted[f"{peer}: odd-length value padded by the peer"] += 1
                        else:
                            diffs.append(f"{p}: InlineBinary differs")
                elif key in eb and key not in ea and "InlineBinary" in ea:
                    pass
                elif tag == "7FE00010" and encapsulated and key == "InlineBinary":
                    # PS3.18 F.2.7 has no inline form for fragments.
                    accepted[f"{peer}: encapsulated pixel data written inline"] += 1
                elif ea.get(key) != eb.get(key):
                    diffs.append(f"{p}: {key} only on one side")
    return diffs


def run(cmd):
    r = subprocess.run(cmd, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def peer_dcm2json(path, encapsulated):
    src = path
    if encapsulated:
        # dcm2json 3.6.7: "JSON InlineBinary encoding not supported for
        # compressed pixel data"; compare the rest of the data set.
        src = os.path.join(OUT, "nopix.dcm")
        rc, _, e = run(["dcmodify", "-q", "-nb", "-ea", "(7fe0,0010)",
                        "-o", src, path] if False else ["cp", path, src])
        rc, _, e = run(["dcmodify", "-q", "-nb", "-ie", "-ea", "(7fe0,0010)", src])
        if rc:
            return None
    rc, out, e = run(["dcm2json", "-q", src])
    if rc:
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None


def peer_pydicom(path):
    import pydicom
    try:
        ds = pydicom.dcmread(path, force=True)
        return ds.to_json_dict(bulk_data_threshold=1 << 40)
    except Exception:
        return None


for path in FILES:
    stats["files"] += 1
    rc, out, e = run([DUMP, path])
    if rc:
        stats["covct could not parse"] += 1
        continue
    try:
        mine = json.loads(out)
    except ValueError as ex:
        unexpected.append(f"{path}: covct output is not JSON: {ex}")
        continue
    encapsulated = ("7FE00010" in mine and "InlineBinary" not in mine["7FE00010"]
                    and "Value" not in mine["7FE00010"])
    peer = peer_dcm2json(path, encapsulated)
    if peer is None:
        stats["dcm2json could not convert"] += 1
    else:
        stats["compared with dcm2json"] += 1
        d = cmp_ds("", mine, peer, "dcm2json", encapsulated)
        if d:
            unexpected.append(f"{path} (dcm2json): " + "; ".join(d[:6])
                              + (f" ... {len(d)} in all" if len(d) > 6 else ""))
        else:
            stats["equal to dcm2json"] += 1

    if PYDICOM_EVERY and stats["files"] % PYDICOM_EVERY == 0:
        pd = peer_pydicom(path)
        if pd is not None:
            stats["compared with pydicom"] += 1
            d = cmp_ds("", mine, pd, "pydicom", encapsulated)
            if d:
                unexpected.append(f"{path} (pydicom): " + "; ".join(d[:6])
                                  + (f" ... {len(d)} in all" if len(d) > 6 else ""))
            else:
                stats["equal to pydicom"] += 1

print("summary:", dict(stats))
for k, v in sorted(accepted.items()):
    print(f"accepted: {k}: {v}")
for u in unexpected:
    print("DIFF:", u)
print(f"{len(unexpected)} files with unexpected differences")
sys.exit(1 if unexpected else 0)
