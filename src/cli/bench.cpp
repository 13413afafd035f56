// What it measures: the wall time of CheckpointWriter::write() of the
// synthetic model into a fresh temp directory on the chosen filesystem,
// fsync of file and directory included, page cache warm from the previous
// repeat (each repeat replaces the previous file, as a trainer does).
// GB/s = file bytes / seconds, GB = 1e9 bytes.
#include "cli/bench.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/error.hpp"
#include "cli/synthetic_model.hpp"
#include "util/stopwatch.hpp"

namespace ckptw::cli {
namespace {

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int run_bench(const BenchOptions& options) {
  namespace fs = std::filesystem;
  const bool progress = isatty(STDERR_FILENO) && !options.json;
  std::string pattern = (fs::path(options.dir) / "ckptw-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw IoError("cannot create the benchmark directory", pattern, "", errno);
  }
  const std::string dir = pattern;
  struct Cleanup {
    std::string dir;
    bool keep;
    ~Cleanup() {
      std::error_code ignored;
      if (!keep) std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{dir, options.keep};

  if (progress) std::fprintf(stderr, "building synthetic model (%.2f GB)...\r", options.size_bytes / 1e9);
  SyntheticModel model = make_synthetic_model(options.size_bytes, options.seed);
  const double rss_before_writes = peak_rss_mib();

  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  std::vector<double> secs;
  std::uint64_t file_bytes = 0;
  double cpu_timed = 0;
  const int total = options.warmup + options.repeats;
  for (int i = 0; i < total; ++i) {
    const bool timed = i >= options.warmup;
    if (progress) {
      std::fprintf(stderr, "\33[2K%s %d/%d ...\r", timed ? "repeat" : "warm-up",
                   timed ? i - options.warmup + 1 : i + 1, timed ? options.repeats : options.warmup);
    }
    const double cpu_before = cpu_seconds();
    WriteResult result = writer.write(dir, model.state_dict);
    if (timed) {
      secs.push_back(result.total_secs);
      cpu_timed += cpu_seconds() - cpu_before;
    }
    file_bytes = result.bytes_written;
  }
  if (progress) std::fprintf(stderr, "\33[2K");
  writer.close();

  std::vector<double> gbps;
  for (double s : secs) gbps.push_back(file_bytes / s / 1e9);
  const double gb = file_bytes / 1e9;
  const double cpu_per_gb = cpu_timed / (gb * options.repeats);
  const double peak_rss = peak_rss_mib();

  if (options.json) {
    nlohmann::json out = {
        {"file_bytes", file_bytes},
        {"tensors", model.state_dict.size()},
        {"repeats", options.repeats},
        {"dir", options.dir},
        {"rows",
         {{{"name", "ckptw"},
           {"gbps_median", median(gbps)},
           {"gbps_min", *std::min_element(gbps.begin(), gbps.end())},
           {"gbps_max", *std::max_element(gbps.begin(), gbps.end())},
           {"seconds", secs},
           {"cpu_seconds_per_gb", cpu_per_gb},
           {"peak_rss_mib", peak_rss},
           {"rss_before_writes_mib", rss_before_writes}}}},
    };
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("ckptw bench: synthetic GPT-like model, %zu tensors, %.3f GB file, %d repeats after %d warm-up, fsync on\n",
              model.state_dict.size(), gb, options.repeats, options.warmup);
  std::printf("directory: %s\n\n", fs::absolute(options.dir).c_str());
  std::printf("%-10s %10s %10s %10s %12s %14s\n", "writer", "GB/s med", "GB/s min", "GB/s max", "CPU s/GB",
              "peak RSS MiB");
  std::printf("%-10s %10.3f %10.3f %10.3f %12.3f %14.0f\n", "ckptw", median(gbps),
              *std::min_element(gbps.begin(), gbps.end()), *std::max_element(gbps.begin(), gbps.end()),
              cpu_per_gb, peak_rss);
  std::printf("\n(peak RSS includes the %.0f MiB model itself)\n", rss_before_writes);
  return 0;
}

}  // namespace ckptw::cli
