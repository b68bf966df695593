#!/usr/bin/env python3
"""Every row of PS3.15 Table E.1-1, not just the attributes that sample
files happen to carry:

    govern_deid_table.py make TABLE.txt IN.dcm
        pydicom writes a CT object holding every row of the table whose
        Basic Profile action is not K, each with a valid value of its VR
        (PS3.6) that carries a marker unique to the row; a sequence gets one
        item with a patient name and a referenced SOP instance UID; private
        elements and the repeating groups (50xx,xxxx), (60xx,3000),
        (60xx,4000) are filled too.
    govern_deid_table.py check TABLE.txt IN.dcm OUT.dcm
        dcmdump (dcmtk) reads both files; for each row the outcome in OUT
        must be one the table allows under the options covct applies by
        default (Rtn. Long. Modif. Dates, Rtn. Pat. Chars., Clean Desc.;
        docs/internals/deid.md):
          X  removed           Z  empty, or a dummy (E.1.1 allows both)
          D  a non-empty dummy U  a different, valid UID
          compound (X/Z, X/D, Z/D, X/Z/D, X/Z/U*): any of its parts
          K of an applied option: kept as it was
          C of Rtn. Long. Modif. Dates: a DA/DT shifted (one shift for all
            dates, 1-365 days back), a TM kept or changed
          C of Clean Desc. / Rtn. Pat. Chars.: the values written here hold
            a person's name, so cleaning must fall back to the Basic action
        and no marker of a row whose action is not K may appear anywhere in
        OUT's bytes (nested items included).

Rows not filled: group 0000 (the DIMSE command set, PS3.7 E.1, is not
part of a stored data set). Tags that pydicom 2.3.1's dictionary does not
know (rows added to PS3.6 after 2022) are written with the VR given in
NEW_VR below, from PS3.6, or as UT where the row's action is X, since
removal does not depend on the VR."""
import datetime
import os
import re
import subprocess
import sys

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
from deidtable import entries  # noqa: E402

# PS3.6 (2025) VRs of non-X rows unknown to pydicom 2.3.1.
NEW_VR = {0x00080017: "UI",  # Acquisition UID
          0x00080019: "UI",  # Pyramid UID
          0x300A0054: "UI"}  # Table Top Position Alignment UID
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
BASE_DATE = datetime.date(2020, 3, 1)
# Defaults of covct deid (docs/internals/deid.md, "Options and defaults").
OPTS = {"dates": True, "pat": True, "desc": True,
        "dev": False, "inst": False, "uids": False}


def read_table(path):
    rows, opts = {}, {}
    for section, parts, _ in entries(path):
        if section == "basic":
            rows[parts[0].lower()] = parts[1]
        elif section in ("uids", "dates", "desc"):
            code = "K" if section == "uids" else "C"
            for t in parts:
                opts.setdefault(t.lower(), {})[section] = code
        else:
            opts.setdefault(parts[0].lower(), {})[section] = parts[1]
    return rows, opts


def vr_of(tag, act):
    if tag in NEW_VR:
        return NEW_VR[tag]
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        if act != "X":
            raise SystemExit(f"({tag >> 16:04x},{tag & 0xffff:04x}) {act}: "
                             "VR unknown, add it to NEW_VR from PS3.6")
        return "UT"
    return vr.split(" or ")[0]


def marker(i):
    return f"R{i:04d}"


