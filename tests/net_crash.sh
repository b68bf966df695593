#!/bin/bash
# covct serve under load and through a crash (issue 5's acceptance test),
# driven by dcmtk's storescu on loopback:
#  A. 8 concurrent associations of 250 instances each: all 2,000 are
#     stored and indexed, every indexed file parses as DICOM, carries the
#     UID of its row and holds the data set that was sent, byte for byte;
#     SIGTERM stops the server cleanly.
#  B. the same send, and kill -9 of the server in the middle (when 30 to
#     60 % are indexed), then a restart on the same folder (its recovery
#     runs: .open was left behind): every instance that got a Success
#     response (read from storescu's verbose log) is indexed, its file
#     parses and holds the data set sent.  Instances never acknowledged
#     may or may not be there (counted, not judged).  Then everything is
#     sent again: 2,000 instances, no duplicates (an identical resend
#     changes nothing).
# storescu -v logs, per file and in order (dcmtk 3.6.7):
#   I: Sending file: PATH
#   ...
#   I: Received Store Response (Success)
# and it sends one file at a time, so each response belongs to the last
# file named before it.
# dcmtk needs TCP_NODELAY=1 in the environment (see net_dcmtk.sh).
# KILL_AT=N: kill the server once N instances are indexed (default 800).
. "$(dirname "$0")/lib.sh"
need echoscu storescu dcmdump sqlite3
COVCT=${COVCT_BIN:-build/covct}
export TCP_NODELAY=1
export LC_ALL=C # sort and comm agree
NSCU=8
PER=250
TOTAL=$((NSCU * PER))
KILL_AT=${KILL_AT:-800}
T=$(mktemp -d)
SERVER=""
SCUS=""
cleanup() {
    [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null
    for p in $SCUS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap "echo kept $T" EXIT
TAB=$(printf '\t')
START=$SECONDS

# start_server STORE: covct serve on a free port; sets SERVER and PORT.
start_server() {
    rm -f "$T/port"
    "$COVCT" serve --data "$1" --dicom-port 0 --port-file "$T/port" \
        --ae COVCT 2>>"$T/serve.log" &
    SERVER=$!
    for _ in $(seq 300); do
        [ -s "$T/port" ] && break
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    PORT=$(cat "$T/port" 2>/dev/null)
    [ -n "$PORT" ]
}
stop_server() {
    kill -TERM "$SERVER"
    wait "$SERVER"
    local rc=$?
    SERVER=""
    return $rc
}
count() { sqlite3 -cmd ".timeout 5000" "$1/index.sqlite" "$2"; }

# send_all VERBOSE LOGPREFIX: the 8 folders over 8 concurrent
# associations (calling AE SCU1..SCU8), in the background; sets SCUS.
send_all() {
    SCUS=""
    for i in $(seq $NSCU); do
        storescu $1 -aec COVCT -aet "SCU$i" +sd +r 127.0.0.1 "$PORT" \
            "$T/send/$i" >"$T/$2$i.log" 2>&1 &
        SCUS="$SCUS $!"
    done
}
# wait_all: waits for SCUS; sets FAILED to how many exited non-zero.
wait_all() {
    FAILED=0
    for p in $SCUS; do wait "$p" || FAILED=$((FAILED + 1)); done
    SCUS=""
}

# The data set of a Part 10 file (after its meta information, whose length
# is the UL value at byte 140, PS3.10 7.1) compared between the file sent
# and the file stored, for every row of an index dump (UID TAB PATH).
cat >"$T/same.py" <<'EOF'
import struct, sys
sent = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[1]))
store, rows = sys.argv[2], sys.argv[3]
def dataset(p):
    b = open(p, "rb").read()
    if b[128:132] != b"DICM" or b[132:136] != b"\x02\x00\x00\x00":
        return None
    return b[144 + struct.unpack("<I", b[140:144])[0]:]
for l in open(rows):
    uid, rel = l.rstrip("\n").split("\t")
    try:
        ok = uid in sent and dataset(store + "/" + rel) == dataset(sent[uid])
    except OSError:
        ok = False
    if ok:
        print(uid)
    else:
        print("different or unreadable: %s %s" % (uid, rel), file=sys.stderr)
