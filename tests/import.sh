#!/bin/bash
# covct import (issue 6), end to end, on SQLite or (under
# tests/with-postgres.sh, which sets COVCT_DB) PostgreSQL:
#  - while covct serve holds the store, import stops and says to use
#    covct send;
#  - a DICOM folder (P001 of COVID-CT-MD, with a file that is not DICOM in
#    it): every DICOM file is stored and filed (patient, study, series,
#    one instance per file, path relative to the data folder, SHA-256 of
#    the stored file); the other file is named with the reason; again:
#    nothing new;
#  - a NIfTI volume with a lesion mask (kept) and a mask of another shape
#    (refused, both shapes named); again: already there;
#  - a CSV of clinical labels: the good row is imported, bad rows are
#    refused with their line numbers and the column; again: already there;
#  - the audit log has the import entries and verifies.
. "$(dirname "$0")/lib.sh"
COVCT=${COVCT_BIN:-build/covct}
P001=$(data covid-ct-md/P001) || exit $?
if [ -n "${COVCT_DB:-}" ]; then need psql; else need sqlite3; fi
T=$(mktemp -d)
D=$T/site
SERVER=""
cleanup() {
    [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap "" EXIT && echo "keeping $T"
# sql QUERY: one query on the site's case database, values only.
sql() {
    if [ -n "${COVCT_DB:-}" ]; then
        psql "$COVCT_DB" -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"
    else
        sqlite3 "$D/covct.db" "$1"
    fi
}
# run NAME ARGS...: covct with stdout and stderr in $T/NAME.out/.err and
# the exit status in RC.
run() {
    n=$1; shift
    "$COVCT" "$@" >"$T/$n.out" 2>"$T/$n.err"
    RC=$?
    if sanitizer_report "$T/$n.err"; then bad "$n: sanitizer report"; cat "$T/$n.err" >&2; fi
}
has() { grep -qF -- "$2" "$T/$1"; } # has FILE TEXT
N=$(find "$P001" -type f | wc -l)

# ---- the store is held by a running covct serve --------------------------
"$COVCT" serve --data "$D" --dicom-port 0 --port-file "$T/port" --ae COVCT \
    2>"$T/serve.log" &
SERVER=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
check "covct serve started" test -s "$T/port"
run busy import "$P001" --data "$D"
check "import while serve holds the store: exit 1" test "$RC" = 1
check "  ... says the store is in use" has busy.err "is in use by a running 'covct serve'"
check "  ... and to use covct send" has busy.err "covct send AE@HOST:PORT"
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=""

# ---- DICOM folder ---------------------------------------------------------
mkdir -p "$T/in/notes"
cp -r "$P001" "$T/in/P001"
echo "scanned on the second floor" >"$T/in/notes/README.txt"
run dicom import "$T/in" --data "$D"
check "DICOM import with a non-DICOM file: exit 1" test "$RC" = 1
check "  ... the file is named with the reason" \
    has dicom.err "refused $T/in/notes/README.txt: not a DICOM file"
check "  ... summary: $N new, 1 refused" \
    has dicom.out "$((N + 1)) files: $N new instances, 0 already there, 1 refused"
check "  ... progress on stderr" has dicom.err "import: $((N + 1))/$((N + 1)) files"
check "instances in the database = DICOM files ($N)" \
    test "$(sql 'SELECT COUNT(*) FROM instances')" = "$N"
# counts TABLE...: the row counts, "1 1 1 "
counts() { for t; do printf '%s ' "$(sql "SELECT COUNT(*) FROM $t")"; done; }
check "one patient, study, series" test "$(counts patients studies series)" = "1 1 1 "
PID=$(sql 'SELECT site_patient_id FROM patients')
check "patient ID from the files" test "$PID" = "$("$PY" -c 'import pydicom, sys; print(pydicom.dcmread(sys.argv[1], stop_before_pixels=True).PatientID)' "$P001/$(ls "$P001" | head -1)")"
check "series modality CT" test "$(sql 'SELECT modality FROM series')" = CT
check "study date from the files" test "$(sql 'SELECT study_date FROM studies')" = 20200305
# every path relative to the data folder, every file there with its hash
paths_ok() {
    sql 'SELECT path, sha256 FROM instances' | tr '|' ' ' | while read -r p h; do
        case $p in /*) echo "absolute path $p" >&2; return 1 ;; esac
        [ "$(sha256sum "$D/$p" | cut -c1-64)" = "$h" ] || { echo "bad $p" >&2; return 1; }
    done
}
check "each instance: relative path, file there, SHA-256 right" paths_ok
check "the stored files are the files imported" test \
    "$(sha256sum "$P001"/* | cut -c1-64 | sort)" = "$(sql 'SELECT sha256 FROM instances' | sort)"
run again import "$P001" --data "$D"
check "re-import: exit 0" test "$RC" = 0
check "  ... nothing new" has again.out "0 new instances, $N already there, 0 refused"
check "  ... says so" has again.out "nothing new"
check "  ... same counts" test "$(sql 'SELECT COUNT(*) FROM instances')" = "$N"
check "  ... no second patient entry in the audit log" \
    test "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'patient.add'")" = 1

# ---- media with a DICOMDIR, a file without meta information, a
# different copy of an instance already stored (made with dcmtk)
if command -v dcmmkdir >/dev/null && command -v dcmconv >/dev/null; then
    mkdir -p "$T/m" "$T/media/IMG"
    dcmdjpeg "$P001/$(ls "$P001" | head -1)" "$T/m/dec.dcm"
    cp "$T/m/dec.dcm" "$T/media/DUP"   # same UID, other encoding
    cp "$T/m/dec.dcm" "$T/media/IMG/IM1"
    dcmodify -nb -gin -i "PatientName=Test^Name" "$T/media/IMG/IM1"
    cp "$T/m/dec.dcm" "$T/m/raw.dcm"
    dcmodify -nb -gin "$T/m/raw.dcm"
    dcmconv -F +ti "$T/m/raw.dcm" "$T/media/RAW" # data set only
    (cd "$T/media" && dcmmkdir -q +r IMG)
    run media import "$T/media" --data "$D"
    check "media folder: exit 0" test "$RC" = 0
    check "  ... 2 new, the duplicate kept aside, DICOMDIR skipped" has media.out \
        "4 files: 2 new instances, 1 already there, 0 refused, 1 different copy kept aside, 1 DICOMDIR skipped"
    check "  ... the different copy under duplicates/" test "$(ls "$D/duplicates" | wc -l)" = 1
    check "  ... and reported" has media.err "this one is kept under $D/duplicates/"
    check "  ... instances: $N + 2" test "$(sql 'SELECT COUNT(*) FROM instances')" = $((N + 2))
    RAWUID=$(dcmdump -q +P SOPInstanceUID "$T/media/RAW" | sed 's/.*\[\(.*\)\].*/\1/')
    RAWP=$(sql "SELECT path FROM instances WHERE sop_uid = '$RAWUID'")
    check "  ... the file without meta information stored as Part 10" \
        test -n "$RAWP" -a -n "$(dcmdump -q +P TransferSyntaxUID "$D/${RAWP:-none}" | grep LittleEndianImplicit)"
elif [ "${CI:-}" = true ]; then
    bad "dcmtk missing (scripts/install-deps.sh installs it)"
fi

# ---- NIfTI volume and masks -----------------------------------------------
run vol volume "$P001" -o "$T/vol.nii.gz"
check "volume made from P001" test "$RC" = 0
"$PY" - "$T" <<'EOF'
import sys
import nibabel as nib, numpy as np
t = sys.argv[1]
v = nib.load(t + "/vol.nii.gz")
m = np.zeros(v.shape, np.uint8)          # labelled synthetic lesions
m[200:260, 200:260, 60:80] = 1
m[220:240, 220:240, 65:75] = 2
nib.save(nib.Nifti1Image(m, v.affine), t + "/lesions.nii.gz")
nib.save(nib.Nifti1Image(np.zeros((64, 64, 20), np.uint8), v.affine),
         t + "/small.nii.gz")
b = m.copy()                             # one voxel with no lesion class
b[10, 20, 30] = 3
nib.save(nib.Nifti1Image(b, v.affine), t + "/badlabel.nii.gz")
f = m.astype(np.float32)                 # a label that is not a whole number
f[11, 21, 31] = 0.5
nib.save(nib.Nifti1Image(f, v.affine), t + "/halflabel.nii.gz")
EOF
run badlabel import --nifti "$T/vol.nii.gz" --patient "$PID" \
    --mask lesions="$T/badlabel.nii.gz" --data "$D"
check "lesion mask with a label outside 0-2: exit 1" test "$RC" = 1
check "  ... the refusal names the voxel, its value and the labels allowed" has badlabel.err \
    "$T/badlabel.nii.gz: voxel (10, 20, 30) is 3; a lesions mask holds the labels 0 to 2"
run halflabel import --nifti "$T/vol.nii.gz" --patient "$PID" \
    --mask lesions="$T/halflabel.nii.gz" --data "$D"
check "lesion mask with a fractional label: exit 1" test "$RC" = 1
check "  ... the refusal names the voxel and its value" has halflabel.err \
    "$T/halflabel.nii.gz: voxel (11, 21, 31) is 0.5; a lesions mask holds the labels 0 to 2"
run nifti import --nifti "$T/vol.nii.gz" --patient "$PID" \
    --mask lesions="$T/lesions.nii.gz" --mask lobes="$T/small.nii.gz" --data "$D"
check "NIfTI with a wrongly shaped mask: exit 1" test "$RC" = 1
check "  ... the refusal names both shapes" has nifti.err \
    "$T/small.nii.gz: the mask is 64 x 64 x 20 voxels but the volume $T/vol.nii.gz is 512 x 512 x 148"
VP=$(sql "SELECT volume_path FROM series WHERE volume_path IS NOT NULL")
check "volume registered under volumes/" test "${VP#volumes/}" != "$VP"
check "  ... the original bytes kept" cmp -s "$T/vol.nii.gz" "$D/$VP"
check "  ... with their SHA-256" test "$(sql 'SELECT volume_sha256 FROM series WHERE volume_path IS NOT NULL')" = "$(sha256sum "$T/vol.nii.gz" | cut -c1-64)"
check "  ... in a study of the patient" test "$(sql "SELECT COUNT(*) FROM series s JOIN studies st ON st.id = s.study_id JOIN patients p ON p.id = st.patient_id WHERE s.volume_path IS NOT NULL AND p.site_patient_id = '$PID'")" = 1
check "one image label: lesions, imported" \
    test "$(sql 'SELECT kind, status, source_kind FROM image_labels' | tr '|' ' ')" = "lesions imported import"
MP=$(sql 'SELECT path FROM image_labels')
check "  ... the mask copied under labels/" cmp -s "$T/lesions.nii.gz" "$D/${MP:-none}"
check "  ... path starts with labels/" test "${MP#labels/}" != "$MP"
run nifti2 import --nifti "$T/vol.nii.gz" --patient "$PID" --mask lesions="$T/lesions.nii.gz" --data "$D"
check "NIfTI again: exit 0, already there" test "$RC" = 0
check "  ... volume already there" has nifti2.out "already there, series"
check "  ... mask already there" has nifti2.out "already there (label version"
check "  ... still one volume series and one label" \
    test "$(counts "series WHERE volume_path IS NOT NULL" image_labels)" = "1 1 "
run nifti3 import --nifti "$T/lesions.nii.gz" --patient "$PID" \
    --series-uid "$(sql 'SELECT series_uid FROM series WHERE volume_path IS NULL')" --data "$D"
check "NIfTI on a DICOM series' UID: refused" test "$RC" = 1
check "  ... saying why" has nifti3.err "is a DICOM series already in the database"

# ---- CSV clinical labels --------------------------------------------------
printf '\xef\xbb\xbfpatient_id,diagnosis,severity,outcome,category,comment\r\n' >"$T/labels.csv"
printf '%s,covid-19-confirmed,12,recovered,typical,"fever, ""dry"" cough"\r\n' "$PID" >>"$T/labels.csv"
printf '%s,covid-20,3,,,\r\n' "$PID" >>"$T/labels.csv"
printf 'NOBODY,normal,,,,\r\n' >>"$T/labels.csv"
printf '%s,normal,30,,,\r\n' "$PID" >>"$T/labels.csv"
printf '%s,normal\r\n' "$PID" >>"$T/labels.csv"
run csv import --labels "$T/labels.csv" --data "$D"
check "CSV with bad rows: exit 1" test "$RC" = 1
check "  ... summary" has csv.out "5 rows: 1 imported, 0 already there, 4 refused"
check "  ... line 3: unknown diagnosis" has csv.err \
    "refused $T/labels.csv line 3: column 'diagnosis': unknown diagnosis 'covid-20'"
check "  ... line 4: unknown patient" has csv.err \
    "refused $T/labels.csv line 4: no patient 'NOBODY' (import the images first)"
check "  ... line 5: severity 30" has csv.err \
    "refused $T/labels.csv line 5: column 'severity': 30 is outside"
check "  ... line 6: too few fields" has csv.err \
    "refused $T/labels.csv line 6: 2 fields where the header has 6"
check "the good row is a clinical label of the patient's case" test \
    "$(sql "SELECT l.diagnosis, l.severity, l.outcome, l.category, l.status FROM clinical_labels l JOIN cases c ON c.id = l.case_id JOIN patients p ON p.id = c.patient_id WHERE p.site_patient_id = '$PID'" | tr '|' ' ')" \
    = "covid-19-confirmed 12 recovered typical imported"
check "  ... its comment unquoted" test "$(sql 'SELECT comment FROM clinical_labels')" = 'fever, "dry" cough'
run csv2 import --labels "$T/labels.csv" --data "$D" --quiet
check "CSV again: the good row already there" has csv2.out "1 already there"
check "  ... still one clinical label" test "$(sql 'SELECT COUNT(*) FROM clinical_labels')" = 1
: >"$T/empty.csv"
run csv3 import --labels "$T/empty.csv" --data "$D"
check "empty CSV: exit 1, needs a header" test "$RC" = 1 -a -n "$(grep 'is empty: it needs a header row' "$T/csv3.err")"
printf 'patient,diag\n' >"$T/nohead.csv"
run csv4 import --labels "$T/nohead.csv" --data "$D"
check "CSV without the columns: exit 1, names the column" test "$RC" = 1 -a -n "$(grep "has no 'patient_id' column" "$T/csv4.err")"

# ---- usage ------------------------------------------------------------------
run u1 import --data "$D"
check "nothing to import: usage (2)" test "$RC" = 2
run u2 import --nifti "$T/vol.nii.gz" --data "$D"
check "--nifti without --patient: usage (2)" test "$RC" = 2
run u3 import --nifti "$T/vol.nii.gz" --patient X --mask bones="$T/lesions.nii.gz" --data "$D"
check "--mask of an unknown kind: usage (2)" test "$RC" = 2
run u4 import --help
check "--help: exit 0 and mentions covct send" test "$RC" = 0 -a -n "$(grep 'covct send' "$T/u4.out")"

# ---- audit ------------------------------------------------------------------
check "one audit entry per import run" test \
    "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'import'")" -ge 8
check "  ... with the counts" test -n \
    "$(sql "SELECT detail FROM audit_log WHERE action = 'import' AND object = 'files'" | grep "\"new_instances\":$N")"
check "  ... and the CSV's" test -n \
    "$(sql "SELECT detail FROM audit_log WHERE object = 'csv:labels.csv'" | grep '"imported":1')"
run audit audit verify --data "$D"
check "audit log intact" has audit.out "intact"
finish