def value(vr, i):
    """A valid value of the VR (PS3.5 6.2) that carries the row's marker
    where the VR can hold one."""
    m = marker(i)
    d = BASE_DATE + datetime.timedelta(days=i)
    if vr == "PN":
        return f"DOE^JOHN^{m}"
    if vr in ("LO", "ST", "LT", "UT", "UC"):
        return f"John Doe {m}"
    if vr == "SH":
        return f"J Doe {m}"
    if vr == "CS":
        return f"JDOE {m}"
    if vr == "AE":
        return f"JDOE{m}"
    if vr == "UR":
        return f"http://hospital.example/patients/{m}"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.99.1{i:04d}"
    if vr == "DA":
        return d.strftime("%Y%m%d")
    if vr == "DT":
        return d.strftime("%Y%m%d") + "101500"
    if vr == "TM":
        return f"1015{i % 60:02d}"
    if vr == "AS":
        return "045Y"
    if vr == "DS":
        return f"{i}.5"
    if vr == "IS":
        return str(1000 + i)
    if vr in ("US", "SS"):
        return 100 + i
    if vr in ("UL", "SL", "UV", "SV"):
        return 100000 + i
    if vr in ("FL", "FD"):
        return i + 0.25
    if vr == "AT":
        return 0x00100010
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
        b = f"John Doe {m}".encode()
        return b + b"\0" * (-len(b) % 8)
    raise SystemExit(f"no value for VR {vr}")


def item(i):
    it = Dataset()
    it.ReferencedSOPClassUID = CT_IMAGE
    it.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.98.1{i:04d}"
    it.PatientName = f"DOE^JOHN^S{i:04d}"
    return it


def concrete_tag(t):
    """The tag a table row stands for here: a repeating group's row (50xx,
    60xx, gggg,xxxx) as the one element of it that make() writes."""
    if "x" not in t:
        return int(t, 16)
    g = int(t[:4].replace("x", "0"), 16)
    el = 0x2500 if t[4:] == "xxxx" else int(t[4:], 16)
    return (g << 16) | el


