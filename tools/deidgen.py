#!/usr/bin/env python3
"""Generate src/govern/deid-table.c from src/govern/deid-table.txt.

The text transcribes DICOM PS3.15 Table E.1-1 (see its header); this
script only reshapes it into a sorted C array so that the table stays
readable and diffable against the standard.  Usage:
    python3 tools/deidgen.py src/govern/deid-table.txt > src/govern/deid-table.c
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deidtable import entries  # noqa: E402

BASIC = {"D": "DEID_D", "Z": "DEID_Z", "X": "DEID_X", "K": "DEID_K",
         "C": "DEID_C", "U": "DEID_U", "X/Z": "DEID_XZ", "X/D": "DEID_XD",
         "Z/D": "DEID_ZD", "X/Z/D": "DEID_XZD", "X/Z/U*": "DEID_XZU"}
COLS = ["uids", "dev", "inst", "pat", "dates", "desc"]


def parse_tag(t):
    t = t.strip()
    if len(t) != 8:
        raise SystemExit(f"bad tag {t!r}")
    value = int(t.replace("x", "0").replace("X", "0"), 16)
    mask = int("".join("0" if c in "xX" else "F" for c in t), 16)
    return value, mask


def main(path):
    rows = {}
    for section, parts, line in entries(path):
        if section == "basic":
            tag, act = parts
            key = parse_tag(tag)
            if key in rows:
                raise SystemExit(f"duplicate {tag}")
            rows[key] = {"basic": BASIC[act]}
        elif section in ("uids", "dates", "desc"):
            code = {"uids": "K", "dates": "C", "desc": "C"}[section]
            for tag in parts:
                rows[parse_tag(tag)][section] = code
        elif section in ("dev", "inst", "pat"):
            tag, code = parts
            if code not in ("K", "C"):
                raise SystemExit(f"bad option code {code}")
            rows[parse_tag(tag)][section] = code
        else:
            raise SystemExit(f"line outside a section: {line}")

    out = sys.stdout
    out.write("/* Generated from deid-table.txt by tools/deidgen.py: do not edit.\n"
              " * DICOM PS3.15 Table E.1-1 (edition current in June 2025), one\n"
              " * row per attribute, sorted by tag; repeating-group rows last.\n"
              " * Option columns: 0 = not listed, 'K' keep, 'C' clean; 'dates'\n"
              " * is 'C' for rows with K under Rtn. Long. Full Dates and C\n"
              " * under Rtn. Long. Modif. Dates. */\n"
              "#include \"govern/govern_int.h\"\n\n"
              "const covct_deid_rule covct_deid_table[] = {\n")
    plain = sorted(k for k in rows if k[1] == 0xFFFFFFFF)
    masked = sorted(k for k in rows if k[1] != 0xFFFFFFFF)
    for key in plain + masked:
        r = rows[key]
        opts = ", ".join(f"'{r[c]}'" if c in r else "0" for c in COLS)
        out.write(f"    {{0x{key[0]:08X}u, 0x{key[1]:08X}u, {r['basic']}, {opts}}},\n")
    out.write("};\n\n")
    out.write(f"const size_t covct_deid_table_len = {len(rows)};\n")
    out.write(f"const size_t covct_deid_table_plain = {len(plain)};\n")


if __name__ == "__main__":
    main(sys.argv[1])
