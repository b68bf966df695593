#!/bin/bash
# covct segment: plumbing with a small untrained U-Net (the fuzzing seed
# model): one output of each kind per image, same size as the input (read
# back by Pillow), errors that name the problem.  Whether the shipped,
# trained network segments well is scored by covct eval, not here.
. "$(dirname "$0")/lib.sh"
need "$PY"
imgs=$(data covid-semiseg-train/MultiClassInfection-Train/Imgs)
model="$COVCT_SOURCE_DIR/fuzz/corpus/model/tiny-unet.covctnn"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COVCT_BIN" segment --model "$model" -o "$tmp/out" "$imgs/0.jpg" "$imgs/1.jpg" "$imgs/2.jpg" >"$tmp/log" 2>&1
check "segment exits 0" [ $? -eq 0 ]
check "progress lines" grep -q "3 of 3 images segmented" "$tmp/log"
"$PY" - "$imgs" "$tmp/out" <<'PYEOF'
import sys
from PIL import Image
src, out = sys.argv[1:3]
ok = True
for stem in ("0", "1", "2"):
    size = Image.open(f"{src}/{stem}.jpg").size
    for suffix in ("", "_ggo", "_consolidation"):
        im = Image.open(f"{out}/{stem}{suffix}.png")
        if im.size != size or im.mode != "L":
            print("bad", stem + suffix, im.size, im.mode, "want", size)
            ok = False
    # A 2-class model: ground glass and consolidation maps stay empty.
    if Image.open(f"{out}/{stem}_ggo.png").getextrema() != (0, 0):
        print("ggo map not empty for a 2-class model")
        ok = False
sys.exit(0 if ok else 1)
PYEOF
check "three maps per image, input size, 8-bit grey" [ $? -eq 0 ]

"$COVCT_BIN" segment --model "$tmp/none.covctnn" -o "$tmp/o2" "$imgs/0.jpg" >"$tmp/log" 2>&1
check "missing model refused" [ $? -eq 1 ]
check "missing model named" grep -q "cannot load the segmentation network: .*none.covctnn" "$tmp/log"
echo "not an image" >"$tmp/bad.png"
"$COVCT_BIN" segment --model "$model" -o "$tmp/o3" "$tmp/bad.png" "$imgs/0.jpg" >"$tmp/log" 2>&1
check "a bad image fails the run" [ $? -eq 1 ]
check "the bad image is named" grep -q "bad.png" "$tmp/log"
check "the good image is still done" [ -s "$tmp/o3/0.png" ]
"$COVCT_BIN" segment -o "$tmp/o4" >"$tmp/log" 2>&1
check "no input is a usage error" [ $? -eq 2 ]
"$COVCT_BIN" segment "$imgs/0.jpg" --bogus >"$tmp/log" 2>&1
check "unknown option is a usage error" [ $? -eq 2 ]
# covct model: what the file is; the card updated, the weights kept.
"$COVCT_BIN" model "$model" >"$tmp/m.txt" 2>&1
check "model info" grep -q "U-Net, 2 level(s), 1 base channels" "$tmp/m.txt"
check "model card shown" grep -q "fuzzing seed" "$tmp/m.txt"
echo '{"licence": "test only", "data": "replaced"}' >"$tmp/card.json"
"$COVCT_BIN" model "$model" --card "$tmp/card.json" -o "$tmp/m2.covctnn" >/dev/null 2>&1
check "card update exits 0" [ $? -eq 0 ]
"$COVCT_BIN" model "$tmp/m2.covctnn" >"$tmp/m2.txt" 2>&1
check "card field added" grep -q '"licence":.*"test only"' "$tmp/m2.txt"
check "card field replaced" grep -q '"data":.*"replaced"' "$tmp/m2.txt"
"$COVCT_BIN" segment --model "$tmp/m2.covctnn" -o "$tmp/o5" "$imgs/0.jpg" >/dev/null 2>&1
check "same weights after a card update" cmp -s "$tmp/o5/0.png" "$tmp/out/0.png"
"$COVCT_BIN" model "$model" --infection-cut 60 -o "$tmp/m4.covctnn" >/dev/null 2>&1
check "infection cut exits 0" [ $? -eq 0 ]
"$COVCT_BIN" model "$tmp/m4.covctnn" >"$tmp/m4.txt" 2>&1
check "infection cut in the card" grep -q '"background_logit_offset":[[:space:]]*1.178' "$tmp/m4.txt"
"$COVCT_BIN" model "$model" --infection-cut 255 -o "$tmp/m5.covctnn" >"$tmp/log" 2>&1
check "infection cut 255 refused" [ $? -eq 2 ]
head -c 600 "$model" >"$tmp/cut.covctnn"
"$COVCT_BIN" model "$tmp/cut.covctnn" >"$tmp/m3.txt" 2>&1
check "truncated model refused" [ $? -eq 1 ]
check "truncated model explained" grep -q "truncated" "$tmp/m3.txt"
# The network that ships: it loads, says what it was trained on, under
# which terms, and how it cross-validated; covct segment uses it by default.
shipped="$COVCT_SOURCE_DIR/models/lesions-unet.covctnn"
"$COVCT_BIN" model "$shipped" >"$tmp/s.txt" 2>&1
check "shipped model loads" grep -q "U-Net, 4 level(s), 16 base channels" "$tmp/s.txt"
check "shipped model card: licence" grep -q "non-commercial" "$tmp/s.txt"
check "shipped model card: cross-validation" grep -q '"dice_mean"' "$tmp/s.txt"
# By default covct segment averages the shipped network and its two
# siblings (same recipe, seeds 2 and 3): each default map is the mean of
# the three networks' own maps (within a level: the maps are rounded).
"$COVCT_BIN" segment -o "$tmp/o6" "$imgs/0.jpg" >"$tmp/log6" 2>&1
check "segment uses the shipped networks by default" [ -s "$tmp/o6/0_ggo.png" ]
check "segment says it averages three networks" grep -q "3 networks" "$tmp/log6"
for s in 2 3; do
    "$COVCT_BIN" model "$COVCT_SOURCE_DIR/models/lesions-unet-seed$s.covctnn" >"$tmp/s$s.txt" 2>&1
    check "seed $s network loads" grep -q "U-Net, 4 level(s), 16 base channels" "$tmp/s$s.txt"
    check "seed $s card: licence" grep -q "non-commercial" "$tmp/s$s.txt"
    check "seed $s card: ensemble member" grep -q "ensemble member" "$tmp/s$s.txt"
done
for m in lesions-unet lesions-unet-seed2 lesions-unet-seed3; do
    "$COVCT_BIN" segment -q --model "$COVCT_SOURCE_DIR/models/$m.covctnn" -o "$tmp/o_$m" "$imgs/0.jpg"
done
check "default maps are the mean of the three networks' maps" "$PY" - "$tmp" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
t = sys.argv[1]
worst, spread = 0.0, 0
for suf in ("", "_ggo", "_consolidation"):
    ens = np.asarray(Image.open("%s/o6/0%s.png" % (t, suf)), float)
    one = [np.asarray(Image.open("%s/o_%s/0%s.png" % (t, m, suf)), float)
           for m in ("lesions-unet", "lesions-unet-seed2", "lesions-unet-seed3")]
    worst = max(worst, float(np.abs(ens - sum(one) / 3).max()))
    spread = max(spread, int(np.abs(one[0] - one[1]).max()))
print("largest difference from the mean: %.2f levels; networks differ by up to %d"
      % (worst, spread))
sys.exit(0 if worst <= 1.0 and spread > 2 else 1)
PYEOF
finish
