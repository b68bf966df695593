#!/bin/bash
# covct's DICOM node against dcmtk's tools (programs nobody here wrote),
# on loopback:
#  - echoscu gets Success from covct serve; a wrong called AE and a
#    calling AE off the allow-list are rejected;
#  - storescu sends the synthetic phantom series and compressed files from
#    the conformance set: every instance is indexed and its data set is
#    stored byte for byte (the file meta information is covct's);
#  - a second identical send changes nothing; a different instance under
#    an existing SOP Instance UID is kept under duplicates/;
#  - covct echo and covct send against dcmtk's storescp;
#  - SIGTERM stops the server cleanly, and a restart sees every instance.
# dcmtk 3.6.7 needs TCP_NODELAY=1 in the environment to disable Nagle's
# algorithm (else about 20x slower); covct always disables it.
. "$(dirname "$0")/lib.sh"
need echoscu storescu storescp findscu movescu getscu dcmodify sqlite3 dcmdjpls dcmdrle dcmdjpeg gdcmconv
COVCT=${COVCT_BIN:-build/covct}
CONF=$(data dicom-conformance/pydicom-2.3.1-debian)
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

# Start covct serve on a free port; sets SERVER and PORT.
start_server() {
    rm -f "$T/port"
    "$COVCT" serve --data "$T/store" --dicom-port 0 --port-file "$T/port" \
        --ae COVCT --no-analysis "$@" 2>>"$T/serve.log" &
    SERVER=$!
    for _ in $(seq 100); do
        [ -s "$T/port" ] && break
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
count() { sqlite3 "$T/store/index.sqlite" "$1"; }

"$COVCT" phantom -o "$T/ph" --slice 10 >/dev/null 2>&1
NPH=$(ls "$T/ph/dicom" | wc -l)
check "phantom written" test "$NPH" -gt 10

P2=$(free_port)
check "covct serve starts" start_server --allow ECHOSCU --allow STORESCU \
    --allow COVCT-TEST@127.0.0.1 --allow FINDSCU --allow MOVESCU --allow GETSCU \
    --peer STORESCP@127.0.0.1:"$P2"
check "echoscu: Success" echoscu -aet ECHOSCU -aec COVCT 127.0.0.1 "$PORT"
check "echoscu: wrong called AE rejected" \
    bash -c "! echoscu -aet ECHOSCU -aec NOTCOVCT 127.0.0.1 $PORT 2>$T/rj.txt"
check "  ... and the reason is named" grep -qi "called AE title not recognized" "$T/rj.txt"
check "echoscu: calling AE off the allow-list rejected" \
    bash -c "! echoscu -aet INTRUDER -aec COVCT 127.0.0.1 $PORT 2>$T/rj2.txt"
check "  ... and the reason is named" grep -qi "calling AE title not recognized" "$T/rj2.txt"

# The phantom series over one association.
check "storescu: phantom series" storescu -aet STORESCU -aec COVCT +sd +r \
    127.0.0.1 "$PORT" "$T/ph/dicom"
check "all $NPH phantom instances indexed" \
    test "$(count 'select count(*) from instances')" -eq "$NPH"
check "one series, one study, one patient" test \
    "$(count 'select count(*) from series')/$(count 'select count(*) from studies')/$(count 'select count(*) from patients')" = 1/1/1
check "patient indexed by name" test \
    "$(count 'select patient_name from patients')" = SYNTHETIC^PHANTOM
same=0
for f in "$T"/ph/dicom/*.dcm; do
    uid=$(dcmdump -q +P SOPInstanceUID "$f" | sed 's/.*\[\(.*\)\].*/\1/')
    rel=$(count "select path from instances where sop_uid='$uid'")
    [ -n "$rel" ] && [ "$(dataset_sha "$f")" = "$(dataset_sha "$T/store/$rel")" ] &&
        same=$((same + 1))
done
check "every stored data set identical to the sent one ($same of $NPH)" test "$same" -eq "$NPH"
check "stored files carry the sender's AE title" \
    bash -c "dcmdump -q +P SourceApplicationEntityTitle $T/store/$(count 'select path from instances limit 1') | grep -q STORESCU"

# Compressed and other encodings from the conformance set, as they are
# (storescu proposes a compressed transfer syntax only when told which).
mkdir -p "$T/conf"
sent=0
for spec in 693_J2KI.dcm:-xw GDCMJ2K_TextGBR.dcm:-xv SC_rgb_dcmtk_+eb+cr.dcm:-xy \
            MR_small_jpeg_ls_lossless.dcm:-xt image_dfl.dcm:-xd rtplan.dcm:-xi \
            CT_small.dcm:-x= test-SR.dcm:-x=; do
    f=${spec%%:*}
    cp "$CONF/$f" "$T/conf/"
    storescu -R "${spec#*:}" -aet STORESCU -aec COVCT 127.0.0.1 "$PORT" \
        "$T/conf/$f" >>"$T/storescu.log" 2>&1 && sent=$((sent + 1))
done
check "storescu: 8 files in JPEG 2000, JPEG, JPEG-LS, deflated, implicit VR; RT plan, SR ($sent sent)" test "$sent" -eq 8
check "8 more instances indexed" \
    test "$(count 'select count(*) from instances')" -eq $((NPH + 8))
check "JPEG 2000 kept in its transfer syntax" test \
    "$(count "select count(*) from instances where transfer_syntax_uid='1.2.840.10008.1.2.4.90' or transfer_syntax_uid='1.2.840.10008.1.2.4.91'")" -ge 1
# storescu itself re-encodes what it sends: it drops group lengths and
# trailing padding and may change sequence length encoding.  Compare the
# dumps without those.
semantic() {
    dcmdump -q "$1" | grep -av -e '^(0002' -e '^#' -e '^ *(....,0000)' \
        -e '(fffc,fffc)' -e '(fffe,e00d)' -e '(fffe,e0dd)' |
        sed -e 's/(Sequence with [^)]*)/(Sequence)/' -e 's/(Item with [^)]*)/(Item)/' \
            -e 's/  *# *[0-9u/l]*, / # /'
}
same=0
for f in "$T"/conf/*.dcm; do
    uid=$(dcmdump -q +P SOPInstanceUID "$f" | sed 's/.*\[\(.*\)\].*/\1/')
    rel=$(count "select path from instances where sop_uid='$uid'")
    [ -n "$rel" ] && dcmdump -q "$T/store/$rel" >/dev/null 2>&1 &&
        [ "$(semantic "$f")" = "$(semantic "$T/store/$rel")" ] &&
        same=$((same + 1))
done
check "dcmdump of each stored conformance file equals the original's ($same of 8)" test "$same" -eq 8

# Duplicates: the same files again change nothing; a modified file with a
# known SOP Instance UID is kept aside.
check "storescu: same series again, from another calling AE" storescu -aet ECHOSCU -aec COVCT +sd +r \
    127.0.0.1 "$PORT" "$T/ph/dicom"
check "no new rows" test "$(count 'select count(*) from instances')" -eq $((NPH + 8))
cp "$T/conf/CT_small.dcm" "$T/changed.dcm"
dcmodify -nb -m "PatientName=CHANGED^AFTER" "$T/changed.dcm"
check "storescu: changed instance, same UID" storescu -aet STORESCU -aec COVCT \
    127.0.0.1 "$PORT" "$T/changed.dcm"
check "kept under duplicates/" test "$(count 'select count(*) from duplicates')" -eq 1
check "the stored one is unchanged" bash -c \
    "dcmdump -q +P PatientName $T/store/$(count "select path from instances where sop_uid=(select sop_uid from duplicates)") | grep -vq CHANGED"

# Bad input: a data set that is not DICOM gets an error status, the
# association and the server go on.
printf 'DICM is not enough' > "$T/junk.bin"
check "C-STORE of garbage data refused, server alive" bash -c \
    "! storescu -aet STORESCU -aec COVCT 127.0.0.1 $PORT $T/junk.bin >/dev/null 2>&1; echoscu -aet ECHOSCU -aec COVCT 127.0.0.1 $PORT"

# covct as requestor against dcmtk's storescp.
mkdir -p "$T/scp"
storescp -aet STORESCP -od "$T/scp" "$P2" >"$T/scp.log" 2>&1 &
SCP=$!
sleep 0.5
check "covct echo to storescp" "$COVCT" echo STORESCP@127.0.0.1:$P2 --ae COVCT-TEST
check "covct send of the phantom to storescp" "$COVCT" send STORESCP@127.0.0.1:$P2 \
    "$T/ph/dicom" --ae COVCT-TEST -q
check "storescp wrote all $NPH" test "$(ls "$T/scp" | wc -l)" -eq "$NPH"
kill "$SCP"; wait "$SCP" 2>/dev/null; SCP=""
check "covct send to a closed port fails clearly" bash -c \
    "! $COVCT send STORESCP@127.0.0.1:$P2 $T/ph/dicom 2>$T/closed.txt && grep -q 'cannot connect' $T/closed.txt"
# Query/Retrieve with findscu, movescu, getscu.
find() { findscu -aet FINDSCU -aec COVCT "$@" 127.0.0.1 "$PORT" 2>&1; }
STUDY=$(count "select study_uid from studies s join patients p on p.patient_id = s.patient_id where p.patient_name = 'SYNTHETIC^PHANTOM'")
check "C-FIND study root, STUDY level, by patient name wildcard (case-insensitive)" bash -c \
    "$(declare -f find); PORT=$PORT; find -S -k QueryRetrieveLevel=STUDY -k 'PatientName=synth*' -k StudyInstanceUID -k NumberOfStudyRelatedInstances | grep -q 'StudyInstanceUID.*$STUDY\|$STUDY'"
out=$(find -S -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY" -k NumberOfStudyRelatedInstances -k ModalitiesInStudy)
check "  ... counts its $NPH instances and modality CT" bash -c \
    "echo '$out' | grep -q 'IS \[$NPH\]' && echo '$out' | grep -q 'ModalitiesInStudy' && echo '$out' | grep -q 'CS \[CT\]'"
nstudies=$(count 'select count(*) from studies')
check "C-FIND all studies: $nstudies answers" test "$(find -S -k QueryRetrieveLevel=STUDY -k StudyInstanceUID | grep -c 'I: (0020,000d)')" -eq "$nstudies"
check "C-FIND date range that excludes everything: no answer" test \
    "$(find -S -k QueryRetrieveLevel=STUDY -k StudyDate=19000101-19000102 -k StudyInstanceUID | grep -c 'I: (0020,000d)')" -eq 0
check "C-FIND patient root, PATIENT level" bash -c \
    "$(declare -f find); PORT=$PORT; find -P -k QueryRetrieveLevel=PATIENT -k PatientID=SYNTH-PHANTOM -k PatientName | grep -q 'SYNTHETIC^PHANTOM'"
check "C-FIND IMAGE level: $NPH instances of the phantom series" test \
    "$(find -S -k QueryRetrieveLevel=IMAGE -k StudyInstanceUID="$STUDY" -k SeriesInstanceUID="$(count "select series_uid from series where study_uid='$STUDY'")" -k SOPInstanceUID | grep -c 'I: (0008,0018)')" -eq "$NPH"
check "C-FIND without a level: refused (A900/C000), server alive" bash -c \
    "$(declare -f find); PORT=$PORT; find -v -S -k PatientName | grep -q 'Final Find Response (Error' && echoscu -aet ECHOSCU -aec COVCT 127.0.0.1 $PORT"
mkdir -p "$T/moved" "$T/got"
storescp -aet STORESCP -od "$T/moved" "$P2" >"$T/scp-move.log" 2>&1 &
SCP=$!
sleep 0.5
check "C-MOVE of the phantom study to storescp (a configured peer)" \
    movescu -S -aet MOVESCU -aec COVCT -aem STORESCP -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID="$STUDY" 127.0.0.1 "$PORT"
check "  ... storescp received all $NPH" test "$(ls "$T/moved" | wc -l)" -eq "$NPH"
kill "$SCP"; wait "$SCP" 2>/dev/null; SCP=""
movescu -S -aet MOVESCU -aec COVCT -aem NOBODY -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID="$STUDY" 127.0.0.1 "$PORT" >"$T/move-unknown.txt" 2>&1
check "C-MOVE to an unknown AE: Move Destination Unknown (A801)" grep -qi "MoveDestinationUnknown\|a801" "$T/move-unknown.txt"
check "C-GET of the phantom study" getscu -S -aet GETSCU -aec COVCT -od "$T/got" \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY" 127.0.0.1 "$PORT"
check "  ... getscu received all $NPH" test "$(ls "$T/got" | wc -l)" -eq "$NPH"
uids() { for f in "$1"/*; do dcmdump -q +P SOPInstanceUID "$f"; done | sed 's/.*\[\(.*\)\].*/\1/' | sort; }
check "  ... the same $NPH SOP instances as the phantom" test "$(uids "$T/got")" = "$(uids "$T/ph/dicom")"

# covct send to a peer that takes only uncompressed data (storescp's
# default): compressed files are decompressed and sent in explicit VR
# little endian; their pixels must equal those of the reference decoders
# (dcmtk's dcmdjpls, dcmdrle, dcmdjpeg; GDCM's gdcmconv for JPEG 2000).
mkdir -p "$T/tc/in" "$T/tc/got" "$T/tc/ref"
for f in 693_J2KI.dcm MR_small_jpeg_ls_lossless.dcm SC_rgb_rle.dcm \
         SC_rgb_dcmtk_+eb+cr.dcm JPGExtended.dcm; do
    cp "$CONF/$f" "$T/tc/in/"
done
dcmdjpls "$T/tc/in/MR_small_jpeg_ls_lossless.dcm" "$T/tc/ref/jls.dcm"
dcmdrle "$T/tc/in/SC_rgb_rle.dcm" "$T/tc/ref/rle.dcm"
dcmdjpeg "$T/tc/in/SC_rgb_dcmtk_+eb+cr.dcm" "$T/tc/ref/jpg.dcm"
dcmdjpeg "$T/tc/in/JPGExtended.dcm" "$T/tc/ref/jpgx.dcm"
gdcmconv --raw "$T/tc/in/693_J2KI.dcm" "$T/tc/ref/j2k.dcm"
storescp -aet PLAIN -od "$T/tc/got" "$P2" >"$T/scp-plain.log" 2>&1 &
SCP=$!
sleep 0.5
check "covct send of JPEG 2000, JPEG-LS, RLE, JPEG to an uncompressed-only peer" \
    "$COVCT" send PLAIN@127.0.0.1:"$P2" "$T/tc/in" --ae COVCT-TEST -q
kill "$SCP"; wait "$SCP" 2>/dev/null; SCP=""
check "  ... all arrived in explicit VR little endian" test \
    "$(for f in "$T"/tc/got/*; do dcmdump -q +P TransferSyntaxUID "$f"; done | grep -c LittleEndianExplicit)" -eq 5
check "  ... pixels identical to dcmtk's and GDCM's decoders" $PY - "$T/tc" <<'EOF2'
import glob, sys
import pydicom
d = sys.argv[1]
got = {pydicom.dcmread(f).SOPInstanceUID: f for f in glob.glob(d + "/got/*")}
ok = 0
for r in glob.glob(d + "/ref/*.dcm"):
    a = pydicom.dcmread(r)
    b = pydicom.dcmread(got[a.SOPInstanceUID])
    same = (a.PixelData == b.PixelData and a.BitsAllocated == b.BitsAllocated
            and a.PhotometricInterpretation == b.PhotometricInterpretation)
    print(r, "identical" if same else "DIFFERENT", file=sys.stderr)
    ok += same
sys.exit(0 if ok == 5 else 1)
EOF2

# The documented config file: the example with this test's values.
sed -e "s|^data = .*|data = $T/store2|" -e "s|^dicom-port = .*|dicom-port = 0|" \
    -e "s|^allow = .*||" -e "s|^peer = PACS@.*|peer = PACS@127.0.0.1:$P2|" \
    -e "s|^peer = VIEWER.*||" "$(dirname "$0")/../docs/examples/covct.conf" >"$T/covct.conf"
"$COVCT" serve --config "$T/covct.conf" --port-file "$T/port2" --no-analysis 2>"$T/serve2.log" &
S2=$!
for _ in $(seq 100); do [ -s "$T/port2" ] && break; sleep 0.1; done
check "covct serve --config (docs/examples/covct.conf)" echoscu -aec COVCT 127.0.0.1 "$(cat "$T/port2")"
kill -TERM "$S2"; wait "$S2"
printf 'data = %s\nbogus = 1\n' "$T/store3" >"$T/bad.conf"
check "a config file with an unknown option is refused, naming the line" bash -c \
    "! $COVCT serve --config $T/bad.conf 2>$T/bad.txt && grep -q 'line 2' $T/bad.txt"

# covct echo to covct.
check "covct echo to covct serve" "$COVCT" echo COVCT@127.0.0.1:"$PORT" --ae COVCT-TEST

# Clean stop, restart: everything still there.
check "SIGTERM: clean exit" stop_server
check "  ... logged" grep -q "stopped;" "$T/serve.log"
check "no .open marker after a clean stop" test ! -e "$T/store/.open"
check "restart" start_server
check "  ... sees every instance" grep -q "$((NPH + 8)) instances in" "$T/serve.log"
check "one log line per association" grep -q "association 1 from ECHOSCU@127.0.0.1" "$T/serve.log"
stop_server
# What the peers read is in the site's audit log, in their names, and the
# log verifies.
"$COVCT" audit show --data "$T/store" >"$T/audit.txt"
check "C-FIND audited in the peer's name" grep -q "dicom:FINDSCU@127.0.0.1.*dicom.find" "$T/audit.txt"
check "C-MOVE audited" grep -q "dicom:MOVESCU@127.0.0.1.*dicom.retrieve" "$T/audit.txt"
check "C-GET audited with the instance count" grep -q "dicom:GETSCU@127.0.0.1.*dicom.retrieve.*\"results\":$NPH" "$T/audit.txt"
check "audit log intact" "$COVCT" audit verify --data "$T/store"
if sanitizer_report "$T/serve.log"; then bad "sanitizer report in serve.log"; cat "$T/serve.log" >&2; fi
finish
