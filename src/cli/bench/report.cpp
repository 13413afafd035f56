#include "cli/bench/report.hpp"


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

int report(const std::vector<Row>& rows, const SyntheticModel& model, std::uint64_t file_bytes,
           const std::vector<std::vector<std::string>>& order, const std::optional<PreviousRun>& previous,
           const BenchOptions& options) {
  const Row* limit = nullptr;
  for (const auto& r : rows) {
    if ((r.name == "limit" || r.name == "raw read") && r.ok()) limit = &r;
  }
  auto ratio = [&](const Row& r) { return limit ? median(r.gbps()) / median(limit->gbps()) : 0.0; };
  const std::vector<RowMove> moves = previous ? compare_rows(*previous, rows) : std::vector<RowMove>{};
  const std::string machine = machine_description();
  const std::string filesystem = filesystem_description(options.dir);
  CheckpointWriterConfig defaults;

  if (options.json) {
    nlohmann::json json_rows = nlohmann::json::array();
    for (const auto& r : rows) {
      nlohmann::json row = {{"name", r.name}, {"note", r.note}};
      if (r.ok()) {
        auto g = r.gbps();
        row.update({{"gbps_median", median(g)},
                    {"gbps_min", *std::min_element(g.begin(), g.end())},
                    {"gbps_max", *std::max_element(g.begin(), g.end())},
                    {"seconds", r.seconds},
                    {"ratio_to_limit", ratio(r)},
                    {"rerun_p90", spread_p90(r.seconds, r.seconds)},
                    {"cpu_s_per_gb", r.cpu_s_per_gb()},
                    {"peak_rss_bytes", r.peak_rss_bytes},
                    {"extra_rss_bytes", r.extra_rss_bytes}});
        if (!r.minor_faults.empty()) row["minor_faults"] = r.minor_faults;
        row["steal_seconds"] = r.steal_seconds;
        if (!r.touch_seconds.empty()) row["touch_seconds"] = r.touch_seconds;
        row["other_cpu_seconds"] = r.other_cpu_seconds;
        if (!r.write_request_kib.empty()) row["write_request_kib"] = r.write_request_kib;
        if (!r.sync_seconds.empty()) row["sync_seconds"] = r.sync_seconds;
        if (!r.repeat_cpu_seconds.empty()) row["cpu_seconds"] = r.repeat_cpu_seconds;
        if (!r.cpu_phases.empty()) {
          const CpuPhases per_gb = r.cpu_phases_per_gb();
          row["cpu_s_per_gb_by_phase"] = {{"plan", per_gb.plan},
                                          {"copy_crc", per_gb.copy_crc},
                                          {"write_other", per_gb.write_other},
                                          {"other_threads", per_gb.other_threads}};
          std::vector<double> copy_crc;
          for (const CpuPhases& p : r.cpu_phases) copy_crc.push_back(p.copy_crc);
          row["copy_crc_seconds"] = copy_crc;
        }
        if (!r.blocking_seconds.empty()) {
          row.update({{"blocking_seconds", r.blocking_seconds},
                      {"blocking_seconds_median", median(r.blocking_seconds)}});
        }
      }
      json_rows.push_back(row);
    }
    nlohmann::json out = {
        {"machine", machine},
        {"filesystem", filesystem},
        {"bytes", file_bytes},
        {"tensors", model.state_dict.size()},
        {"config",
         {{"repeats", options.repeats},
          {"warmup", options.warmup},
          {"size", options.size_bytes},
          {"seed", options.seed},
          {"write_buffer_bytes", defaults.write_buffer_bytes},
          {"ring_buffers", defaults.ring_buffers},
          {"queue_depth", defaults.queue_depth},
          {"direct_io", options.direct_io},
          {"fsync", defaults.fsync}}},
        {"rows", json_rows},
    };
    if (!order.empty()) out["order"] = order;  // row names as they ran, one list per round (warm-up first)
    if (auto noise = noise_floor(rows)) {
      out["noise_floor"] = {{"rows", {noise->a, noise->b}}, {"ratio", noise->ratio}, {"ratio_p90", noise->ratio_p90},
                            {"within", noise->within()}};
    }
    if (previous) {
      nlohmann::json compared = nlohmann::json::array();
      for (const RowMove& m : moves) {
        compared.push_back({{"name", m.name}, {"gbps_before", m.before_gbps}, {"gbps_now", m.now_gbps},
                            {"move", m.move()}, {"rerun_p90_before", m.before_p90}, {"rerun_p90_now", m.now_p90},
                            {"verdict", m.verdict()}});
      }
      out["compare"] = {{"file", previous->path}, {"machine", previous->machine}, {"rows", compared}};
    }
    if (options.json_file.empty()) {
      std::cout << out.dump(2) << "\n";
    } else {
      std::ofstream(options.json_file) << out.dump(2) << "\n";
    }
    if (options.json_file.empty()) return 0;
  }

  std::printf(options.read ? "ckptw bench --read: synthetic GPT-like model, %zu tensors, %.3f GB file, %d cold repeats after %d warm-up\n" : "ckptw bench: synthetic GPT-like model, %zu tensors, %.3f GB file, %d repeats after %d warm-up, fsync on\n",
              model.state_dict.size(), file_bytes / 1e9, options.repeats, options.warmup);
  std::printf("machine:    %s\nfilesystem: %s\n\n", machine.c_str(), filesystem.c_str());
  std::printf("%-19s %9s %9s %9s %9s %9s %9s %10s %10s  %s\n", "row", "GB/s med", "min", "max", "rerun p90", "x limit",
              "CPU s/GB", "peak RSS", "extra RSS", "how");
  for (const auto& r : rows) {
    if (!r.ok()) {
      std::printf("%-19s %s\n", r.name.c_str(), r.note.c_str());
      continue;
    }
    auto g = r.gbps();
    std::printf("%-19s %9.3f %9.3f %9.3f %7.0f %% %9.2f %9.3f %8.0f M %8.0f M  %s\n", r.name.c_str(), median(g),
                *std::min_element(g.begin(), g.end()), *std::max_element(g.begin(), g.end()),
                (spread_p90(r.seconds, r.seconds) - 1) * 100, ratio(r), r.cpu_s_per_gb(), r.peak_rss_bytes / 1048576.0,
                r.extra_rss_bytes / 1048576.0, r.note.c_str());
  }
  std::printf("rerun p90: how far apart the medians of two runs of the row land 9 times in 10, given the\n"
              "spread of its repeats here (resampled from them): a move between runs smaller than that is noise.\n");
  bool phases_header = false;
  for (const auto& r : rows) {
    if (!r.ok() || r.cpu_phases.empty()) continue;
    if (!phases_header) {
      std::printf("\n%-19s %9s %9s %9s %9s   CPU s/GB by phase\n", "row", "plan", "copy+CRC", "write", "other");
      phases_header = true;
    }
    const CpuPhases per_gb = r.cpu_phases_per_gb();
    std::printf("%-19s %9.3f %9.3f %9.3f %9.3f\n", r.name.c_str(), per_gb.plan, per_gb.copy_crc,
                per_gb.write_other, per_gb.other_threads);
  }
  if (phases_header) {
    std::printf("plan: walking the state dict and pickling (write_async: the whole capture); copy+CRC: into the\n"
                "write buffers and the CRC-32s; write: the rest of the write thread (submissions, completions,\n"
                "fsync); other: the process's other threads (the kernel's I/O workers). Each phase's median\n"
                "over the repeats, as CPU s/GB above.\n");
  }
  if (auto noise = noise_floor(rows)) {
    std::printf("\nnoise floor: %s and %s run the same configuration; their medians differ by %.1f %%, and\n"
                "with this run's spread two such rows land up to %.1f %% apart 9 times in 10 (resampled from\n"
                "their repeats): read the other ratios against that. %s\n",
                noise->a.c_str(), noise->b.c_str(), (noise->ratio - 1) * 100, (noise->ratio_p90 - 1) * 100,
                noise->within() ? "The pair is within it."
                                : "The pair is OUTSIDE it: this run's rows differ by more than its spread explains\n"
                                  "(a drift during the run, or a difference between the two configurations).");
  }
  if (previous) {
    std::printf("\ncompared with %s (%s):\n", previous->path.c_str(), previous->machine.c_str());
    std::printf("%-19s %9s %9s %7s %17s  %s\n", "row", "GB/s then", "now", "move", "rerun p90 then/now", "");
    const RowMove* disk = nullptr;
    for (const RowMove& m : moves) {
      std::printf("%-19s %9.3f %9.3f %+6.0f %% %8.0f %% / %3.0f %%  %s\n", m.name.c_str(), m.before_gbps, m.now_gbps,
                  m.move() * 100, (m.before_p90 - 1) * 100, (m.now_p90 - 1) * 100, m.verdict());
      if (m.name == "limit" || m.name == "raw read") disk = &m;
    }
    if (disk) {
      std::printf("%s, the filesystem alone, moved %+.0f %%: where the other rows moved alike, the machine moved,\n"
                  "not the code. Compare ratios to %s (x limit) rather than GB/s when it did.\n",
                  disk->name.c_str(), disk->move() * 100, disk->name.c_str());
    }
  }
  if (!options.read) {
    std::printf("\nRows interleaved: each round runs every row once, in an order that changes every round (each\n"
                "row follows other rows), the output emptied and synced before each run, every page of the\n"
                "row's model read (untimed) just before it. GB/s and CPU s/GB: medians over the repeats.");
  }
  std::printf("\nGB = 1e9 bytes; RSS in MiB; extra RSS = peak during the row's first run minus RSS before it\n"
              "(the model is %.0f MiB); the Python rows' peak RSS is their process's.\n",
              model.payload_bytes / 1048576.0);
  return 0;
}

}  // namespace ckptw::cli::bench
