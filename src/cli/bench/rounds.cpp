#include "cli/bench/rounds.hpp"


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
#include "cli/bench/probes.hpp"

namespace ckptw::cli::bench {

namespace fs = std::filesystem;

// Which of `n` rows runs `k`-th in `round` (warm-up rounds first, in table
// order). Timed round t runs row (s * k + t) mod n, the stride s taken in
// turn from the numbers coprime with n, in the order 1, n-1, 2, n-2, 4, ...:
// each round is a permutation, and a row's predecessor (the row s before it)
// changes with s. What the previous row left (its page cache, its process
// giving memory back, the disk's state) lands on the row after it: the
// rotation reversed every other round used until 2026-12-03 gave each row
// only its two table neighbours as predecessors, and the `ckptw` row's slow
// copies came in the rounds it followed `safetensors`, 4 of 5.
std::size_t row_at(int round, int warmup, std::size_t k, std::size_t n) {
  if (round < warmup || n < 2) return k;
  std::vector<std::size_t> strides;
  for (std::size_t s = 1; 2 * s <= n; ++s) {
    if (std::gcd(s, n) != 1) continue;
    strides.push_back(s);
    if (n - s != s) strides.push_back(n - s);
  }
  const std::size_t timed_round = static_cast<std::size_t>(round - warmup);
  const std::size_t stride = strides[timed_round % strides.size()];
  return (stride * k + timed_round) % n;
}

// Runs the rows warm-up + repeats rounds, in the order row_at gives;
// `order` gets the names in the order they ran, round by round.
std::vector<Row> run_rounds(std::vector<Runner>& runners, const std::string& out, const BenchOptions& options,
                            Progress& progress, std::vector<std::vector<std::string>>& order) {
  const std::size_t n = runners.size();
  const std::string device_stat = device_stat_path(out);
  for (int round = 0; round < options.warmup + options.repeats; ++round) {
    const bool timed = round >= options.warmup;
    order.emplace_back();
    for (std::size_t k = 0; k < n; ++k) {
      Runner& runner = runners[row_at(round, options.warmup, k, n)];
      if (!runner.once) continue;
      order.back().push_back(runner.row.name);
      Row& row = runner.row;
      clear_output(out);
      progress.line(row.name + (timed ? ": repeat " + std::to_string(round - options.warmup + 1) + "/" +
                                            std::to_string(options.repeats)
                                      : ": warm-up " + std::to_string(round + 1) + "/" + std::to_string(options.warmup)));
      const auto drop_row = [&](const std::exception& e) {
        row.note = std::string("failed: ") + e.what();
        row.seconds.clear();
        runner.once = nullptr;
      };
      double touched = 0;
      try {
        if (runner.touch) touched = runner.touch();
      } catch (const std::exception& e) {
        drop_row(e);
        continue;
      }
      if (!runner.ran) runner.baseline_rss = status_kib("VmRSS:") * 1024;
      reset_peak_rss();
      const double cpu_before = cpu_seconds_self();
      const std::int64_t faults_before = minor_faults_self();
      const MachineCpu machine_before = machine_cpu();
      const DeviceWrites device_before = device_stat.empty() ? DeviceWrites{} : device_writes(device_stat);
      detail::Stopwatch clock;
      RunResult run;
      try {
        run = runner.once();
      } catch (const std::exception& e) {
        drop_row(e);
        continue;
      }
      const double wall = clock.elapsed();
      const double cpu = cpu_seconds_self() - cpu_before;
      const std::uint64_t peak = status_kib("VmHWM:") * 1024;
      if (!run.how.empty()) row.note = run.how;
      row.bytes = run.bytes;
      if (run.seconds < 0) {  // this process's own work: its peak and what it added
        row.peak_rss_bytes = std::max(row.peak_rss_bytes, peak);
        if (!runner.ran) {
          row.extra_rss_bytes = runner.setup_rss + (peak > runner.baseline_rss ? peak - runner.baseline_rss : 0);
        }
      }
      runner.ran = true;
      if (!timed) continue;
      row.seconds.push_back(run.seconds >= 0 ? run.seconds : wall);
      row.touch_seconds.push_back(touched);
      row.repeat_cpu_seconds.push_back(run.cpu_seconds >= 0 ? run.cpu_seconds : cpu);
      if (run.seconds < 0) row.minor_faults.push_back(minor_faults_self() - faults_before);
      const MachineCpu machine_after = machine_cpu();
      row.steal_seconds.push_back(machine_after.steal - machine_before.steal);
      row.other_cpu_seconds.push_back(std::max(0.0, machine_after.busy - machine_before.busy - cpu));
      if (!device_stat.empty()) {
        const DeviceWrites device_after = device_writes(device_stat);
        const std::uint64_t requests = device_after.requests - device_before.requests;
        if (requests > 0) {
          row.write_request_kib.push_back(static_cast<double>(device_after.sectors - device_before.sectors) * 512 /
                                          1024 / static_cast<double>(requests));
        }
      }
      if (run.blocking >= 0) row.blocking_seconds.push_back(run.blocking);
      if (run.sync >= 0) row.sync_seconds.push_back(run.sync);
      if (run.cpu_phases.measured) {
        CpuPhases p = run.cpu_phases;
        p.other_threads = std::max(0.0, cpu - p.plan - p.copy_crc - p.write_other);
        row.cpu_phases.push_back(p);
      }
    }
  }
  std::vector<Row> rows;
  for (Runner& runner : runners) {
    Row& row = runner.row;
    if (!row.blocking_seconds.empty()) {
      char text[80];
      std::snprintf(text, sizeof text, "; caller blocked %.3f s med", median(row.blocking_seconds));
      row.note += text;
    }
    rows.push_back(row);
  }
  return rows;
}

}  // namespace ckptw::cli::bench
