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
for t in build-fuzz/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus="fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    echo "-- $name: 60 s from $corpus"
    "$t" -max_total_time=60 -rss_limit_mb=2048 -timeout=10 \
         -print_final_stats=0 "$work" "$corpus" 2>&1 | tail -n 3
    rm -rf "$work"
done
echo "covct: all tests passed"
