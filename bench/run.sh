#!/bin/bash
# covct benchmarks, each side by side with a peer in the same run:
#  1. header parsing: `covct dump --no-utf8` vs dcmtk's `dcmdump` over the
#     same files, one process each, output to /dev/null;
#  2. full decoding of COVID-CT-MD (JPEG Lossless): covct in one process vs
#     dcmtk's dcmdjpeg (one process per file, as dcmtk has no batch mode;
#     covct is also timed one process per file for a like-for-like ratio);
#  3. DICOM folder to NIfTI for P001: `covct volume` vs dcm2niix;
#  4. `covct analyze` end to end (no peer: wall time and peak memory);
#  5. the U-Net's inference, covct (oneDNN) vs PyTorch with the same
#     weights, input and thread count (bench/bench_nn.c, bench/nn_torch.py;
#     logits compared), and the training time of one fold;
#  6. DICOM ingest: 2,000 synthetic 512x512 CT instances sent by dcmtk's
#     storescu over 1 and 4 associations to `covct serve`, to Orthanc
#     (scripts/orthanc-temp.sh) and to dcmtk's storescp
#     (bench/net_ingest.sh; N=200 for a smoke run);
#  7. the web service: DICOMweb series metadata (600 slices), QIDO-RS over
#     10,000 studies and the worklist at 50 clients, with wrk, against
#     Orthanc with its DICOMweb plugin (bench/http.sh).
# Run from the repository root after `make`: bench/run.sh [BUILD_DIR]
# Environment:
#   SECTIONS  which sections to run, e.g. SECTIONS="5" or "1 3" (all)
#   REPS      runs per measurement, the best is reported (3)
#   MODEL     section 5's model file (default models/lesions-unet.covctnn
#             if present, else an untrained U-Net of the same architecture
#             written by covct-bench-nn --init)
#   NN_RUNS   forwards per process in section 5, after one warm-up (5)
#   NN_THREADS  thread counts for section 5 ("1 $(nproc)")
#   PY        Python with PyTorch and numpy for section 5 (python3)
#   N, ASSOCS, BENCH_CACHE, BENCH_WORK  section 6 (bench/net_ingest.sh)
set -u
BUILD=${1:-build}
COVCT="$BUILD/covct"
DATA=${COVCT_SHARED_DATA:-../shared/data}
REPS=${REPS:-3}
SECTIONS=${SECTIONS:-1 2 3 4 5 6 7}
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
[ -x "$COVCT" ] || { echo "bench: build first (make)" >&2; exit 1; }
if want 1 || want 2 || want 3 || want 4; then
    [ -d "$DATA/covid-ct-md" ] || { echo "bench: $DATA/covid-ct-md missing" >&2; exit 1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

best() { # best wall time of REPS runs of "$@", in seconds
    local b=""
    for _ in $(seq "$REPS"); do
        local s e
        s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
        b=$(echo "$s $e ${b:-999999}" | awk '{t=$2-$1; print (t<$3)?t:$3}')
    done
    echo "$b"
}
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1/$2}'; }

if want 1 || want 2; then
    # Files: all COVID-CT-MD slices and every conformance file dcmtk parses.
    find "$DATA/covid-ct-md" -name '*.dcm' | sort >"$tmp/ctmd"
    awk -F'\t' -v r="$DATA/dicom-conformance" 'NR>1 && $14=="ok" {print r "/" $1}' \
        "$DATA/dicom-conformance/MANIFEST.tsv" >"$tmp/conf"
    cat "$tmp/ctmd" "$tmp/conf" >"$tmp/all"
    nfiles=$(wc -l <"$tmp/all")
    mb=$(xargs -d '\n' du -cb <"$tmp/all" | tail -1 | awk '{printf "%.1f", $1/1048576}')
fi

if want 1; then
    echo "== 1. header parsing + listing, $nfiles files ($mb MB), best of $REPS"
    t_dcm=$(best xargs -a "$tmp/all" -d "\n" dcmdump -q)
    t_cov=$(best xargs -a "$tmp/all" -d "\n" "$COVCT" dump --no-utf8)
    printf "  dcmdump      %7.3f s  %8.1f files/s\n" "$t_dcm" "$(echo "$nfiles $t_dcm" | awk '{print $1/$2}')"
    printf "  covct dump   %7.3f s  %8.1f files/s\n" "$t_cov" "$(echo "$nfiles $t_cov" | awk '{print $1/$2}')"
    echo "  ratio covct/dcmdump throughput: $(ratio "$t_dcm" "$t_cov")x"
fi

