// `ckptw bench`: write throughput of CheckpointWriter on the synthetic model.
#pragma once

#include <cstdint>
#include <string>

namespace ckptw::cli {

struct BenchOptions {
  std::uint64_t size_bytes = std::uint64_t{1} << 30;
  std::uint64_t seed = 0;
  int repeats = 5;
  int warmup = 1;
  std::string dir = ".";  ///< the temp directory is created inside it
  bool json = false;
  bool keep = false;
};

/// Runs the benchmark and prints its report to stdout; returns the exit code.
int run_bench(const BenchOptions& options);

}  // namespace ckptw::cli
