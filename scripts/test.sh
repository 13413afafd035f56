#!/usr/bin/env bash
# Runs the whole test suite: C++ unit tests, fault sweeps, interop with the
# newest torch (.venv) and torch 1.13 (Debian), distributed commit with real
# processes, fuzzing, the find_package(ckptw) consumer build; then the suite
# again under AddressSanitizer + UndefinedBehaviorSanitizer and the concurrent
# parts under ThreadSanitizer (scripts/sanitize.sh). Every part runs; the exit
# status is non-zero when any failed.
#
# With arguments, only the plain suite runs, and the arguments go to ctest
# (e.g. scripts/test.sh -L unit, scripts/test.sh -R interop).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
if (($#)); then
  exec ctest --test-dir "${CKPTW_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" "$@"
fi
failed=()
ctest --test-dir "${CKPTW_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" || failed+=(plain)
scripts/sanitize.sh asan || failed+=(asan)
scripts/sanitize.sh tsan || failed+=(tsan)
if ((${#failed[@]})); then
  echo "[test] FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "[test] all passed: plain suite, ASan+UBSan, TSan" >&2
