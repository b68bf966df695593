#!/bin/bash
# Section 7 of bench/run.sh: the web service against Orthanc with its
# DICOMweb plugin (Debian orthanc-dicomweb), same data, same run, wrk
# (Debian) as the load generator:
#   a. WADO-RS series metadata of a 600-slice series (synthetic phantom,
#      0.5 mm slices): the FIRST request on each server (nothing cached:
#      covct's per-series metadata cache empty; covct's headers still on
#      disk, as its store writes with direct I/O), then covct's first
#      request after each of COLD_RUNS - 1 restarts (median), then repeated
#      requests (median of 20, curl: covct from its cache) and wrk
#      throughput at 4 connections; cold and warm ratios side by side.
#      Study metadata, first request, as before;
#   b. QIDO-RS over 10,000 studies (one small synthetic instance each,
#      made with pydicom): /dicom-web/studies?PatientName=P1*&limit=100
#      at 10 connections;
#   c. the worklist at 50 concurrent clients (wrk, p99 latency): one URL
#      and varied queries (bench/worklist.lua: q / from / to / limit /
#      offset, as many open pages ask); Orthanc has no worklist: its closest list,
#      /dicom-web/studies?limit=50, is measured beside it.
# Environment: N_STUDIES (10000), DUR (10 s per wrk run), COLD_RUNS (5).
# Orthanc's files are in the page cache (written through it); covct's are
# not until first read (direct I/O), see a.
# Prints one line per measurement with covct, Orthanc and the ratio.
set -u
BUILD=${1:-build}
COVCT="$BUILD/covct"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
N_STUDIES=${N_STUDIES:-10000}
DUR=${DUR:-10}
COLD_RUNS=${COLD_RUNS:-5}
PY=/usr/bin/python3
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
for t in wrk curl storescu Orthanc; do
    command -v "$t" >/dev/null || { echo "bench http: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -f "$PLUGIN" ] || { echo "bench http: $PLUGIN missing (orthanc-dicomweb)" >&2; exit 1; }
W=$(mktemp -d)
SERVER=""
cleanup() {
    [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    [ -n "${ORTHANC_DIR:-}" ] && orthanc_stop "$ORTHANC_DIR" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
# shellcheck source=../scripts/orthanc-temp.sh
. "$ROOT/scripts/orthanc-temp.sh"

echo "== web service vs Orthanc + DICOMweb plugin (wrk)"
echo "   making data: a 600-slice phantom series and $N_STUDIES one-instance studies"
"$COVCT" phantom -o "$W/ph" --slice 0.5 --noise 0 >/dev/null 2>&1
NSL=$(ls "$W/ph/dicom" | wc -l)
mkdir -p "$W/many"
$PY - "$W/ph/dicom" "$W/many" "$N_STUDIES" <<'PYEOF'
import os, sys, pydicom
from pydicom.uid import generate_uid
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = pydicom.dcmread(os.path.join(src, sorted(os.listdir(src))[0]))
ds.Rows = ds.Columns = 16
ds.PixelData = bytes(16 * 16 * 2)
for i in range(n):
    ds.PatientName = "P%05d^SYNTHETIC" % i
    ds.PatientID = "SYN%05d" % i
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["s%d" % i])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["r%d" % i])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["i%d" % i])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = "2020%02d%02d" % (1 + i % 12, 1 + i % 28)
    ds.save_as(os.path.join(out, "%05d.dcm" % i), write_like_original=False)
PYEOF

