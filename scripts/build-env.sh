# Sourced by scripts/setup.sh and scripts/sanitize.sh: the compiler cache's
# settings, the same for every build tree.
#
# ccache hits across checkouts in other directories (CI clones afresh), and
# for translation units that use a precompiled header (CMakeLists.txt's
# ckptw_precompile_headers), which ccache caches only with these
# sloppinesses. Each build tree's precompiled headers take about 0.5 GB
# before compression; the cache holds the three trees' objects with room to spare.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-20G}
