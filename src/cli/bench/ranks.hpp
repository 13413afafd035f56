// `ckptw bench --ranks N`: N processes, one per rank, writing at once, and
// the node-level table made of their runs.
#pragma once

#include "cli/bench.hpp"

namespace ckptw::cli::bench {

/// One rank's rounds (the hidden --rank-child), printing a JSON line per run.
int run_bench_rank(const BenchOptions& options);
/// Spawns the ranks and reports the node's figures.
int run_bench_ranks(const BenchOptions& options);

}  // namespace ckptw::cli::bench
