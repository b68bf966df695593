#!/bin/bash
# covct benchmarks, each side by side with a peer in the same run:
#  1. header parsing: `covct dump --no-utf8` vs dcmtk's `dcmdump` over the
#     same files, one process each, output to /dev/null;
#  2. full decoding of COVID-CT-MD (JPEG Lossless): covct in one process vs
#     dcmtk's dcmdjpeg (one process per file, as dcmtk has no batch mode;
#     covct is also timed one process per file for a like-for-like ratio);
#  3. DICOM folder to NIfTI for P001: `covct volume` vs dcm2niix.
# Run from the repository root after `make`: bench/run.sh [BUILD_DIR]
set -u
BUILD=${1:-build}
COVCT="$BUILD/covct"
DATA=${COVCT_SHARED_DATA:-../shared/data}
REPS=${REPS:-3}
[ -x "$COVCT" ] || { echo "bench: build first (make)" >&2; exit 1; }
[ -d "$DATA/covid-ct-md" ] || { echo "bench: $DATA/covid-ct-md missing" >&2; exit 1; }
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

# Files: all COVID-CT-MD slices and every conformance file dcmtk parses.
find "$DATA/covid-ct-md" -name '*.dcm' | sort >"$tmp/ctmd"
awk -F'\t' -v r="$DATA/dicom-conformance" 'NR>1 && $14=="ok" {print r "/" $1}' \
    "$DATA/dicom-conformance/MANIFEST.tsv" >"$tmp/conf"
cat "$tmp/ctmd" "$tmp/conf" >"$tmp/all"
nfiles=$(wc -l <"$tmp/all")
mb=$(xargs -d '\n' du -cb <"$tmp/all" | tail -1 | awk '{printf "%.1f", $1/1048576}')

echo "== 1. header parsing + listing, $nfiles files ($mb MB), best of $REPS"
t_dcm=$(best xargs -a "$tmp/all" -d "\n" dcmdump -q)
t_cov=$(best xargs -a "$tmp/all" -d "\n" "$COVCT" dump --no-utf8)
printf "  dcmdump      %7.3f s  %8.1f files/s\n" "$t_dcm" "$(echo "$nfiles $t_dcm" | awk '{print $1/$2}')"
printf "  covct dump   %7.3f s  %8.1f files/s\n" "$t_cov" "$(echo "$nfiles $t_cov" | awk '{print $1/$2}')"
echo "  ratio covct/dcmdump throughput: $(ratio "$t_dcm" "$t_cov")x"

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

echo "== 4. covct analyze end to end (wall time, peak memory), best of $REPS"
for c in P001 cap001 normal001; do
    b=""; mem=0
    for _ in $(seq "$REPS"); do
        /usr/bin/time -f "%e %M" -o "$tmp/t" "$COVCT" analyze "$DATA/covid-ct-md/$c" \
            -o "$tmp/an-$c" -q >/dev/null 2>&1
        read -r t m <"$tmp/t"
        b=$(echo "$t ${b:-999999}" | awk '{print ($1<$2)?$1:$2}')
        [ "$m" -gt "$mem" ] && mem=$m
    done
    printf "  %-10s %6.2f s  peak %5.0f MB\n" "$c" "$b" "$(echo "$mem" | awk '{print $1/1024}')"
done
