// The write table's rounds: each round runs every row once, in an order
// that changes from round to round (row_at), after the warm-up rounds;
// before each timed run the output directory is emptied and the filesystem
// synced, so no row pays for another's writeback. Every row writes the same
// file name in the same directory.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "cli/bench/types.hpp"

namespace ckptw::cli::bench {

/// Which of `n` rows runs `k`-th in `round` (warm-up rounds first, in table order).
std::size_t row_at(int round, int warmup, std::size_t k, std::size_t n);

/// Runs the rows warm-up + repeats rounds, in the order row_at gives;
/// `order` gets the names in the order they ran, round by round.
std::vector<Row> run_rounds(std::vector<Runner>& runners, const std::string& out, const BenchOptions& options,
                            Progress& progress, std::vector<std::vector<std::string>>& order);

}  // namespace ckptw::cli::bench
