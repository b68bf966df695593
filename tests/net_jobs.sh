#!/bin/bash
# covct serve's automatic analysis (issue 5), with dcmtk's tools as the
# scanner and as the PACS that receives the results:
#  - storescu sends the synthetic phantom; once nothing has arrived for
#    --settle seconds the series is analysed by a child `covct analyze`;
#  - the results (DICOM SEG, SR, key images) are stored (C-FIND finds them)
#    and sent to --send-results-to, where storescp receives them;
#  - series that are not chest CT get a 'skipped' job with the reason;
#  - kill -9 during an analysis, restart: the job is queued again and done;
#  - one log line per job.
. "$(dirname "$0")/lib.sh"
need storescu storescp findscu dcmdump sqlite3
if [ -n "${COVCT_DB:-}" ]; then need psql; fi
COVCT=${COVCT_BIN:-build/covct}
export TCP_NODELAY=1
T=$(mktemp -d)
SERVER=""
SCP=""
cleanup() {
    [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null
    [ -n "$SCP" ] && kill -9 "$SCP" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap "" EXIT
start_server() {
    rm -f "$T/port"
    "$COVCT" serve --data "$T/store" --dicom-port 0 --port-file "$T/port" \
        --ae COVCT --settle 1 --peer PACS@127.0.0.1:"$P2" \
        --send-results-to PACS "$@" 2>>"$T/serve.log" &
    SERVER=$!
    for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
    PORT=$(cat "$T/port" 2>/dev/null)
    [ -n "$PORT" ]
}
q() { sqlite3 "$T/store/index.sqlite" "$1" 2>/dev/null; }
# wait_for SQL VALUE SECONDS
wait_for() {
    for _ in $(seq $(($3 * 5))); do
        [ "$(q "$1")" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}

"$COVCT" phantom -o "$T/ph" --slice 10 >/dev/null 2>&1
NPH=$(ls "$T/ph/dicom" | wc -l)
P2=$(free_port)
mkdir -p "$T/pacs"
storescp -aet PACS -od "$T/pacs" "$P2" >"$T/pacs.log" 2>&1 &
SCP=$!

check "covct serve starts" start_server
check "storescu: phantom" storescu -aec COVCT +sd +r 127.0.0.1 "$PORT" "$T/ph/dicom"
SERIES=$(q "select series_uid from series where modality = 'CT'")
check "the series becomes a job and is analysed" \
    wait_for "select state from jobs where series_uid = '$SERIES'" done 120
check "  ... one log line for the job with its score" \
    grep -q "job 1: series $SERIES done in .*CT severity score" "$T/serve.log"
check "  ... report written" test -s "$T/store/results/$SERIES/report.json"
check "  ... its severity score kept for the worklist, as in the report" test \
    "$(q "select severity from jobs where series_uid = '$SERIES'")" = \
    "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["ct_severity_score"])' "$T/store/results/$SERIES/report.json")"
# The case database, with its backend's own client (net_jobs_pg runs
# everything against PostgreSQL: tests/with-postgres.sh sets COVCT_DB).
cq() {
    if [ -n "${COVCT_DB:-}" ]; then
        psql -q -X -t -A "$COVCT_DB" -c "$1" 2>/dev/null
    else
        sqlite3 "$T/store/covct.db" "$1" 2>/dev/null
    fi
}
check "  ... recorded in the case database with its $NPH instances" test \
    "$(cq "select count(*) from instances i join series s on s.id = i.series_id where s.series_uid = '$SERIES'")" = "$NPH"
check "  ... the AI's masks as drafts for the readers" test \
    "$(cq "select l.kind from image_labels l join series s on s.id = l.series_id where s.series_uid = '$SERIES' and l.status = 'ai-draft' and l.source_kind = 'model' and l.source like 'covct analyze%' order by l.kind" | paste -sd,)" = "lesions,lobes,lungs"
check "  ... in the service's name in the audit log" test \
    "$(cq "select count(*) from audit_log where actor = 'service:analysis' and action = 'label.save'")" = 3
check "SEG, SR and key images stored" test \
    "$(q "select group_concat(modality, ',') from (select modality from series where modality != 'CT' order by modality)")" = "OT,SEG,SR"
check "  ... and their series skipped with a reason" wait_for \
    "select count(*) from jobs where state = 'skipped' and reason like 'modality%not CT'" 3 30
NRES=$(q "select count(*) from instances i join series s on s.series_uid = i.series_uid where s.modality != 'CT'")
check "storescp (the PACS) received all $NRES results" bash -c \
    "for i in \$(seq 50); do [ \$(ls $T/pacs | wc -l) -ge $NRES ] && exit 0; sleep 0.2; done; exit 1"
check "  ... a SEG and an SR among them" bash -c \
    "dcmdump -q +P Modality $T/pacs/* | sort -u | tr -d '\n' | grep -q 'SEG.*SR\|SR.*SEG'"
STUDY=$(q "select study_uid from series where series_uid = '$SERIES'")
top_study() { for f in "$T"/pacs/*; do dcmdump -q "$f" | grep '^(0020,000d)'; done; }
check "  ... all in the source study" test "$(top_study | grep -c "$STUDY")" -eq "$NRES"
check "C-FIND finds the SEG series in the study" bash -c \
    "findscu -S -aec COVCT -k QueryRetrieveLevel=SERIES -k StudyInstanceUID=$STUDY -k Modality=SEG -k SeriesInstanceUID 127.0.0.1 $PORT 2>&1 | grep -q 'I: (0020,000e)'"

# kill -9 during an analysis: queued again at restart, then done.
"$COVCT" phantom -o "$T/ph2" --slice 10 --seed 2 >/dev/null 2>&1
check "storescu: a second phantom" storescu -aec COVCT +sd +r 127.0.0.1 "$PORT" "$T/ph2/dicom"
S2=$(q "select series_uid from series where modality = 'CT' and series_uid != '$SERIES'")
check "its analysis starts" wait_for "select state from jobs where series_uid = '$S2'" running 60
kill -9 "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=""
pkill -9 -f "covct analyze $T/store" 2>/dev/null
check "after kill -9 the job is still marked running" test "$(q "select state from jobs where series_uid = '$S2'")" = running
check "restart" start_server
check "  ... the job is queued again and done" \
    wait_for "select state from jobs where series_uid = '$S2'" done 120
check "  ... logged" grep -q "interrupted by the last stop queued again" "$T/serve.log"
check "  ... on its second attempt" test "$(q "select attempts from jobs where series_uid = '$S2'")" -eq 2
kill -TERM "$SERVER"; wait "$SERVER"; rc=$?; SERVER=""
check "SIGTERM: clean exit" test "$rc" -eq 0
if sanitizer_report "$T/serve.log"; then bad "sanitizer report in serve.log"; fi
[ "$FAIL" -gt 0 ] && tail -30 "$T/serve.log" >&2
finish