if want 2; then
    echo "== 2. full pixel decoding, COVID-CT-MD ($(wc -l <"$tmp/ctmd") files), best of $REPS"
    t_cov_in=$(best xargs -a "$tmp/ctmd" -d "\n" "$BUILD/bench/covct-bench-decode")
    dj() { while read -r f; do dcmdjpeg "$f" "$tmp/x.dcm"; done <"$tmp/ctmd"; }
    cv() { while read -r f; do "$COVCT" info "$f"; done <"$tmp/ctmd"; }
    t_dj=$(best dj)
    t_cv=$(best cv)
    printf "  dcmdjpeg, 1 process per file      %7.3f s\n" "$t_dj"
    printf "  covct info, 1 process per file    %7.3f s  ratio %sx\n" "$t_cv" "$(ratio "$t_dj" "$t_cv")"
    printf "  covct, all files in one process   %7.3f s  (%s slices/s)\n" "$t_cov_in" \
        "$(echo "$(wc -l <"$tmp/ctmd") $t_cov_in" | awk '{printf "%.0f", $1/$2}')"
fi

if want 3; then
    echo "== 3. P001 DICOM folder to NIfTI (.nii.gz), best of $REPS"
    t_vol=$(best "$COVCT" volume "$DATA/covid-ct-md/P001" -o "$tmp/p001.nii.gz" -q)
    printf "  covct volume  %7.3f s (%s threads)\n" "$t_vol" "$(nproc)"
    if command -v dcm2niix >/dev/null; then
        mkdir -p "$tmp/d2n"
        t_d2n=$(best dcm2niix -z y -o "$tmp/d2n" -f p001 "$DATA/covid-ct-md/P001")
        printf "  dcm2niix -z y %7.3f s  ratio %sx\n" "$t_d2n" "$(ratio "$t_d2n" "$t_vol")"
    else
        echo "  dcm2niix not installed (apt-get install dcm2niix) - no peer timing"
    fi
fi

if want 4; then
    echo "== 4. covct analyze end to end (wall time, peak memory), best of $REPS"
    echo "     (lesions by the network, the default; and by the density method)"
    for method in network density; do
        for c in P001 cap001 normal001; do
            b=""; mem=0
            for _ in $(seq "$REPS"); do
                /usr/bin/time -f "%e %M" -o "$tmp/t" "$COVCT" analyze "$DATA/covid-ct-md/$c" \
                    -o "$tmp/an-$c" -q --lesions "$method" >/dev/null 2>&1
                read -r t m <"$tmp/t"
                b=$(echo "$t ${b:-999999}" | awk '{print ($1<$2)?$1:$2}')
                [ "$m" -gt "$mem" ] && mem=$m
            done
            printf "  %-8s %-10s %6.2f s  peak %5.0f MB\n" "$method" "$c" "$b" \
                "$(echo "$mem" | awk '{print $1/1024}')"
        done
    done
fi

