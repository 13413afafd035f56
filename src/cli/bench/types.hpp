// The shared vocabulary of `ckptw bench`'s parts: a row of the table and
// what one run of it measured, the runner that makes those runs, the
// progress line and the run's temp directory.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "ckptw/error.hpp"
#include "cli/bench.hpp"
#include "cli/bench_stats.hpp"

namespace ckptw::cli::bench {

// Where a ckptw row's CPU time goes (WriteResult's CPU figures): the write
// thread's planning, its copies and CRCs, the rest of its write (submissions,
// completions, the fsync calls), and everything else the process spent (the
// kernel's I/O worker threads, the caller's thread during write_async).
struct CpuPhases {
  double plan = 0;
  double copy_crc = 0;
  double write_other = 0;
  double other_threads = 0;
  bool measured = false;
};

struct Row {
  std::string name;
  std::string note;                 // e.g. "missing: ..." or "posix, O_DIRECT"
  std::vector<double> seconds;
  std::uint64_t bytes = 0;
  double cpu_seconds = 0;           // over the timed repeats, where repeat_cpu_seconds is empty
  // Per timed repeat, where each was measured apart (the write table): CPU
  // s/GB is then their median, as GB/s is, so that one repeat the host
  // slowed (see Runner::touch) moves neither.
  std::vector<double> repeat_cpu_seconds;
  std::uint64_t peak_rss_bytes = 0;
  std::uint64_t extra_rss_bytes = 0;
  std::vector<double> blocking_seconds;  // write_async rows: until the call returned
  // Per timed repeat, rows that publish a file (the writer rows, limit): the
  // fsync of the file, its rename and the fsync of the directory, which end
  // with a flush of the device's cache. The rest of the repeat is the copy
  // and the writes.
  std::vector<double> sync_seconds;
  std::vector<CpuPhases> cpu_phases;     // ckptw rows: the CPU seconds by phase, per timed repeat
  std::vector<std::int64_t> minor_faults;  // rows run in this process: per timed repeat
  std::vector<double> steal_seconds;       // per timed repeat, the whole machine's
  // Per timed repeat: Runner::touch before it. Far above its usual figure:
  // the host had taken pages of the row's model away while it sat idle.
  std::vector<double> touch_seconds;
  // Per timed repeat: the machine's busy CPU time minus this process's, i.e.
  // other processes and kernel threads competing with the row (a Python
  // row's own saver counts here).
  std::vector<double> other_cpu_seconds;
  // Per timed repeat: the mean size of the write requests the block device
  // completed (KiB), where the output is on one. Far below the device's
  // max_sectors_kb means the writes were split, e.g. by a scatter list of
  // more segments than the device takes (write buffers of scattered pages).
  std::vector<double> write_request_kib;
  bool ok() const { return !seconds.empty(); }
  double cpu_s_per_gb() const {
    const double gb = static_cast<double>(bytes) / 1e9;
    if (!repeat_cpu_seconds.empty()) return median(repeat_cpu_seconds) / gb;
    return cpu_seconds / (gb * static_cast<double>(seconds.size()));
  }
  // Each phase's median over the repeats, per GB.
  CpuPhases cpu_phases_per_gb() const {
    std::vector<double> plan, copy_crc, write_other, other_threads;
    for (const CpuPhases& p : cpu_phases) {
      plan.push_back(p.plan);
      copy_crc.push_back(p.copy_crc);
      write_other.push_back(p.write_other);
      other_threads.push_back(p.other_threads);
    }
    const double gb = static_cast<double>(bytes) / 1e9;
    return CpuPhases{median(plan) / gb, median(copy_crc) / gb, median(write_other) / gb, median(other_threads) / gb,
                     true};
  }
  std::vector<double> gbps() const {
    std::vector<double> v;
    for (double s : seconds) v.push_back(static_cast<double>(bytes) / s / 1e9);
    return v;
  }
};

class Progress {
 public:
  explicit Progress(bool quiet) : tty_(!quiet && isatty(STDERR_FILENO)), quiet_(quiet) {}
  void line(const std::string& text) {
    if (quiet_) return;
    if (tty_) {
      std::fprintf(stderr, "\33[2K\r%s", text.c_str());
    } else {
      std::fprintf(stderr, "%s\n", text.c_str());
    }
    std::fflush(stderr);
  }
  void done() {
    if (tty_) std::fprintf(stderr, "\33[2K\r");
  }

 private:
  bool tty_;
  bool quiet_;
};

// What one run of a row measured; negative: take the caller's measurement.
struct RunResult {
  std::uint64_t bytes = 0;
  double seconds = -1;      // wall time of the save itself (Python rows)
  double cpu_seconds = -1;  // the saver's own CPU time (Python rows)
  double blocking = -1;     // write_async rows: until the call returned
  double sync = -1;         // rows that publish a file: its fsync, rename and directory fsync
  CpuPhases cpu_phases;     // ckptw rows (other_threads is left to run_rounds)
  std::string how;          // the row's note, when the run tells it (the backend auto picked)
};

struct Runner {
  Row row;
  std::function<RunResult()> once;  // null: the row could not be set up (row.note says why)
  // Reads every page of what the next run reads, before it is timed; its
  // seconds. A checkpoint is taken of a model the step before it touched,
  // while a row's model sits idle through the other rows: on a VM, the host
  // can meanwhile take such pages away (the next touch of each faults in the
  // host, unseen by the guest), and the row that reads them first paid it.
  std::function<double()> touch;
  bool ran = false;
  std::uint64_t setup_rss = 0;     // what setting the row up added (a writer's ring)
  std::uint64_t baseline_rss = 0;  // RSS before the row's first run
};

// The run's temp directory inside --dir, removed at the end unless --keep.
class BenchDirectory {
 public:
  explicit BenchDirectory(const BenchOptions& options) : keep_(options.keep) {
    std::string pattern = (std::filesystem::path(options.dir) / "ckptw-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw IoError("cannot create the benchmark directory", pattern, "", errno);
    path_ = pattern;
  }
  ~BenchDirectory() {
    std::error_code ignored;
    if (!keep_) std::filesystem::remove_all(path_, ignored);
  }
  BenchDirectory(const BenchDirectory&) = delete;
  BenchDirectory& operator=(const BenchDirectory&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool keep_;
};

}  // namespace ckptw::cli::bench
