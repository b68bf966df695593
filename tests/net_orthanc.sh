#!/bin/bash
# The issue 5 round trip with Orthanc (Debian's, a private instance) as the
# hospital PACS:
#   Orthanc --C-STORE--> covct serve --analysis--> SEG, SR, key images
#   --C-STORE--> Orthanc
# P001 of COVID-CT-MD is uploaded to Orthanc over its REST API, Orthanc
# sends the study to covct (REST /modalities/COVCT/store), covct analyses
# the complete series and sends the results back; the test checks through
# Orthanc's REST API that they arrived in the right study, and runs
# dicom3tools' dciodvfy (no errors) and dcmtk's dsrdump on what Orthanc
# holds.
. "$(dirname "$0")/lib.sh"
need Orthanc curl dciodvfy dsrdump dcmodify sqlite3
COVCT=${COVCT_BIN:-build/covct}
SRC=$(data covid-ct-md/P001)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export TCP_NODELAY=1
T=$(mktemp -d)
SERVER=""
ORTHANC_DIR=""
cleanup() {
    [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null
    [ -n "$ORTHANC_DIR" ] && "$ROOT/scripts/orthanc-temp.sh" stop "$ORTHANC_DIR" >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT
json() { $PY -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# A copy of the series; instances without a SOP Instance UID get one.
cp -r "$SRC" "$T/p001"
for f in "$T"/p001/*.dcm; do
    uid=$(dcmdump -q +P SOPInstanceUID "$f" 2>/dev/null | sed 's/.*\[\(.*\)\].*/\1/')
    [ -z "$uid" ] && dcmodify -nb -gin "$f"
done
NSRC=$(ls "$T/p001" | wc -l)

CPORT=$(free_port)
eval "$("$ROOT/scripts/orthanc-temp.sh" start --dir "$T" --aet ORTHANC \
        --modality COVCT=COVCT@127.0.0.1:"$CPORT")"
check "Orthanc started" test -n "${ORTHANC_URL:-}"
"$COVCT" serve --data "$T/store" --dicom-port "$CPORT" --ae COVCT --settle 3 \
    --peer ORTHANC@127.0.0.1:"$ORTHANC_DICOM_PORT" --send-results-to ORTHANC \
    --allow ORTHANC@127.0.0.1 2>"$T/serve.log" &
SERVER=$!
for _ in $(seq 50); do grep -q listening "$T/serve.log" && break; sleep 0.1; done

# Upload P001 to Orthanc, then ask Orthanc to send the study to covct.
up=0
for f in "$T"/p001/*.dcm; do
    curl -sf -X POST --data-binary @"$f" "$ORTHANC_URL/instances" >/dev/null && up=$((up + 1))
done
check "P001 uploaded to Orthanc ($up of $NSRC)" test "$up" -eq "$NSRC"
STUDY_ID=$(curl -sf "$ORTHANC_URL/studies" | json 'd[0]')
STUDY_UID=$(curl -sf "$ORTHANC_URL/studies/$STUDY_ID" | json 'd["MainDicomTags"]["StudyInstanceUID"]')
check "Orthanc C-STOREs the study to covct" bash -c \
    "curl -sf -X POST -d '{\"Resources\": [\"$STUDY_ID\"], \"Synchronous\": true}' $ORTHANC_URL/modalities/COVCT/store >/dev/null"
check "covct stored all $NSRC" test "$(sqlite3 "$T/store/index.sqlite" 'select count(*) from instances')" -eq "$NSRC"

# Wait for the results to come back to Orthanc (analysis ~5-30 s).
nseries=1
for _ in $(seq 600); do
    nseries=$(curl -sf "$ORTHANC_URL/studies/$STUDY_ID" | json 'len(d["Series"])')
    [ "$nseries" -ge 4 ] && break
    sleep 0.5
done
check "results arrived in the same Orthanc study (series: $nseries)" test "$nseries" -ge 4
sleep 1
mods=$(for s in $(curl -sf "$ORTHANC_URL/studies/$STUDY_ID/series" | json '" ".join(x["ID"] for x in d)'); do
    curl -sf "$ORTHANC_URL/series/$s" | json 'd["MainDicomTags"].get("Modality", "")'
done | sort | tr '\n' ' ')
check "  ... CT, SEG, SR and key images (OT): $mods" test "$mods" = "CT OT SEG SR "
check "covct logged the job" grep -q "job 1: series .* done in .*sent to ORTHANC" "$T/serve.log"

# Validate what Orthanc holds.
mkdir -p "$T/back"
for s in $(curl -sf "$ORTHANC_URL/studies/$STUDY_ID/series" | json '" ".join(x["ID"] for x in d)'); do
    mod=$(curl -sf "$ORTHANC_URL/series/$s" | json 'd["MainDicomTags"].get("Modality", "")')
    [ "$mod" = CT ] && continue
    for i in $(curl -sf "$ORTHANC_URL/series/$s" | json '" ".join(d["Instances"])'); do
        curl -sf "$ORTHANC_URL/instances/$i/file" -o "$T/back/$mod-$i.dcm"
    done
done
for f in "$T"/back/*.dcm; do
    dciodvfy "$f" >"$f.vfy" 2>&1
    check "dciodvfy: no errors in $(basename "$f" | cut -c1-16)" bash -c "! grep -q '^Error' $f.vfy"
done
check "the study UID of every result is P001's" test \
    "$(for f in "$T"/back/*.dcm; do dcmdump -q "$f" | grep '^(0020,000d)'; done | grep -c "$STUDY_UID")" -eq "$(ls "$T"/back/*.dcm | wc -l)"
sr=$(ls "$T"/back/SR-*.dcm | head -1)
check "dsrdump reads the SR" bash -c "dsrdump -q $sr >/dev/null"
score=$(sqlite3 "$T/store/index.sqlite" "select result_dir from jobs where state = 'done'" | head -1)
total=$($PY -c "import json; print(json.load(open('$score/report.json'))['ct_severity_score'])")
check "  ... and it reports the severity score of report.json ($total)" bash -c \
    "dsrdump -q $sr | grep -i 'severity' | grep -q '\"$total\"\|$total'"
kill -TERM "$SERVER"; wait "$SERVER"; SERVER=""
if sanitizer_report "$T/serve.log"; then bad "sanitizer report in serve.log"; fi
[ "$FAIL" -gt 0 ] && { tail -20 "$T/serve.log"; cat "$T"/back/*.vfy | grep -i error | head; } >&2
finish
