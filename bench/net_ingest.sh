#!/bin/bash
# DICOM ingest (bench/run.sh section 6): N synthetic 512 x 512 CT instances
# (covct phantom, explicit VR little endian, 0.5 MB each) sent by dcmtk's
# storescu over 1 association (one storescu, all files) and over 4 (four
# storescu at once, a quarter of the files each), in the same run, to
#  - covct serve (fresh --data folder: files + SQLite index; an instance is
#    acknowledged once it is on disk and indexed),
#  - Orthanc (scripts/orthanc-temp.sh: a private instance, default SQLite
#    index and file storage, no plugins),
#  - dcmtk's storescp -od DIR (single process, the default: it serves one
#    association at a time; writes files only, no index), and for 4
#    associations also storescp --fork (one process per association).
# Time: from the start of the storescu(s) to the end of the last one.  The
# instances received are then counted (covct: its index; Orthanc: REST
# /statistics; storescp: files written) and must equal N.
# Every receiver gets a fresh store for every run, all stores on one file
# system (BENCH_WORK), each run a new one (kept until the end: see
# KEEP_STORES); before each run `sync` is run and the files are read once
# (cat > /dev/null), so every receiver starts with the same warm page
# cache for the files sent and no dirty pages.  Each
# measurement is run REPS times, alternating receivers; the best is shown.
# Usage: bench/net_ingest.sh [BUILD_DIR]
# Environment:
#   N           instances (2000: two phantom series of 1000; N=200 for a
#               smoke run: two series of 100, same image size)
#   REPS        runs per measurement, the best is reported (3)
#   ASSOCS      association counts ("1 4")
#   BENCH_CACHE where generated instances are kept between runs
#               ($BUILD/bench-cache)
#   BENCH_WORK  where the receivers store (a temporary folder in $BUILD)
set -u
BUILD=${1:-build}
COVCT="$BUILD/covct"
N=${N:-2000}
REPS=${REPS:-3}
ASSOCS=${ASSOCS:-1 4}
CACHE=${BENCH_CACHE:-$BUILD/bench-cache}
export TCP_NODELAY=1 # dcmtk 3.6.7 disables Nagle's algorithm only with this
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$COVCT" ] || { echo "bench: $COVCT missing (make)" >&2; exit 1; }
"$COVCT" serve --help >/dev/null 2>&1 ||
    { echo "bench: $COVCT has no 'serve' command (rebuild)" >&2; exit 1; }
for t in storescu storescp echoscu sqlite3 curl Orthanc /usr/bin/python3; do
    command -v "$t" >/dev/null 2>&1 ||
        { echo "bench: $t not installed (scripts/install-deps.sh) - section skipped" >&2; exit 0; }
done
case "$N" in ''|*[!0-9]*) echo "bench: N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 8 ] || { echo "bench: N must be at least 8" >&2; exit 1; }

# --- the instances, generated once and cached ---------------------------
# Two phantom series (seeds 1 and 2: distinct UIDs); N/2 slices each over
# the phantom's 300 mm (N=2000: --slice 0.3 gives 1000).
n1=$(( (N + 1) / 2 )); n2=$(( N / 2 ))
set_dir="$CACHE/ct512-n$N"
if [ ! -f "$set_dir/files.txt" ]; then
    echo "  generating $N instances under $set_dir (once) ..."
    rm -rf "$set_dir"; mkdir -p "$set_dir" || exit 1
    for seed in 1 2; do
        want_n=$n1; [ $seed = 2 ] && want_n=$n2
        slice=$(awk -v n="$want_n" 'BEGIN { printf "%.6g", 300 / n }')
        "$COVCT" phantom -o "$set_dir/s$seed" --spacing 0.7 --slice "$slice" --seed $seed \
            >"$set_dir/phantom$seed.log" 2>&1 ||
            { echo "bench: covct phantom failed:" >&2; cat "$set_dir/phantom$seed.log" >&2; exit 1; }
        rm -f "$set_dir/s$seed"/truth*.nii.gz
        have=$(find "$set_dir/s$seed/dicom" -name '*.dcm' | wc -l)
        [ "$have" -ge "$want_n" ] ||
            { echo "bench: phantom seed $seed gave $have slices, $want_n wanted" >&2; exit 1; }
        find "$set_dir/s$seed/dicom" -name '*.dcm' | sort | head -n "$want_n" >>"$set_dir/files.tmp"
    done
    mv "$set_dir/files.tmp" "$set_dir/files.txt"
