#!/usr/bin/env bash
# Builds the test suite under sanitizers and runs it; zero reports or it fails.
#
#   scripts/sanitize.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer
#                              (LeakSanitizer included) over every test but the
#                              long, fuzz (already ASan+UBSan) and package ones
#   scripts/sanitize.sh tsan   ThreadSanitizer over the concurrent parts: I/O
#                              engine, writer, async checkpointer, barriers,
#                              fault sweeps (tests that fork are left out:
#                              TSan does not support threads after fork)
#
#   scripts/sanitize.sh MODE --build-only   configure and build, run nothing
#   scripts/sanitize.sh MODE --test-only    run the suite of a tree built before
#
# Extra arguments go to ctest. scripts/test.sh builds both trees while the
# plain suite runs, then runs them. Builds in build-asan / build-tsan, against
# the same .venv LibTorch; each tree builds only the programs its stage runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/build-env.sh
mode=${1:?usage: scripts/sanitize.sh asan|tsan [--build-only|--test-only] [ctest args...]}
shift
step=all
case ${1:-} in
  --build-only) step=build; shift ;;
  --test-only) step=test; shift ;;
esac

log() { printf '[sanitize] %s\n' "$*" >&2; }

case $mode in
  asan)
    flags=address,undefined
    ctest_args=(-LE 'long|fuzz|package')
    targets=(all)  # interop and distributed need the CLI, fixtures, rank harness and example too
    # Leaks are checked; LibTorch's own start-up allocations that live until
    # exit are not ckptw's (tests/sanitizers/lsan.supp).
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0
    export LSAN_OPTIONS=suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  tsan)
    flags=thread
    # Left out, the cases that fork a child which starts threads (TSan does
    # not support that): kill_test (RealKills) whole, the others by a gtest
    # filter, which gtest applies before its sharding.
    ctest_args=(-L 'unit|faults' -E '^kill_test$')
    export GTEST_FILTER='-*BadPaths*:*FailedWriteKeeps*:IoUringBlocked.*:*ReadOnlyDirectory*:ForkedChild.*'
    # The programs holding the unit and faults tests that run here.
    targets=(format_test writer_test barrier_test io_test fault_test reader_test bench_stats_test)
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/tests/sanitizers/tsan.supp
    # LibTorch's OpenMP (libgomp) synchronises through futexes TSan cannot
    # see, so its worker threads look racy; ckptw's own threads are unaffected.
    export OMP_NUM_THREADS=1
    ;;
  *) echo "unknown mode '$mode' (asan or tsan)" >&2; exit 2 ;;
esac

BUILD_DIR=build-$mode
# -g1: line tables, all a sanitizer report's stack needs (file:line per
# frame), for less compile time and disk than full debug information.
TORCH_PREFIX=$(.venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
if [ "$step" != test ]; then
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    log "configuring $BUILD_DIR (-fsanitize=$flags)"
    cmake -S . -B "$BUILD_DIR" -G Ninja \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
      -DCKPTW_SANITIZE=$flags -DCKPTW_BUILD_BENCHMARKS=OFF -DCKPTW_BUILD_PYTHON=OFF \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
      -DCKPTW_PYTHON="$ROOT/.venv/bin/python" >/dev/null
  fi
  log "building $BUILD_DIR (${targets[*]})"
  if ! ckptw_build "$BUILD_DIR" --target "${targets[@]}"; then
    log "building $BUILD_DIR failed"
    exit 1
  fi
fi
[ "$step" != build ] || exit 0
log "running the suite under -fsanitize=$flags"
exec ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(ckptw_test_jobs)" "${ctest_args[@]}" "$@"
