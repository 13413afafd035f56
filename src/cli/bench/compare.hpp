// Reading a run's figures against noise: the noise floor inside one run (two
// rows of one configuration) and --compare FILE, this run against an
// earlier run's --json, read against both runs' spread and against how far
// `limit`, the disk alone, moved.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/bench/types.hpp"

namespace ckptw::cli::bench {

// The auto row and the forced row it picked are one configuration: how far
// apart their medians land is the noise every other ratio is read against.
struct NoiseFloor {
  std::string a, b;
  double ratio = 0;  // larger median / smaller median
  double ratio_p90 = 0;  // spread_p90 of their repeats
  // The acceptance check of the interleaving: one configuration under two
  // names must not differ by more than the run's own spread explains.
  bool within() const { return ratio <= ratio_p90; }
};

std::optional<NoiseFloor> noise_floor(const std::vector<Row>& rows);

struct PreviousRun {
  std::string path;
  std::string machine;
  std::map<std::string, std::pair<double, std::vector<double>>> rows;  // name -> (GB/s median, seconds)
};

/// Loaded before this run starts, so that a wrong file costs no minutes of work.
PreviousRun load_previous_run(const std::string& path, const BenchOptions& options);

struct RowMove {
  std::string name;
  double before_gbps = 0, now_gbps = 0;
  double before_p90 = 0, now_p90 = 0;  // each run's rerun p90 of the row (a ratio >= 1)
  double move() const { return now_gbps / before_gbps - 1; }
  // A move smaller than both runs' p90 is noise by either run's measure.
  const char* verdict() const {
    const double m = std::max(now_gbps, before_gbps) / std::min(now_gbps, before_gbps);
    if (m <= std::min(before_p90, now_p90)) return "noise";
    if (m <= std::max(before_p90, now_p90)) return "within one run's p90";
    return "outside both p90s";
  }
};

std::vector<RowMove> compare_rows(const PreviousRun& previous, const std::vector<Row>& rows);

}  // namespace ckptw::cli::bench