EOF
# uids_of FILE...: "PATH TAB SOPInstanceUID" for each file dcmdump parses
# whole (a file that does not parse prints no UID).
uids_of() {
    dcmdump -q +F +P SOPInstanceUID "$@" 2>/dev/null | awk '
        /^# dcmdump \([0-9]+\/[0-9]+\): / { sub(/^# dcmdump \([0-9]+\/[0-9]+\): /, ""); p = $0; next }
        /^\(0008,0018\) UI \[/ { u = $0; sub(/^[^[]*\[/, "", u); sub(/\].*/, "", u); print p "\t" u }'
}
# verify STORE NAME: every row of the index against its file: the file
# parses, carries the row's UID and holds the data set sent.  Writes
# T/NAME.idx (UID TAB PATH, sorted) and T/NAME.ok (UIDs that passed,
# sorted); sets NIDX and NOK.
verify() {
    count "$1" "select sop_uid, path from instances" | tr '|' "$TAB" |
        sort >"$T/$2.idx"
    NIDX=$(wc -l <"$T/$2.idx")
    cut -f2 "$T/$2.idx" | (cd "$1" && xargs -r sh -c 'dcmdump -q +F +P SOPInstanceUID "$@" 2>/dev/null' sh) |
        awk '
        /^# dcmdump \([0-9]+\/[0-9]+\): / { sub(/^# dcmdump \([0-9]+\/[0-9]+\): /, ""); p = $0; next }
        /^\(0008,0018\) UI \[/ { u = $0; sub(/^[^[]*\[/, "", u); sub(/\].*/, "", u); print u "\t" p }' |
        sort >"$T/$2.parsed"
    # rows whose file parsed with the row's UID, then data set identical
    comm -12 "$T/$2.idx" "$T/$2.parsed" >"$T/$2.rows"
    $PY "$T/same.py" "$T/sent.tsv" "$1" "$T/$2.rows" 2>"$T/$2.diff" |
        sort >"$T/$2.ok"
    NOK=$(wc -l <"$T/$2.ok")
    if [ "$NOK" -ne "$NIDX" ]; then
        echo "$2: rows that fail (file missing, unparsable, another UID, other data set):" >&2
        comm -23 "$T/$2.idx" "$T/$2.parsed" | head -5 >&2
        head -5 "$T/$2.diff" >&2
    fi
}

# ---- 2,000 instances: two phantoms of 1,000 slices, 8 folders of 250 ----
"$COVCT" phantom -o "$T/ph1" --spacing 1.4 --slice 0.3 --seed 1 >/dev/null 2>&1 &
g1=$!
"$COVCT" phantom -o "$T/ph2" --spacing 1.4 --slice 0.3 --seed 2 >/dev/null 2>&1
g2=$?
wait $g1
g1=$?
check "two phantoms written" test "$g1/$g2" = 0/0
n=0
for f in "$T"/ph1/dicom/*.dcm "$T"/ph2/dicom/*.dcm; do
    d="$T/send/$((n / PER + 1))"
    [ -d "$d" ] || mkdir -p "$d"
    # ph1/dicom/IM00001.dcm -> send/K/ph1_IM00001.dcm
    p=${f#"$T/"}
    mv "$f" "$d/${p%%/*}_${f##*/}"
    n=$((n + 1))
done
check "$TOTAL instances ($n)" test "$n" -eq "$TOTAL"
# UID TAB PATH of every instance sent
for i in $(seq $NSCU); do uids_of "$T/send/$i"/*.dcm; done |
    awk -F'\t' '{ print $2 "\t" $1 }' | sort >"$T/sent.tsv"
check "$TOTAL distinct SOP Instance UIDs" \
    test "$(cut -f1 "$T/sent.tsv" | sort -u | wc -l)" -eq "$TOTAL"
cut -f1 "$T/sent.tsv" >"$T/sent.uids"
echo "instances ready after $((SECONDS - START)) s"

# ---- A: 8 concurrent associations, no crash ------------------------------
t0=$SECONDS
check "A: covct serve starts" start_server "$T/A"
send_all "" a
wait_all
TA=$((SECONDS - t0))
check "A: all $NSCU storescu exit 0 ($FAILED failed)" test "$FAILED" -eq 0
check "A: $TOTAL instances indexed ($(count "$T/A" 'select count(*) from instances'))" \
    test "$(count "$T/A" 'select count(*) from instances')" -eq "$TOTAL"
check "A: no duplicates" test "$(count "$T/A" 'select count(*) from duplicates')" -eq 0
# The files are read once the server has stopped: a file is written just
# after its instance is acknowledged (docs/internals/store.md), and the
# last ones may still be on their way when storescu exits.
check "A: SIGTERM: clean exit" stop_server
verify "$T/A" A
check "A: the indexed UIDs are the ones sent" cmp -s <(cut -f1 "$T/A.idx") "$T/sent.uids"
check "A: every indexed file parses, carries its UID, holds the data set sent ($NOK of $NIDX)" \
    test "$NOK" -eq "$NIDX"
check "A: no .open marker after a clean stop" test ! -e "$T/A/.open"
rm -rf "$T/A"

# ---- B: the same, kill -9 in the middle, restart -------------------------
t0=$SECONDS
check "B: covct serve starts" start_server "$T/B"
send_all -v b
# Poll the index (a reader beside the server: WAL) until KILL_AT
# instances are in, or every sender is done, or 5 minutes passed.
AT=0
alive=$NSCU
deadline=$((SECONDS + 300))
while [ "$alive" -gt 0 ] && [ "$SECONDS" -lt "$deadline" ]; do
    AT=$(count "$T/B" 'select count(*) from instances' 2>/dev/null || echo 0)
    [ "${AT:-0}" -ge "$KILL_AT" ] && break
    alive=0
    for p in $SCUS; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    sleep 0.05
done
alive=0
for p in $SCUS; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
kill -9 "$SERVER"
wait "$SERVER" 2>/dev/null
SERVER=""
wait_all
check "B: server killed in the middle ($AT of $TOTAL indexed at the last poll, $alive senders running)" \
    test "$alive" -gt 0 -a "$AT" -lt "$TOTAL"
check "B: senders failed ($FAILED of $NSCU)" test "$FAILED" -gt 0
check "B: .open left behind" test -e "$T/B/.open"
# The files that got a Success response.
cat "$T"/b*.log | awk '
    /^I: Sending file: / { f = substr($0, length("I: Sending file: ") + 1); next }
    /Received Store Response \(Success\)/ { if (f != "") print f; f = ""; next }
    /Received Store Response/ { other++ }
    END { if (other) print other " responses other than Success" > "/dev/stderr" }' |
    sort >"$T/acked.paths"
ACKED=$(wc -l <"$T/acked.paths")
NSUCCESS=$(cat "$T"/b*.log | grep -c 'Received Store Response (Success)')
check "B: one file per Success response in the logs ($ACKED files, $NSUCCESS responses)" \
    test "$ACKED" -gt 0 -a "$ACKED" -eq "$(sort -u "$T/acked.paths" | wc -l)" -a \
    "$ACKED" -eq "$NSUCCESS"
awk -F'\t' 'NR == FNR { a[$1]; next } $2 in a { print $1 }' \
    "$T/acked.paths" "$T/sent.tsv" | sort >"$T/acked.uids"
check "B: each acknowledged file has a known UID" \
    test "$(wc -l <"$T/acked.uids")" -eq "$ACKED"

check "B: restart on the same folder" start_server "$T/B"
check "B: recovery ran" grep -q "was not closed cleanly" "$T/serve.log"
check "B: ... and finished" grep -q "recovery done" "$T/serve.log"
check "B: echoscu: Success after the restart" \
    echoscu -aet ECHOSCU -aec COVCT 127.0.0.1 "$PORT"
check "B: no staging file left in tmp/" test -z "$(find "$T/B/tmp" -type f)"
verify "$T/B" B
MISSING=$(comm -23 "$T/acked.uids" <(cut -f1 "$T/B.idx") | wc -l)
if [ "$MISSING" -gt 0 ]; then
    echo "acknowledged but not indexed after the restart:" >&2
    comm -23 "$T/acked.uids" <(cut -f1 "$T/B.idx") |
        awk -F'\t' 'NR == FNR { a[$1]; next } $1 in a' - "$T/sent.tsv" | head >&2
fi
check "B: every acknowledged instance indexed ($((ACKED - MISSING)) of $ACKED)" \
    test "$MISSING" -eq 0
BAD=$(comm -23 "$T/acked.uids" "$T/B.ok" | wc -l)
check "B: every acknowledged file parses and holds the data set sent ($((ACKED - BAD)) of $ACKED)" \
    test "$BAD" -eq 0
check "B: every indexed file too, acknowledged or not ($NOK of $NIDX)" \
    test "$NOK" -eq "$NIDX"
UNACKED=$(comm -13 "$T/acked.uids" <(cut -f1 "$T/B.idx") | wc -l)
RECOVERED=$(sed -n 's/.*recovery done: [0-9]* files checked, \([0-9]*\) indexed.*/\1/p' "$T/serve.log" | tail -1)
check "B: no duplicates" test "$(count "$T/B" 'select count(*) from duplicates')" -eq 0

# Everything again: what is there is a no-op, the rest is stored.
send_all "" r
wait_all
check "B: resend: all $NSCU storescu exit 0 ($FAILED failed)" test "$FAILED" -eq 0
check "B: SIGTERM: clean exit" stop_server
verify "$T/B" R
check "B: resend: $TOTAL instances ($NIDX)" test "$NIDX" -eq "$TOTAL"
check "B: resend: the indexed UIDs are the ones sent" cmp -s <(cut -f1 "$T/R.idx") "$T/sent.uids"
check "B: resend: no duplicates ($(count "$T/B" 'select count(*) from duplicates'))" \
    test "$(count "$T/B" 'select count(*) from duplicates')" -eq 0
check "B: resend: no file under duplicates/" test -z "$(ls -A "$T/B/duplicates")"
check "B: resend: every indexed file parses and holds the data set sent ($NOK of $NIDX)" \
    test "$NOK" -eq "$NIDX"
TB=$((SECONDS - t0))
if sanitizer_report "$T/serve.log"; then bad "sanitizer report in serve.log"; cat "$T/serve.log" >&2; fi

echo "A: $TOTAL sent over $NSCU associations in ${TA} s"
echo "B: killed at $AT indexed; acknowledged $ACKED, indexed after restart" \
    "$((ACKED - MISSING + UNACKED)) ($((ACKED - MISSING)) acknowledged," \
    "$UNACKED not acknowledged; recovery indexed ${RECOVERED:-?} files);" \
    "after the resend $NIDX; ${TB} s"
echo "total $((SECONDS - START)) s"
finish
