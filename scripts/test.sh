#!/usr/bin/env bash
# Runs the whole test suite: C++ unit tests, fault sweeps, interop with the
# newest torch (.venv) and torch 1.13 (Debian), distributed commit with real
# processes, fuzzing, the find_package(ckptw) consumer build; then the suite
# again under AddressSanitizer + UndefinedBehaviorSanitizer and the concurrent
# parts under ThreadSanitizer (scripts/sanitize.sh). Every part runs; the exit
# status is non-zero when any failed. The last line gives each stage's time.
#
# With arguments, only the plain suite runs, and the arguments go to ctest
# (e.g. scripts/test.sh -L unit, scripts/test.sh -R interop).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${CKPTW_BUILD_DIR:-build}
started=$SECONDS
scripts/setup.sh || exit 1
if (($#)); then
  exec ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" "$@"
fi
times=("set-up and build $((SECONDS - started)) s")
failed=()

# The sanitizer trees compile while the plain suite runs, at a lower
# priority: much of the suite waits on fsync, sleeps and child processes, and
# a core left idle there is build time saved. Their output is shown once done.
build_log=$BUILD_DIR/sanitizer-builds.log
stage=$SECONDS
(nice -n 10 scripts/sanitize.sh asan --build-only && nice -n 10 scripts/sanitize.sh tsan --build-only) \
  >"$build_log" 2>&1 &
builder=$!
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" || failed+=(plain)
times+=("plain suite $((SECONDS - stage)) s")
wait "$builder" || failed+=(sanitizer-builds)
grep -v '^\[sanitize\] \(configuring\|building\)' "$build_log" >&2 || true
times+=("sanitizer builds, beside it, done at $((SECONDS - stage)) s")

stage=$SECONDS
scripts/sanitize.sh asan --test-only || failed+=(asan)
times+=("ASan+UBSan $((SECONDS - stage)) s")
stage=$SECONDS
scripts/sanitize.sh tsan --test-only || failed+=(tsan)
times+=("TSan $((SECONDS - stage)) s")

summary=$(printf '%s | ' "${times[@]}")
echo "[test] time: ${summary}total $((SECONDS - started)) s" >&2
if ((${#failed[@]})); then
  echo "[test] FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "[test] all passed: plain suite, ASan+UBSan, TSan" >&2
