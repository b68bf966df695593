#!/bin/bash
# covct train on the COVID-SemiSeg training slices with a tiny network:
# the loss falls, checkpoints are written, a run resumed from a
# checkpoint ends with exactly the model of an uninterrupted run, a
# cross-validation writes its summary, bad data is refused by name.
# (How good the shipped model is: docs/internals/training.md.)
. "$(dirname "$0")/lib.sh"
need "$PY"
src=$(data covid-semiseg-train/MultiClassInfection-Train)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 12 slices keep it quick.
mkdir -p "$tmp/d/Imgs" "$tmp/d/GT"
for f in $(ls "$src/Imgs" | sort -n | head -12); do
    cp "$src/Imgs/$f" "$tmp/d/Imgs/"; cp "$src/GT/${f%.*}.png" "$tmp/d/GT/"
done
check "12 slices copied" [ "$(ls "$tmp/d/GT" | wc -l)" -eq 12 ]
tiny="--size 64 --depth 2 --base 4 --batch 4 --folds 3"
"$COVCT_BIN" train --data "$tmp/d" -o "$tmp/a.covctnn" $tiny --epochs 4 --fold 1 >"$tmp/a.log" 2>&1
check "train exits 0" [ $? -eq 0 ]
check "one progress line per epoch" [ "$(grep -c 'epoch .*/4  loss' "$tmp/a.log")" -eq 4 ]
"$PY" - "$tmp/a.log" <<'PYEOF'
import re, sys
loss = [float(m) for m in re.findall(r"loss ([0-9.]+)", open(sys.argv[1]).read())]
print("losses", loss)
sys.exit(0 if len(loss) == 4 and loss[-1] < loss[0] else 1)
PYEOF
check "the training loss falls" [ $? -eq 0 ]
check "checkpoint and optimiser state written" [ -s "$tmp/a.covctnn" -a -s "$tmp/a.covctnn.adam" ]
"$COVCT_BIN" train --data "$tmp/d" -o "$tmp/b.covctnn" $tiny --epochs 4 --stop-after 2 --fold 1 >"$tmp/b.log" 2>&1
check "stop-after stops" grep -q "stopped after epoch 2" "$tmp/b.log"
"$COVCT_BIN" train --data "$tmp/d" -o "$tmp/b.covctnn" $tiny --epochs 4 --fold 1 --resume >>"$tmp/b.log" 2>&1
check "resume exits 0" [ $? -eq 0 ]
check "resume says where it starts" grep -q "resuming after epoch 2" "$tmp/b.log"
check "resumed run = uninterrupted run (model bytes)" cmp -s "$tmp/a.covctnn" "$tmp/b.covctnn"
check "resumed run = uninterrupted run (optimiser)" cmp -s "$tmp/a.covctnn.adam" "$tmp/b.covctnn.adam"
"$COVCT_BIN" segment --model "$tmp/a.covctnn" -o "$tmp/seg" "$src/Imgs/20.jpg" >/dev/null 2>&1
check "the trained model segments" [ -s "$tmp/seg/20_consolidation.png" ]
"$COVCT_BIN" train --data "$tmp/d" -o "$tmp/cv.covctnn" $tiny --epochs 1 --cv >"$tmp/cv.log" 2>&1
check "cross-validation exits 0" [ $? -eq 0 ]
check "cross-validation summary" grep -q "mean .*, sd " "$tmp/cv.log"
check "cross-validation JSON" "$PY" -c "import json,sys; d=json.load(open('$tmp/cv.covctnn.cv.json')); sys.exit(0 if len(d['folds'])==3 else 1)"
# A mask with a class the network does not have is refused by name.
"$PY" -c "
from PIL import Image
im = Image.open('$tmp/d/GT/3.png'); px = im.load(); px[5, 7] = 3; im.save('$tmp/d/GT/3.png')"
check "slice 3 is in the set" [ -s "$tmp/d/GT/3.png" ]
"$COVCT_BIN" train --data "$tmp/d" -o "$tmp/c.covctnn" $tiny --epochs 1 >"$tmp/c.log" 2>&1
check "bad label refused" [ $? -eq 1 ]
check "bad label named with its pixel" grep -q "3.png: label 3 at pixel (5, 7)" "$tmp/c.log"
"$COVCT_BIN" train --data "$tmp/none" -o "$tmp/c.covctnn" >"$tmp/c.log" 2>&1
check "missing data folder refused" grep -q "cannot open .*none/Imgs" "$tmp/c.log"
finish
