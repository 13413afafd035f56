#!/usr/bin/env bash
# Runs the whole test suite: C++ unit tests, interop with the newest torch
# (.venv) and torch 1.13 (Debian), and the find_package(ckptw) consumer build.
# Extra arguments go to ctest (e.g. -R interop, -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec ctest --test-dir "${CKPTW_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" "$@"
