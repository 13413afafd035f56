#!/usr/bin/env bash
# Builds the fuzz targets with clang + ASan/UBSan, replays the saved corpus,
# fuzzes each target for FUZZ_SECONDS (default 20), and runs every prefix and
# single-byte flip of the seed files. New inputs go to a scratch copy, never
# into the committed corpus. Usage: run_fuzz.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "${1:?build dir}"; build=$(cd "$1" && pwd)
seconds=${FUZZ_SECONDS:-20}
if ! command -v clang++ >/dev/null; then
  echo "SKIP: clang++ is not installed (Debian clang, libclang-rt-14-dev)"; exit 77
fi
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" >/dev/null
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
for pair in "fuzz_zip_index:zip" "fuzz_unpickler:pickle"; do
  target=${pair%%:*}; corpus=$here/corpus/${pair##*:}
  echo "== $target: replay $(ls "$corpus" | wc -l) saved inputs"
  "$build/$target" -runs=0 -artifact_prefix="$build/" "$corpus" >"$scratch/replay.log" 2>&1 || { cat "$scratch/replay.log"; exit 1; }
  tail -1 "$scratch/replay.log"
  mkdir -p "$scratch/$target" && cp "$corpus"/* "$scratch/$target/"
  echo "== $target: fuzz ${seconds}s"
  # A crash, leak or sanitizer report makes libFuzzer exit non-zero and keep
  # the input as crash-*/leak-* in the build directory (never the checkout).
  (cd "$scratch" && "$build/$target" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$build/" \
    "$scratch/$target" >"$scratch/fuzz.log" 2>&1) || { tail -60 "$scratch/fuzz.log"; exit 1; }
  grep -E "stat::number_of_executed_units|^Done" "$scratch/fuzz.log"
done
echo "== prefixes and flips of the seed files"
# Seeds are the valid files (*.pt); regression-* inputs are ones the fuzzer
# once failed on, kept for the replay above.
"$build/mutate_seeds" "$here"/corpus/zip/*.pt