fi
FILES="$set_dir/files.txt"
[ "$(wc -l <"$FILES")" -eq "$N" ] || { echo "bench: $FILES: not $N files (remove $set_dir)" >&2; exit 1; }
mb=$(xargs -a "$FILES" -d '\n' du -cb | tail -1 | awk '{printf "%.0f", $1/1048576}')

# --- where the receivers store ------------------------------------------
mkdir -p "$BUILD"
W=$(mktemp -d "${BENCH_WORK:-$BUILD}/bench-ingest.XXXXXX") || exit 1
W=$(cd "$W" && pwd)
RPID=""        # the running receiver
R_DIR=""       # its store
ORTHANC_DIR=""
stop_receiver() {
    if [ -n "$ORTHANC_DIR" ]; then
        "$HERE/../scripts/orthanc-temp.sh" stop "$ORTHANC_DIR" 2>/dev/null
        ORTHANC_DIR=""
    elif [ -n "$RPID" ]; then
        kill -TERM "$RPID" 2>/dev/null
        for _ in $(seq 300); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RPID" 2>/dev/null
        wait "$RPID" 2>/dev/null
    fi
    RPID=""
    [ -n "$R_DIR" ] && [ "$KEEP_STORES" = no ] && rm -rf "$R_DIR"
    R_DIR=""
}
cleanup() { stop_receiver; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_echo() { # wait_echo AET PORT: until the receiver answers C-ECHO
    for _ in $(seq 300); do
        echoscu -aet BENCH -aec "$1" 127.0.0.1 "$2" >/dev/null 2>&1 && return 0
        kill -0 "$RPID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_receiver KIND: sets RPID, R_DIR, AEC, PORT; the store is new.
RUN_NO=0
start_receiver() {
    RUN_NO=$((RUN_NO + 1))
    R_DIR="$W/store-$1-$RUN_NO"
    rm -rf "$R_DIR"
    case "$1" in
    covct)
        AEC=COVCT
        "$COVCT" serve --data "$R_DIR" --dicom-port 0 --port-file "$W/covct.port" \
            --ae COVCT --bind 127.0.0.1 --no-analysis 2>>"$W/covct.log" &
        RPID=$!
        for _ in $(seq 300); do [ -s "$W/covct.port" ] && break; sleep 0.1; done
        PORT=$(cat "$W/covct.port" 2>/dev/null); rm -f "$W/covct.port"
        [ -n "$PORT" ] || { echo "bench: covct serve did not start:" >&2; tail "$W/covct.log" >&2; return 1; } ;;
    orthanc)
        local out
        out=$(ORTHANC_KEEP=$([ "$KEEP_STORES" = yes ] && echo 1 || echo 0) \
              "$HERE/../scripts/orthanc-temp.sh" start --dir "$W" --aet ORTHANC) || return 1
        eval "$out" # sets ORTHANC_PID and the others
        # shellcheck disable=SC2153
        RPID=$ORTHANC_PID; AEC=$ORTHANC_AET; PORT=$ORTHANC_DICOM_PORT
        R_DIR="" ;; # removed by orthanc-temp.sh stop
    storescp|storescp-fork)
        AEC=STORESCP
        mkdir -p "$R_DIR"
        PORT=$(free_port)
        local fork=""; [ "$1" = storescp-fork ] && fork=--fork
        storescp $fork -aet STORESCP -od "$R_DIR" "$PORT" >>"$W/storescp.log" 2>&1 &
        RPID=$! ;;
    esac
    wait_echo "$AEC" "$PORT" || { echo "bench: $1 does not answer C-ECHO" >&2; return 1; }
}
received() { # instances the running receiver has
    case "$1" in
    covct) sqlite3 "$R_DIR/index.sqlite" 'select count(*) from instances' 2>/dev/null ;;
    orthanc) curl -sf "$ORTHANC_URL/statistics" | sed -n 's/.*"CountInstances" *: *\([0-9]*\).*/\1/p' ;;
    storescp*) find "$R_DIR" -type f | wc -l ;;
    esac
}
peak_rss_mb() { # VmHWM of the receiver process, MB ("-" for storescp --fork)
    [ "$1" = storescp-fork ] && { echo -; return; }
    awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$RPID/status" 2>/dev/null || echo -
}

# The transfer syntax the receiver accepted for the C-STORE of one file.
probe_ts() {
    storescu -d -aet BENCH -aec "$AEC" 127.0.0.1 "$PORT" "$(head -1 "$FILES")" >"$W/probe.log" 2>&1 ||
        { echo "storescu-failed"; return; }
    local pc
    pc=$(sed -n '/INCOMING DIMSE MESSAGE/,/END DIMSE/s/.*Presentation Context ID *: *\([0-9]*\).*/\1/p' \
         "$W/probe.log" | head -1)
    grep -A4 "Context ID: *$pc (Accepted)" "$W/probe.log" |
        sed -n 's/.*Accepted Transfer Syntax: *=*//p' | head -1
}

