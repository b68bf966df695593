#!/bin/bash
# covct eval against an independent peer (tests/eval_peer.py: scikit-learn
# for the fixed-threshold metrics, a short numpy version of the Inf-Net
# protocol, splitmix64 + numpy.percentile for the bootstrap): synthetic
# maps and masks with every edge case, soft maps made from the real
# covid-semiseg-train masks (binary, and the 3-class masks with --class),
# every number of the JSON compared to 1e-6; then the error messages.
. "$(dirname "$0")/lib.sh"
semiseg=$(data covid-semiseg-train) || exit $?
need "$PY"
if ! "$PY" -c 'import numpy, PIL, sklearn' 2>/dev/null; then
    msg="numpy, Pillow or scikit-learn missing for $PY (Debian: python3-numpy python3-pil python3-sklearn)"
    if [ "${CI:-}" = true ]; then echo "FAIL: $msg" >&2; exit 1; fi
    echo "SKIP: $msg" >&2; exit 77
fi
peer="$PY $(dirname "$0")/eval_peer.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gt_bin="$semiseg/LungInfection-Train/Doctor-label/GT"
gt_mc="$semiseg/MultiClassInfection-Train/GT"

# run NAME ARGS...: covct eval, stdout in $tmp/NAME.out, stderr in
# $tmp/NAME.err, exit status in $rc; a sanitizer report is a failure.
run() {
    n=$1; shift
    "$COVCT_BIN" eval "$@" >"$tmp/$n.out" 2>"$tmp/$n.err"
    rc=$?
    if sanitizer_report "$tmp/$n.err"; then bad "$n: sanitizer report"; cat "$tmp/$n.err" >&2; fi
}
# agree NAME PRED GT [OPTIONS]: covct eval --json, then the peer checks it.
agree() {
    n=$1 pred=$2 gt=$3; shift 3
    run "$n" "$pred" "$gt" --json "$tmp/$n.json" "$@"
    check "$n: covct eval exits 0" [ "$rc" -eq 0 ]
    [ "$rc" -eq 0 ] || cat "$tmp/$n.err" >&2
    check "$n: every number agrees with the peer" $peer check "$pred" "$gt" "$tmp/$n.json" "$@"
}
# json FILE EXPR: EXPR (Python, the document in d) is true.
json() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"; }
# says NAME TEXT: stderr of run NAME contains TEXT.
says() { grep -qF -- "$2" "$tmp/$1.err" || { echo "stderr of $1:" >&2; cat "$tmp/$1.err" >&2; false; }; }

check "synthetic data written" $peer make-synth "$tmp/s"
check "real-mask predictions written" $peer make-real "$semiseg" "$tmp/r"

# Synthetic: soft maps, a partial value range, constant 0/77/255 maps, a
# 0/255 and a 0/1 mask, empty masks, a mask covering the whole image, a
# 1-pixel image, a JPEG mask, different sizes.
agree synth "$tmp/s/pred" "$tmp/s/gt" -v
check "synth: empty masks are listed apart" grep -q "2 with an empty mask left out" "$tmp/synth.out"
check "synth: per-image table with --verbose" grep -qE '^  6 .*\(empty mask\)' "$tmp/synth.out"
check "synth: warns about the JPEG mask" says synth "1 ground-truth mask is not 0/255 only"
check "synth: warns about the 0/1 prediction" says synth "pred/10.png): the fixed threshold 128"
check "synth: notes.txt ignored" json "$tmp/synth.json" "d['counts']['prediction_files_ignored'] == 1"
agree synth128 "$tmp/s/pred" "$tmp/s/gt" --gt-threshold 128 --bootstrap 300 --seed 12345
agree synth_noboot "$tmp/s/pred" "$tmp/s/gt" --bootstrap 0
check "--bootstrap 0: no intervals printed" sh -c "! grep -q 'CI' '$tmp/synth_noboot.out'"

# Real masks of covid-semiseg-train (50 slices): binary, then the
# multi-class masks with --class (slices without that class have an empty
# mask and are left out).
agree real "$tmp/r/pred" "$gt_bin"
agree class1 "$tmp/r/pred" "$gt_mc" --class 1 --bootstrap 500 --seed 7
agree class2 "$tmp/r/pred" "$gt_mc" --class 2 --bootstrap 500 --seed 7
check "class2: slices without consolidation left out" json "$tmp/class2.json" "d['counts']['empty_ground_truth'] > 0"

# Errors: each names the files and what is wrong, exit 1, no JSON.
e="$tmp/s/err"
run size "$e/size/pred" "$e/size/gt" --json "$tmp/size.json"
check "size: exit 1" [ "$rc" -eq 1 ]
check "size: names the files and both sizes" says size "$e/size/pred/a.png is 12 x 10 pixels but its ground truth $e/size/gt/a.png is 14 x 10"
check "size: no JSON written" [ ! -e "$tmp/size.json" ]
run missing "$e/missing/pred" "$e/missing/gt"
check "missing: exit 1" [ "$rc" -eq 1 ]
check "missing: prediction without mask named" says missing "no ground truth in $e/missing/gt for these predictions (1): b.png"
check "missing: mask without prediction named" says missing "no prediction in $e/missing/pred for these ground-truth masks (1): c.jpg"
run empty "$e/empty" "$tmp/s/gt"
check "empty folder: exit 1" [ "$rc" -eq 1 ]
check "empty folder: message" says empty "the prediction folder $e/empty has no PNG or JPEG file (.png, .jpg, .jpeg); it holds only other files"
run nodir "$e/does-not-exist" "$tmp/s/gt"
check "missing folder: exit 1" [ "$rc" -eq 1 ]
check "missing folder: message" says nodir "cannot open the prediction folder $e/does-not-exist: No such file or directory"
run dup "$e/missing/pred" "$e/dup/gt"
check "two masks for one image: exit 1" [ "$rc" -eq 1 ]
check "two masks for one image: message" says dup "has two files for image 'a': a.jpg and a.png; keep one"
run allempty "$e/allempty/pred" "$e/allempty/gt"
check "only empty masks: exit 1" [ "$rc" -eq 1 ]
check "only empty masks: message" says allempty "no ground-truth mask has infection"
run seg "$e/seg/pred" "$e/seg/gt"
check "covct segment's extra maps: exit 1" [ "$rc" -eq 1 ]
check "covct segment's extra maps: hint" says seg "score one kind with --pred-suffix"
agree seg_ggo "$e/seg/pred" "$e/seg/gt" --pred-suffix _ggo
run jpegclass "$e/jpegclass/pred" "$e/jpegclass/gt" --class 1
check "--class with a JPEG mask: exit 1" [ "$rc" -eq 1 ]
check "--class with a JPEG mask: message" says jpegclass "$e/jpegclass/gt/a.jpg"

# Command line.
run noargs
check "no folders: exit 2" [ "$rc" -eq 2 ]
run badboot "$tmp/s/pred" "$tmp/s/gt" --bootstrap lots
check "bad --bootstrap: exit 2" [ "$rc" -eq 2 ]
check "bad --bootstrap: message" says badboot "--bootstrap takes a whole number of resamples from 0 to 100000, not 'lots'"
run both "$tmp/s/pred" "$tmp/s/gt" --class 1 --gt-threshold 128
check "--class with --gt-threshold: exit 2" [ "$rc" -eq 2 ]
"$COVCT_BIN" eval --help >"$tmp/help.out"
check "--help exits 0" [ $? -eq 0 ]
check "--help documents the edge cases" grep -q "Precision with no predicted pixel is 0" "$tmp/help.out"
finish
