#!/usr/bin/env bash
# Builds ckptw if needed, then runs the CLI: scripts/ckptw.sh bench [--help].
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${CKPTW_BUILD_DIR:-build}/ckptw" "$@"