# Stores are kept until the end of the section when the disk has room
# (about 1.5 GB per covct run with its journal, 1 GB per other run): a
# receiver started right after the previous one's store was removed pays
# for that deletion, not for its own work.  For a minute after 2,000
# files are deleted, ext4 without a journal (this test machine's) makes
# every file creation skip, one by one, the recently freed inodes of any
# inode-table block in the cache (fs/ext4/ialloc.c, recently_deleted),
# up to a millisecond per file while holding the folder's lock.  A
# server does not delete a whole store before each study.
runs_total=$(( REPS * (3 * $(echo $ASSOCS | wc -w) + 1) + 3 ))
need_mb=$(( runs_total * (mb + 600) + 4096 ))
avail_mb=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
KEEP_STORES=no
[ "${avail_mb:-0}" -gt "$need_mb" ] && KEEP_STORES=yes

# One run of KIND over A associations; sets R_T (seconds), R_GOT (instances
# received), R_RSS (peak RSS, MB) and R_RC (0, or storescu's exit status).
run_once() {
    local kind=$1 a=$2 i s e p
    R_T=0; R_GOT=0; R_RSS=-; R_RC=0
    rm -rf "$W/parts"; mkdir -p "$W/parts"
    for i in $(seq 0 $((a - 1))); do
        awk -v a="$a" -v i="$i" 'NR % a == i' "$FILES" >"$W/parts/$i"
    done
    sync
    xargs -a "$FILES" -d '\n' cat >/dev/null
    start_receiver "$kind" || { R_RC=1; stop_receiver; return; }
    local pids=()
    s=$(date +%s.%N)
    for i in $(seq 0 $((a - 1))); do
        mapfile -t part <"$W/parts/$i"
        storescu -aet BENCH -aec "$AEC" 127.0.0.1 "$PORT" "${part[@]}" >"$W/storescu.$i.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || R_RC=$?; done
    e=$(date +%s.%N)
    R_T=$(echo "$s $e" | awk '{printf "%.4f", $2 - $1}')
    R_GOT=$(received "$kind"); R_GOT=${R_GOT:-0}
    R_RSS=$(peak_rss_mb "$kind")
    [ "$R_RC" = 0 ] || cat "$W"/storescu.*.log >>"$W/storescu-failures.log"
    stop_receiver
}

KINDS="covct orthanc storescp"
label() {
    case "$1" in
    covct) echo "covct serve" ;;
    orthanc) echo "Orthanc $(Orthanc --version 2>/dev/null | sed -n '1s/^Orthanc //p')" ;;
    storescp) echo "storescp" ;;
    storescp-fork) echo "storescp --fork" ;;
    esac
}
dcmtk_v=$(storescu --version 2>/dev/null | sed -n 's/.*storescu v\([0-9.]*\).*/\1/p' | head -1)
echo "== 6. DICOM ingest: $N CT instances 512x512 ($mb MB, explicit VR little endian)"
echo "     sent with storescu (dcmtk ${dcmtk_v:-?}, TCP_NODELAY=1) over loopback, best of $REPS;"
echo "     stores on $(df -PT "$W" | awk 'NR == 2 {print $2 " (" $1 ")"}') under $W; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$KEEP_STORES" = yes ]; then
    echo "     every run writes a new store; all are removed at the end"
else
    echo "     NOTE: ${avail_mb} MB free, ${need_mb} MB needed to keep every store: each store is removed"
    echo "     before the next run, which then pays ext4's recently-deleted inode scan"
fi
awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
    echo "     WARNING: the machine is busy (load average above half the cores): numbers are not meaningful"

# How fast this disk takes synchronous writes of one instance's size
# (what covct's journal does for every instance before it answers):
# 512 MiB in 512 KiB writes, O_DIRECT + O_DSYNC, one stream.  Storage of
# virtual machines often slows after sustained writing (burst credits, host
# caches); printed before and after the runs, it tells a slow disk from a
# slow receiver.  storescp and Orthanc never sync, so they are not bound by
# it.  Prints MB/s.
disk_probe() {
    local f="$W/disk-probe" out
    out=$(LC_ALL=C dd if=/dev/zero of="$f" bs=512K count=1024 oflag=direct,dsync 2>&1 | tail -1)
    rm -f "$f"
    echo "$out" | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) ~ /^s,?$/) t = $i } END {
        if (t > 0) printf "%.0f", 512 * 1.048576 / t; else print "?" }'
}
DISK_BEFORE=$(disk_probe)
echo "     disk: ${DISK_BEFORE} MB/s of synchronous 512 KiB direct writes (dd oflag=direct,dsync) before the runs"