# covct
echo "long password for bench" | "$COVCT" user add bench --role administrator --password-stdin --data "$W/covct" >/dev/null
TOKEN=$("$COVCT" token create bench --data "$W/covct")
covct_start() {
    rm -f "$W/hport" "$W/dport"
    "$COVCT" serve --data "$W/covct" --dicom-port 0 --port-file "$W/dport" --http-port 0 \
        --http-port-file "$W/hport" --no-analysis -q 2>>"$W/serve.log" &
    SERVER=$!
    for _ in $(seq 300); do [ -s "$W/hport" ] && [ -s "$W/dport" ] && break; sleep 0.1; done
    CP=$(cat "$W/hport"); CD=$(cat "$W/dport")
    C_URL=http://127.0.0.1:$CP
    # Each of the 4 worker threads opens its database handle on its first
    # request: done here, so that a "first request" below measures the
    # metadata path, not the start.
    [ -n "${TOKEN:-}" ] && for _ in 1 2 3 4 5 6 7 8; do
        curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$C_URL/dicom-web/studies?limit=1"
    done
}
covct_stop() {
    kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    SERVER=""
}
covct_start
# Orthanc with DICOMweb
orthanc_start --aet ORTHANC --plugin "$PLUGIN" >/dev/null || exit 1
# Debian's dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1: with
# small instances every one then waits for a delayed ACK (~45 ms each).
echo "   sending the data to both (storescu, TCP_NODELAY=1)"
for dest in "COVCT 127.0.0.1 $CD" "ORTHANC 127.0.0.1 $ORTHANC_DICOM_PORT"; do
    set -- $dest
    TCP_NODELAY=1 storescu -aec "$1" +sd +r "$2" "$3" "$W/ph/dicom" >/dev/null 2>&1 || echo "   storescu to $1 failed" >&2
    TCP_NODELAY=1 storescu -aec "$1" +sd +r "$2" "$3" "$W/many" >/dev/null 2>&1 || echo "   storescu to $1 failed" >&2
done
AUTH="Authorization: Bearer $TOKEN"
STUDY=$(dcmdump -q +P StudyInstanceUID "$(ls -d "$W"/ph/dicom/* | head -1)" | sed 's/.*\[\(.*\)\].*/\1/')
SERIES=$(dcmdump -q +P SeriesInstanceUID "$(ls -d "$W"/ph/dicom/* | head -1)" | sed 's/.*\[\(.*\)\].*/\1/')
O_URL=$ORTHANC_URL

# median of 20 single requests, in ms
median_ms() { # URL [HEADER]
    for _ in $(seq 20); do
        curl -s -o /dev/null -w '%{time_total}\n' ${2:+-H "$2"} "$1"
    done | sort -n | sed -n 10p | awk '{printf "%.1f", $1 * 1000}'
}
# wrk: requests/s and p99 (ms)
wrk_run() { # CONNS URL [HEADER]
    wrk -t2 -c"$1" -d"${DUR}s" --latency ${3:+-H "$3"} "$2" 2>&1 |
        awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p=$2}
             END {u=substr(p, length(p)-1); v=p+0; if (u=="us") v/=1000; else if (u ~ /[0-9]s$/ || substr(p,length(p))=="s" && u!="ms") v*=1000; printf "%s %.1f", rps, v}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.1fx", a / b; else print "-" }'; }

