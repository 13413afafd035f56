// The report of a single-process `ckptw bench` run: the table (or --json),
// the CPU breakdown, the noise floor and the --compare moves.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/bench/compare.hpp"
#include "cli/bench/types.hpp"
#include "cli/synthetic_model.hpp"

namespace ckptw::cli::bench {

/// Prints the report of `rows` (--json: to stdout or options.json_file, and
/// the table too when the JSON went to a file); the exit code.
int report(const std::vector<Row>& rows, const SyntheticModel& model, std::uint64_t file_bytes,
           const std::vector<std::vector<std::string>>& order, const std::optional<PreviousRun>& previous,
           const BenchOptions& options);

}  // namespace ckptw::cli::bench
