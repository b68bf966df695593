#!/bin/bash
# The nn module against PyTorch (forward, gradients, losses, AdamW on both
# backends): tests/nn_torch_ref.py writes the reference values with
# PyTorch, test_nn_torch (path in $1) rebuilds the network with nn.h and
# compares.  PyTorch is needed here only; the library never uses it.
. "$(dirname "$0")/lib.sh"
bin=${1:?usage: nn_torch.sh TEST_NN_TORCH_BINARY}
need "$PY"
if ! "$PY" -c 'import torch' 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: PyTorch missing for $PY (scripts/install-deps.sh installs python3-torch)" >&2; exit 1
    fi
    echo "SKIP: PyTorch missing for $PY (scripts/install-deps.sh installs python3-torch)" >&2; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" "$(dirname "$0")/nn_torch_ref.py" "$tmp/ref.bin"
rc=$?
check "nn_torch_ref.py writes the PyTorch reference" [ $rc -eq 0 ] && check "reference file not empty" [ -s "$tmp/ref.bin" ]
if [ $rc -eq 0 ]; then
    "$bin" "$tmp/ref.bin" 2>&1 | tee "$tmp/log"
    rc=${PIPESTATUS[0]}
    check "test_nn_torch: nn matches PyTorch within 1e-4" [ $rc -eq 0 ]
    if sanitizer_report "$tmp/log"; then bad "sanitizer report"; else ok; fi
fi
finish
