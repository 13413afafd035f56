#include "cli/bench/compare.hpp"


#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <future>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ckptw/barriers.hpp"
#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/error.hpp"
#include "cli/bench_stats.hpp"
#include "cli/synthetic_model.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "io/buffer_ring.hpp"
#include "util/stopwatch.hpp"

namespace ckptw::cli::bench {

namespace fs = std::filesystem;

std::optional<NoiseFloor> noise_floor(const std::vector<Row>& rows) {
  const Row* automatic = nullptr;
  for (const Row& r : rows) {
    if (r.name == "ckptw" && r.ok()) automatic = &r;
  }
  if (!automatic) return std::nullopt;
  for (const Row& r : rows) {
    if ((r.name == "ckptw-uring" || r.name == "ckptw-posix") && r.ok() && r.note == automatic->note) {
      return NoiseFloor{automatic->name, r.name, median_ratio(automatic->seconds, r.seconds),
                        spread_p90(automatic->seconds, r.seconds)};
    }
  }
  return std::nullopt;
}

// ---- --compare FILE: this run against an earlier run's --json ---------------
//
// Between two runs the machine itself can drift by more than the spread
// inside either run shows (docs/performance-log.md, 2026-12-04: a whole table,
// `limit` included, 22 % slower than the one before it). So a move of a row is
// read against both runs' rerun p90, and against how far `limit`, the disk
// alone, moved.


// Loaded before this run starts, so that a wrong file costs no minutes of work.
PreviousRun load_previous_run(const std::string& path, const BenchOptions& options) {
  std::ifstream in(path);
  if (!in) throw IoError("--compare: cannot open the earlier run's --json file", path, "", errno);
  const nlohmann::json previous = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!previous.is_object() || !previous.contains("rows") || !previous["rows"].is_array()) {
    throw FormatError("--compare: not a `ckptw bench --json` file (no \"rows\" list)", path);
  }
  PreviousRun run{path, previous.value("machine", std::string("unknown")), {}};
  bool read = false;
  for (const auto& row : previous["rows"]) {
    if (!row.is_object() || !row.contains("name")) throw FormatError("--compare: a row without a name", path);
    const std::string name = row["name"].get<std::string>();
    read = read || name == "raw read";
    if (!row.contains("seconds")) continue;  // a row that failed in that run
    if (!row.contains("gbps_median")) {
      throw FormatError("--compare: row " + name + " has no gbps_median (a --ranks run cannot be compared)", path);
    }
    run.rows[name] = {row["gbps_median"].get<double>(), row["seconds"].get<std::vector<double>>()};
  }
  if (read != options.read) {
    throw UsageError(std::string("--compare: that run measured ") + (read ? "reads (--read)" : "writes") +
                     ", this one measures " + (options.read ? "reads" : "writes"), path);
  }
  const std::uint64_t size = previous.contains("config") ? previous["config"].value("size", std::uint64_t{0}) : 0;
  if (size != options.size_bytes) {
    throw UsageError("--compare: that run's model was " + std::to_string(size) + " bytes (--size), this one's is " +
                         std::to_string(options.size_bytes) + ": compare runs of one --size",
                     path);
  }
  return run;
}

std::vector<RowMove> compare_rows(const PreviousRun& previous, const std::vector<Row>& rows) {
  std::vector<RowMove> moves;
  for (const Row& r : rows) {
    auto it = previous.rows.find(r.name);
    if (!r.ok() || it == previous.rows.end()) continue;
    const auto& [before_gbps, before_seconds] = it->second;
    moves.push_back(RowMove{r.name, before_gbps, median(r.gbps()), spread_p90(before_seconds, before_seconds),
                            spread_p90(r.seconds, r.seconds)});
  }
  return moves;
}

}  // namespace ckptw::cli::bench