if want 5; then
    NN_RUNS=${NN_RUNS:-5}
    NN_THREADS=${NN_THREADS:-$(echo 1 "$(nproc)" | tr ' ' '\n' | sort -un | tr '\n' ' ')}
    PY=${PY:-python3}
    BNN="$BUILD/bench/covct-bench-nn"
    SLICES=148 # P001
    echo "== 5. U-Net inference, covct (oneDNN) vs PyTorch, same weights, same threads"
    [ -x "$BNN" ] || { echo "bench: $BNN missing (build the covct-bench-nn target)" >&2; exit 1; }
    model=${MODEL:-}
    shipped="$(dirname "$0")/../models/lesions-unet.covctnn"
    if [ -z "$model" ] && [ -f "$shipped" ]; then
        model=$shipped
    elif [ -z "$model" ]; then
        model="$tmp/untrained.covctnn"
        OMP_NUM_THREADS=1 "$BNN" --init "$model" 2>/dev/null ||
            { echo "bench: covct-bench-nn --init failed" >&2; exit 1; }
        echo "  model: untrained U-Net, depth 4, base 16, 3 classes (covct-bench-nn --init:"
        echo "         no models/lesions-unet.covctnn)"
    fi
    [ "$model" = "$tmp/untrained.covctnn" ] || echo "  model: $model"
    torch_ok=0
    "$PY" -c 'import torch, numpy' 2>/dev/null && torch_ok=1
    [ $torch_ok = 1 ] && echo "  peer: PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null), eval mode, no_grad"
    echo "  512x512 slice, 1 warm-up + $NN_RUNS forwards per process, $REPS processes per side"
    echo "  alternating; best forward reported (median of the best process in brackets)"
    echo "  covct = the inference plan (batch norm folded, ReLU fused, blocked layouts),"
    echo "  the path of covct segment and covct analyze"
    # best_of FILE: the "best B median M" line with the smallest B
    best_of() { sort -k2,2g "$1" | head -1; }
    parity=""
    for t in $NN_THREADS; do
        : >"$tmp/c.$t"; : >"$tmp/p.$t"; : >"$tmp/g.$t"
        for r in $(seq "$REPS"); do
            OMP_NUM_THREADS=$t "$BNN" --graph "$model" 512 "$NN_RUNS" \
                2>/dev/null >>"$tmp/g.$t" || { echo "bench: covct-bench-nn --graph failed" >&2; exit 1; }
            OMP_NUM_THREADS=$t "$BNN" "$model" 512 "$NN_RUNS" "$tmp/logits.f32" \
                2>/dev/null >>"$tmp/c.$t" || { echo "bench: covct-bench-nn failed" >&2; exit 1; }
            if [ $torch_ok = 1 ]; then
                out=$(OMP_NUM_THREADS=$t "$PY" "$(dirname "$0")/nn_torch.py" "$model" 512 "$NN_RUNS" "$t" \
                      "$tmp/logits.f32" 2>"$tmp/perr")
                rc=$?
                echo "$out" | grep '^best' >>"$tmp/p.$t"
                [ "$r" = 1 ] && parity="$parity  $t thread(s): $(echo "$out" | grep '^parity')"$'\n'
                [ $rc = 0 ] || { echo "  PARITY FAILURE ($t threads):"; cat "$tmp/perr"; }
            fi
        done
        read -r _ gb _ gm <<<"$(best_of "$tmp/g.$t")"
        printf "  %d thread(s): covct graph forward (training path) %7.3f s/slice (%.3f)\n" "$t" "$gb" "$gm"
        read -r _ cb _ cm <<<"$(best_of "$tmp/c.$t")"
        printf "  %d thread(s): covct   %7.3f s/slice (%.3f)  P001, %d slices: %6.1f s\n" \
            "$t" "$cb" "$cm" "$SLICES" "$(echo "$cb $SLICES" | awk '{print $1*$2}')"
        if [ $torch_ok = 1 ] && [ -s "$tmp/p.$t" ]; then
            read -r _ pb _ pm <<<"$(best_of "$tmp/p.$t")"
            printf "  %d thread(s): PyTorch %7.3f s/slice (%.3f)  P001, %d slices: %6.1f s  ratio PyTorch/covct %sx\n" \
                "$t" "$pb" "$pm" "$SLICES" "$(echo "$pb $SLICES" | awk '{print $1*$2}')" "$(ratio "$pb" "$cb")"
        fi
    done
    if [ $torch_ok = 1 ]; then
        printf "%s" "$parity"
    else
        echo "  PyTorch or numpy missing for $PY - no peer timing (apt-get install python3-torch)"
    fi

    # The network over a whole volume: covct analyze's lesion stage on P001
    # (every slice with lung, fitted into 352 x 352, the workers of
    # src/analysis/lesions-nn.c) against PyTorch running the same number of
    # 352 x 352 forwards one after the other with all cores.
    P001="$DATA/covid-ct-md/P001"
    echo "== 5a. the network over P001 (covct analyze's lesion stage vs PyTorch, $(nproc) cores)"
    if [ -d "$P001" ]; then
        cv=""
        for r in $(seq "$REPS"); do
            line=$(COVCT_DEBUG=1 "$COVCT" analyze "$P001" -o "$tmp/a5" -q 2>&1 |
                   grep 'lesions (network):')
            t=$(echo "$line" | sed -n 's/.* \([0-9.]*\) s in all.*/\1/p')
            n=$(echo "$line" | sed -n 's/.*network): \([0-9]*\) slices.*/\1/p')
            cv=$(echo "$t ${cv:-999999}" | awk '{print ($1<$2)?$1:$2}')
        done
        printf "  covct:   %d slices in %6.2f s (best of %d analyze runs; %s)\n" \
            "$n" "$cv" "$REPS" "$(echo "$line" | sed -n 's/.*on \(.*\), [0-9.]* s per.*/\1/p')"
        if [ $torch_ok = 1 ] && [ -n "$n" ]; then
            pt=$("$PY" "$(dirname "$0")/nn_torch.py" "$model" 352 "$n" "$(nproc)" 2>/dev/null |
                 sed -n 's/^total //p')
            printf "  PyTorch: %d forwards 352x352 in %6.2f s, %d threads  ratio PyTorch/covct %sx\n" \
                "$n" "$pt" "$(nproc)" "$(ratio "$pt" "$cv")"
        fi
    else
        echo "  $P001 missing - skipped"
    fi

    TRAIN="$DATA/covid-semiseg-train/MultiClassInfection-Train"
    echo "== 5b. training time for one fold (covct train --fold 1 --epochs 1, best of $REPS;"
    echo "       60 epochs extrapolated as 60 x one epoch, data loading included)"
    if [ -d "$TRAIN" ]; then
        for t in $NN_THREADS; do
            tt=$(best env OMP_NUM_THREADS="$t" "$COVCT" train --data "$TRAIN" \
                 -o "$tmp/fold1.covctnn" --fold 1 --epochs 1 -q)
            printf "  %d thread(s): 1 epoch %7.2f s  60 epochs (the default) ~%5.1f min\n" \
                "$t" "$tt" "$(echo "$tt" | awk '{print $1*60/60}')"
        done
    else
        echo "  $TRAIN missing - skipped"
    fi
fi

if want 6; then
    REPS=$REPS "$(dirname "$0")/net_ingest.sh" "$BUILD"
fi
if want 7; then
    "$(dirname "$0")/http.sh" "$BUILD"
fi
