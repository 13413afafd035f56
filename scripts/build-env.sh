# Sourced by scripts/setup.sh, scripts/sanitize.sh and scripts/test.sh: the compiler cache's
# settings, the same for every build tree, and the build step.
#
# ccache hits across checkouts in other directories (CI clones afresh), and
# for translation units that use a precompiled header (CMakeLists.txt's
# ckptw_precompile_headers), which ccache caches only with these
# sloppinesses. Each build tree's precompiled headers take about 0.5 GB
# before compression; the cache holds the three trees' objects with room to spare.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-20G}

# ckptw_build DIR [cmake --build args...]: builds a configured tree, showing
# only what is not ninja's progress. A failed build runs once more before it
# counts as failed: once, in 2026-12, ccache reported a precompiled header's
# dependency file missing right after gcc made it, and the same step passed
# when run again; a real compile error fails both times.
ckptw_build() {
  local dir=$1 attempt
  shift
  for attempt in 1 2; do
    if cmake --build "$dir" "$@" -- -j"$(nproc)" | { grep -v '^\[' || true; }; then return 0; fi
    ((attempt == 2)) || printf '[build] building %s failed; running the build once more\n' "$dir" >&2
  done
  return 1
}

# How many ctest entries run at once (scripts/test.sh, scripts/sanitize.sh):
# twice the cores, since much of the suite waits on fsync, sleeps and child
# processes rather than computing. CKPTW_TEST_JOBS overrides it.
ckptw_test_jobs() { echo "${CKPTW_TEST_JOBS:-$(($(nproc) * 2))}"; }