# one request's time in ms
once_ms() { # URL [HEADER]
    curl -s -o /dev/null -w '%{time_total}' ${2:+-H "$2"} "$1" | awk '{printf "%.1f", $1 * 1000}'
}
median() { sort -n | awk '{v[NR] = $1} END {printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
SPATH="/dicom-web/studies/$STUDY/series/$SERIES/metadata"
META_O="$O_URL$SPATH"
# Series metadata, first request: nothing has asked for this series yet on
# either server.  covct's store writes instances with direct I/O, so this
# first request also reads the headers from disk; Orthanc's files went
# through the page cache.  covct again after each of COLD_RUNS - 1
# restarts (its metadata cache is in memory; the headers are now in the
# page cache, as Orthanc's are).
cold_o=$(once_ms "$META_O")
arr_c=$(once_ms "$C_URL$SPATH" "$AUTH")
cold_list=""
for _ in $(seq 2 "$COLD_RUNS"); do
    covct_stop; covct_start
    cold_list="$cold_list $(once_ms "$C_URL$SPATH" "$AUTH")"
done
cold_c=$(printf '%s\n' $cold_list | median)
META_C="$C_URL$SPATH"
n_c=$(curl -s -H "$AUTH" "$META_C" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))')
n_o=$(curl -s "$META_O" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "   series metadata: $NSL slices sent; covct returns $n_c objects, Orthanc $n_o"
m_c=$(median_ms "$META_C" "$AUTH"); m_o=$(median_ms "$META_O")
echo "   series metadata, first request after arrival (covct from disk): covct $arr_c ms, Orthanc $cold_o ms ($(ratio "$cold_o" "$arr_c") faster; target < 100 ms and >= 5x)"
echo "   series metadata, first request after a restart: covct $cold_c ms (median of$cold_list), Orthanc first $cold_o ms ($(ratio "$cold_o" "$cold_c") faster)"
echo "   series metadata, median of 20:    covct $m_c ms (cached), Orthanc $m_o ms ($(ratio "$m_o" "$m_c") faster)"
echo "   series metadata, Orthanc repeated vs covct first after arrival / restart: $(ratio "$m_o" "$arr_c") / $(ratio "$m_o" "$cold_c") faster"
st_c=$(once_ms "$C_URL/dicom-web/studies/$STUDY/metadata" "$AUTH")
st_o=$(once_ms "$O_URL/dicom-web/studies/$STUDY/metadata")
echo "   study metadata, first request:    covct $st_c ms, Orthanc $st_o ms ($(ratio "$st_o" "$st_c") faster)"
read -r r_c p_c <<<"$(wrk_run 4 "$META_C" "$AUTH")"
read -r r_o p_o <<<"$(wrk_run 4 "$META_O")"
echo "   series metadata, wrk 4 conns:      covct $r_c req/s (p99 $p_c ms), Orthanc $r_o req/s (p99 $p_o ms) ($(ratio "$r_c" "$r_o"))"

Q="/dicom-web/studies?PatientName=P1*&limit=100"
read -r r_c p_c <<<"$(wrk_run 10 "$C_URL$Q" "$AUTH")"
read -r r_o p_o <<<"$(wrk_run 10 "$O_URL$Q")"
echo "   QIDO-RS $N_STUDIES studies, wrk 10: covct $r_c req/s (p99 $p_c ms), Orthanc $r_o req/s (p99 $p_o ms) ($(ratio "$r_c" "$r_o"))"

read -r r_c p_c <<<"$(wrk_run 50 "$C_URL/api/worklist" "$AUTH")"
read -r r_o p_o <<<"$(wrk_run 50 "$O_URL/dicom-web/studies?limit=50")"
echo "   worklist, one URL, wrk 50 clients: covct $r_c req/s, p99 $p_c ms (the same page each time); Orthanc /dicom-web/studies?limit=50: $r_o req/s, p99 $p_o ms"
out=$(N_STUDIES=$N_STUDIES wrk -t2 -c50 -d"${DUR}s" --latency -H "$AUTH" -s "$HERE/worklist.lua" "$C_URL" 2>&1)
read -r r_v p50_v p99_v bad_v to_v <<<"$(printf '%s\n' "$out" | awk '
    function ms(p,  v) { v = p + 0; if (p ~ /us$/) v /= 1000; else if (p ~ /[0-9]s$/) v *= 1000; return v }
    /Requests\/sec/ {rps = $2} /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
    /Non-2xx/ {bad = $NF} /Socket errors/ {sub(/.*timeout /, ""); to = $1}
    END {printf "%s %.1f %.1f %d %d", rps, p50, p99, bad, to}')"
# (wrk leaves requests that time out, after 2 s, out of its percentiles:
# they are counted apart)
echo "   worklist, varied queries (bench/worklist.lua), wrk 50 clients: covct $r_v req/s, p50 $p50_v ms, p99 $p99_v ms (target < 200 ms), $bad_v non-2xx, ${to_v:-0} timeouts"
