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
source scripts/build-env.sh
BUILD_DIR=${CKPTW_BUILD_DIR:-build}
started=$SECONDS
# Free disk on the tree's filesystem, in GiB: the summary line gives it at the
# start and the end, as a full disk fails a build or a test in odd places.
free_gib() { df --output=avail -BG . | tail -1 | tr -dc 0-9; }
free_at_start=$(free_gib)
scripts/setup.sh || exit 1
if (($#)); then
  exec ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(ckptw_test_jobs)" "$@"
fi
times=("set-up and build $((SECONDS - started)) s")
failed=()

# The sanitizer trees compile while the plain suite runs, at a lower
# priority, and the TSan tree while the ASan suite runs: much of each suite
# waits on fsync, sleeps and child processes, and a core left idle there is
# build time saved. Each build's output is shown once it is done.
builds=$BUILD_DIR/sanitizer-builds
rm -rf "$builds" && mkdir -p "$builds"
stage=$SECONDS
(
  for mode in asan tsan; do
    nice -n 10 scripts/sanitize.sh "$mode" --build-only >"$builds/$mode.log" 2>&1
    echo $? >"$builds/$mode.rc"
  done
) &
builder=$!
# The exit status of the build of tree $1, once it has one.
build_status() {
  while [ ! -s "$builds/$1.rc" ]; do sleep 2; done
  grep -v '^\[sanitize\] \(configuring\|building\)' "$builds/$1.log" >&2 || true
  return "$(cat "$builds/$1.rc")"
}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(ckptw_test_jobs)" || failed+=(plain)
times+=("plain suite $((SECONDS - stage)) s")

stage=$SECONDS
if build_status asan; then
  times+=("ASan build done $((SECONDS - stage)) s after it")
  stage=$SECONDS
  scripts/sanitize.sh asan --test-only || failed+=(asan)
  times+=("ASan+UBSan $((SECONDS - stage)) s")
else
  failed+=(asan-build)
fi
stage=$SECONDS
wait "$builder"
if build_status tsan; then
  times+=("TSan build done $((SECONDS - stage)) s after it")
  stage=$SECONDS
  scripts/sanitize.sh tsan --test-only || failed+=(tsan)
  times+=("TSan $((SECONDS - stage)) s")
else
  failed+=(tsan-build)
fi

summary=$(printf '%s | ' "${times[@]}")
echo "[test] time: ${summary}total $((SECONDS - started)) s; disk free ${free_at_start} GiB at the start, $(free_gib) GiB at the end" >&2
if ((${#failed[@]})); then
  echo "[test] FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "[test] all passed: plain suite, ASan+UBSan, TSan" >&2
