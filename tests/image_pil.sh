#!/bin/bash
# The image module against Pillow: tests/image_pil.py decodes the
# covid-semiseg-train slices and masks and synthetic PNG/JPEG files of
# every kind with Pillow; test_image (path in $1) decodes the same files
# with covct and every pixel must match.
. "$(dirname "$0")/lib.sh"
bin=${1:?usage: image_pil.sh TEST_IMAGE_BINARY}
semiseg=$(data covid-semiseg-train) || exit $?
need "$PY"
if ! "$PY" -c 'import numpy, PIL' 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: numpy or Pillow missing for $PY (Debian: python3-numpy python3-pil)" >&2; exit 1
    fi
    echo "SKIP: numpy or Pillow missing for $PY (Debian: python3-numpy python3-pil)" >&2; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" "$(dirname "$0")/image_pil.py" "$semiseg" "$tmp" "$tmp/expected.bin"
rc=$?
check "image_pil.py writes Pillow's pixels" [ $rc -eq 0 ]
if [ $rc -eq 0 ]; then
    "$bin" --expect "$tmp/expected.bin" 2>&1 | tee "$tmp/log"
    rc=${PIPESTATUS[0]}
    check "test_image --expect: covct decodes every image as Pillow does" [ $rc -eq 0 ]
    if sanitizer_report "$tmp/log"; then bad "sanitizer report"; else ok; fi
fi
finish