def make(table_path, out):
    rows, _ = read_table(table_path)
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    meta_uid = None
    for i, (t, act) in enumerate(sorted(rows.items())):
        if act == "K" or t.startswith("0000"):
            continue
        if "x" in t:
            # One element of each repeating group, with identifying text.
            tag = concrete_tag(t)
            el = tag & 0xFFFF
            vr = "LO" if el == 0x2500 else ("OW" if el == 0x3000 else "LT")
            ds.add(DataElement(tag, vr, value(vr, i)))
            continue
        tag = int(t, 16)
        if tag >> 16 == 0x0002:
            continue  # (0002,0003): the meta header, written below
        vr = vr_of(tag, act)
        if vr == "SQ":
            ds.add(DataElement(tag, "SQ", Sequence([item(i)])))
        else:
            ds.add(DataElement(tag, vr, value(vr, i)))
        if tag == 0x00080018:
            meta_uid = ds[tag].value
    # Private elements (odd group, creator and data).
    ds.add(DataElement(0x00090010, "LO", "JOHN DOE PRIVATE"))
    ds.add(DataElement(0x00091001, "LO", "John Doe R9999"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE
    meta.MediaStorageSOPInstanceUID = meta_uid
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(out, write_like_original=False)


LINE = re.compile(r"^(\s*)\(([0-9a-f]{4}),([0-9a-f]{4})\) (\w\w) (.*?)\s+#\s*(\d+|u/l),")
ITEMS = re.compile(r"#=(\d+)")


def top_level(path):
    """{tag: (vr, value, length)} at nesting depth 0, from dcmdump; for
    a sequence the value is its number of items."""
    out = subprocess.run(["dcmdump", "-q", "+L", path], capture_output=True,
                         text=True, errors="replace")
    if out.returncode != 0:
        raise SystemExit(f"dcmdump failed on {path}: {out.stderr}")
    top = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if not m or m.group(1):
            continue
        tag = int(m.group(2) + m.group(3), 16)
        vr, val = m.group(4), m.group(5)
        if vr == "SQ":
            n = ITEMS.search(val)
            val = int(n.group(1)) if n else 0
        elif val.startswith("["):
            val = val[1:val.rfind("]")]
        elif val.startswith("(no value"):
            val = ""
        length = m.group(6)
        top[tag] = (vr, val, -1 if length == "u/l" else int(length))
    return top


UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def outcome(orig, new):
    """What happened to one element: absent, empty, items (a sequence with
    items), same, shifted DA/DT (with the shift in days), uid, changed."""
    if new is None:
        return "absent", None
    vr, val, length = new
    if vr == "SQ":
        return ("items" if val else "empty"), None
    if length == 0 or val == "":
        return "empty", None
    if val == orig[1]:
        return "same", None
    if vr in ("DA", "DT") and re.match(r"^\d{8}", val):
        try:
            a = datetime.datetime.strptime(orig[1][:8], "%Y%m%d").date()
            b = datetime.datetime.strptime(val[:8], "%Y%m%d").date()
            if val[8:] == orig[1][8:]:
                return "shifted", (b - a).days
        except ValueError:
            pass
    if vr == "UI":
        return ("uid" if all(UID.match(v) and len(v) <= 64
                             for v in val.split("\\")) else "changed"), None
    return "changed", None


BASIC = {"X": {"absent"}, "Z": {"empty", "dummy"}, "D": {"dummy"},
         "U": {"uid"}}


def allowed(act, vr, opt):
    """The outcomes the table allows for a row under covct's defaults."""
    ok = set()
    for part in act.rstrip("*").split("/"):
        ok |= BASIC[part]
    keep = any(OPTS[c] and opt.get(c) == "K" for c in opt)
    if keep:
        ok = {"same"}
    if OPTS["dates"] and opt.get("dates") and vr in ("DA", "DT"):
        ok = {"shifted"}
    elif OPTS["dates"] and opt.get("dates") and vr == "TM":
        ok = {"same", "dummy"}
    if vr == "SQ":
        # A dummy of a sequence is items whose content is de-identified
        # (the marker scan below); a walked U* or cleaned sequence too.
        # covct empties D sequences (docs/internals/deid.md).
        if "dummy" in ok or "uid" in ok or (opt.get("desc") and OPTS["desc"]):
            ok |= {"items", "empty"}
        if keep:
            ok = {"items"}
    if vr == "UI" and "dummy" in ok:
        ok.add("uid")
    return ok


def check(table_path, orig_path, out_path):
    rows, opts = read_table(table_path)
    o, d = top_level(orig_path), top_level(out_path)
    raw = open(out_path, "rb").read()
    problems, shifts, checked = [], set(), 0
    for i, (t, act) in enumerate(sorted(rows.items())):
        if act == "K" or t.startswith("0000"):
            continue
        tag = concrete_tag(t)
        name = f"({tag >> 16:04x},{tag & 0xffff:04x}) {act}"
        if tag not in o:
            problems.append(f"{name}: not in the input (test defect)")
            continue
        checked += 1
        vr = o[tag][0]
        got, shift = outcome(o[tag], d.get(tag))
        if got == "changed" or (got == "uid" and vr != "UI"):
            got = "dummy"
        ok = allowed(act, vr, opts.get(t, {}))
        if got not in ok:
            problems.append(f"{name} {vr}: {got}, the table allows "
                            f"{'/'.join(sorted(ok))}")
        if got == "shifted":
            shifts.add(shift)
        if "same" not in ok and marker(i).encode() in raw:
            problems.append(f"{name}: its marker {marker(i)} is still in "
                            "the output")
        if vr == "SQ" and "same" not in ok and \
                f"S{i:04d}".encode() in raw:
            problems.append(f"{name}: the patient name of its item is "
                            "still in the output")
        if vr == "SQ" and "same" not in ok and \
                f"3680043.98.1{i:04d}".encode() in raw:
            problems.append(f"{name}: the UID in its item is still in "
                            "the output")
    if len(shifts) != 1 or not -365 <= next(iter(shifts)) <= -1:
        problems.append(f"date shifts {sorted(shifts)}: want one, 1-365 "
                        "days back")
    if b"R9999" in raw or 0x00090010 in d or 0x00091001 in d:
        problems.append("a private element is left")
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    print(f"{checked} rows of Table E.1-1 checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"] and len(sys.argv) == 4:
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["check"] and len(sys.argv) == 5:
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        raise SystemExit(__doc__)
