// `ckptw bench`: write throughput of CheckpointWriter on the synthetic model,
// next to the disk's own limit and torch.save, in one run on the same bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ckptw/config.hpp"

namespace ckptw::cli {

struct BenchOptions {
  std::uint64_t size_bytes = std::uint64_t{1} << 30;
  std::uint64_t seed = 0;
  int repeats = 5;
  int warmup = 1;
  std::string dir = ".";  ///< the temp directory is created inside it
  /// Only this backend's row (named "ckptw"); all three rows when unset.
  std::optional<IoBackendKind> backend;
  bool json = false;        ///< JSON instead of the table
  std::string json_file;    ///< with json: write it here instead of stdout
  bool keep = false;
  bool torch_save = true;   ///< run the torch.save (or torch.load) row when its Python is present
  bool direct_io = true;    ///< CheckpointWriterConfig::direct_io of the ckptw rows
  /// Measure reading instead: CheckpointReader, a raw O_DIRECT read and
  /// torch.load of the same file.
  bool read = false;
  /// --ranks N (0: the single-process table): N processes, one per rank,
  /// write at once, and the table gives node-level aggregates.
  int ranks = 0;
  /// Set in those processes (hidden --rank-child): run one rank's rounds,
  /// with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the parent.
  bool rank_child = false;
  /// --compare FILE: an earlier run's --json (same mode and --size); the
  /// report adds each row's move against it, read against both runs' spread.
  std::string compare_file;
  /// --dcp: torch.distributed.checkpoint saves by --ranks processes (1, 2
  /// and 4 when unset) of a DTensor-sharded model, the stock writer against
  /// ckptw.dcp's (bench/dcp_ranks_bench.py, in the project's Python).
  bool dcp = false;
  /// --convert: a DCP checkpoint saved by --ranks processes (4 when not
  /// given) exported to one .pt by dcp_to_torch_save and by ckptw convert,
  /// with each one's peak RSS (bench/dcp_convert_bench.py).
  bool convert = false;
};

/// Runs the benchmark and prints its report; returns the exit code.
int run_bench(const BenchOptions& options);

}  // namespace ckptw::cli