# Each receiver must accept the files' own transfer syntax.
for k in $KINDS; do
    start_receiver "$k" || exit 1
    ts=$(probe_ts)
    stop_receiver
    if [ "$ts" != LittleEndianExplicit ]; then
        echo "bench: $(label "$k") accepted '${ts:-?}', not explicit VR little endian" >&2
        exit 1
    fi
done
echo "     transfer syntax accepted by every receiver: explicit VR little endian"

declare -A T GOT RSS FAIL
for r in $(seq "$REPS"); do
    for a in $ASSOCS; do
        ks=$KINDS; [ "$a" -gt 1 ] && ks="$KINDS storescp-fork"
        for k in $ks; do
            run_once "$k" "$a"
            t=$R_T; got=$R_GOT; rss=$R_RSS; rc=$R_RC
            key="$k/$a"
            if [ "$rc" != 0 ] || [ "$got" != "$N" ]; then
                FAIL[$key]="${FAIL[$key]:-}run $r: storescu rc $rc, $got of $N received; "
                continue
            fi
            [ -z "${T[$key]:-}" ] || awk -v t="$t" -v b="${T[$key]}" 'BEGIN { exit !(t < b) }' &&
                T[$key]=$t
            GOT[$key]=$got
            if [ "$rss" != - ]; then
                [ "${RSS[$key]:-0}" = - ] || [ "$rss" -gt "${RSS[$key]:-0}" ] && RSS[$key]=$rss
            else
                RSS[$key]=-
            fi
        done
    done
done

ips() { awk -v n="$N" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
printf "  %-18s %6s %9s %12s %8s %10s %10s\n" receiver assocs "time s" instances/s MB/s received "peak RSS"
for a in $ASSOCS; do
    ks=$KINDS; [ "$a" -gt 1 ] && ks="$KINDS storescp-fork"
    for k in $ks; do
        key="$k/$a"
        if [ -n "${T[$key]:-}" ]; then
            printf "  %-18s %6d %9.3f %12s %8.0f %10s %10s\n" "$(label "$k")" "$a" "${T[$key]}" \
                "$(ips "${T[$key]}")" "$(awk -v m="$mb" -v t="${T[$key]}" 'BEGIN { print m / t }')" \
                "${GOT[$key]}" "${RSS[$key]}$([ "${RSS[$key]}" = - ] || echo " MB")"
        else
            printf "  %-18s %6d   FAILED\n" "$(label "$k")" "$a"
        fi
        [ -n "${FAIL[$key]:-}" ] && echo "      failures: ${FAIL[$key]}"
    done
done
for a in $ASSOCS; do
    c=${T[covct/$a]:-}
    [ -n "$c" ] || continue
    line="  $a association(s): covct/Orthanc"
    for k in orthanc storescp storescp-fork; do
        [ "$k" = storescp-fork ] && [ "$a" = 1 ] && continue
        o=${T[$k/$a]:-}
        name=$k; [ "$k" = orthanc ] && name=""
        [ -n "$name" ] && line="$line, covct/$name"
        if [ -n "$o" ]; then
            line="$line $(awk -v o="$o" -v c="$c" 'BEGIN { printf "%.2fx", o / c }')"
        else
            line="$line -"
        fi
    done
    echo "$line (instances/s)"
done
echo "  goal (issue): covct >= 3x Orthanc and >= storescp, on 1 and on 4 associations"
DISK_AFTER=$(disk_probe)
echo "  disk: ${DISK_BEFORE} MB/s of synchronous 512 KiB writes before the runs, ${DISK_AFTER} MB/s after;"
awk -v d="$DISK_AFTER" -v m="$mb" -v n="$N" 'BEGIN { if (d + 0 > 0) printf \
    "        at %s MB/s a receiver that syncs each instance before answering tops out near %.0f instances/s\n", d, d / (m / n) }'

if grep -qiE 'error|warn' "$W/covct.log" 2>/dev/null; then
    echo "  covct serve logged $(grep -ciE 'error|warn' "$W/covct.log") warning/error line(s), e.g.:"
    grep -iE 'error|warn' "$W/covct.log" | head -3 | sed 's/^/    /'
fi
if [ -s "$W/storescu-failures.log" ]; then
    echo "  storescu failures, first lines:"
    grep -E '^[EF]:' "$W/storescu-failures.log" | head -5 | sed 's/^/    /'
fi
