#!/bin/sh
# The whole covct test suite: installs what the tests need, builds with
# -Werror under AddressSanitizer + UndefinedBehaviorSanitizer, runs every
# ctest test, then builds the libFuzzer targets with clang and runs each
# for a short while from its corpus.
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

scripts/install-deps.sh

echo "== build (gcc, -Werror, ASan+UBSan) in build-test/"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DCOVCT_WERROR=ON \
      -DCOVCT_SANITIZE=ON >/dev/null
cmake --build build-test -j "$JOBS"

echo "== tests"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-test && ctest --output-on-failure -j "$JOBS" --timeout 900)

echo "== fuzz targets (clang, libFuzzer) in build-fuzz/"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCOVCT_WERROR=ON \
      -DCOVCT_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$JOBS" --target covct-fuzz-targets
DATA=${COVCT_SHARED_DATA:-../shared/data}
FUZZ_SECONDS=${FUZZ_SECONDS:-40}
# A fixed seed makes this run a repeatable smoke test: what passed here
# passes in CI. Long random campaigns: FUZZ_SEED=0 FUZZ_SECONDS=3600.
FUZZ_SEED=${FUZZ_SEED:-1}
for t in build-fuzz/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus="fuzz/corpus/${name#fuzz_}"
    seeds=""
    [ "$name" = fuzz_dicom ] && seeds="$DATA/dicom-conformance"
    work=$(mktemp -d)
    echo "-- $name: ${FUZZ_SECONDS} s, seed $FUZZ_SEED, from $corpus $seeds"
    # A crash leaves its input in build-fuzz/ (artifact_prefix): add it to
    # the corpus once fixed, so the replay test keeps it fixed.
    if ! "$t" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
         -seed="$FUZZ_SEED" -max_len=262144 -artifact_prefix=build-fuzz/ -print_final_stats=0 \
         "$work" "$corpus" $seeds >build-fuzz/$name.log 2>&1; then
        tail -n 40 build-fuzz/$name.log
        echo "covct: $name found a failure (input saved under build-fuzz/)"
        rm -rf "$work"
        exit 1
    fi
    tail -n 1 build-fuzz/$name.log
    rm -rf "$work"
done
echo "covct: all tests passed"
