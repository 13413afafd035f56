// What it measures: wall time of writing the synthetic model to a fresh temp
// directory on the chosen filesystem, fsync of file and directory included in
// every figure, warm model in memory (a byte of every page read before each
// run, untimed: Runner::touch), one warm-up write per row first.
// The rows run interleaved: each round runs every row once, in an order
// that changes every round and gives each row other predecessors (row_at),
// after the warm-up rounds, the output directory
// emptied and the filesystem synced before each run (so no row pays for
// another's writeback); medians per row over the rounds. The auto row and the
// forced row it picks are the same configuration, kept on purpose: their
// ratio is printed as the noise floor, with how far apart such a pair lands
// 9 times in 10 given the run's spread (spread_p90, cli/bench_stats.hpp) and
// whether the pair is within that; each row's "rerun p90"
// is the same bound for two runs of that row. Rows, in one run on
// the same bytes:
//   ckptw, ckptw-posix, ckptw-uring: CheckpointWriter::write() with the auto,
//     POSIX and io_uring backends (each repeat replaces the previous file);
//   ckptw-async: write_async() with the auto backend, timed to the commit
//     (future.get()); its note gives the median time the caller was blocked
//     (until write_async() returned: the capture into staging memory);
//   limit: a raw sequential write of the same byte count from pre-filled,
//     aligned ring buffers with O_DIRECT through the auto backend, no copy,
//     no CRC, no format: what the filesystem takes;
//   torch.save, ckptw.save, dcp, safetensors: Python savers writing the same
//     state dict (loaded from the ckptw file) durably, in the project's Python
//     (bench/python_save_bench.py): torch's reference, ckptw through its
//     binding, torch.distributed.checkpoint and safetensors, the peers users
//     pick; their CPU seconds are the script's own over the timed saves.
// GB/s = file bytes / seconds, GB = 1e9 bytes. CPU s/GB = process CPU time
// (user + system) per GB written, the median over the repeats in the write
// table (each phase's own median in its breakdown). Peak RSS: the process's
// high-water mark during the row (reset before it via /proc/self/clear_refs);
// "extra" is that minus the RSS before the row, i.e. what writing added on
// top of the model.
// --json also carries, per repeat, what can explain an outlier: copy+CRC
// seconds, page faults, the machine's steal time, other processes' CPU time,
// the mean write request size the block device saw, how long the touch
// before the run took, and (rows that publish a file) how long the fsync,
// rename and directory fsync took.
#include "cli/bench.hpp"

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

namespace ckptw::cli {
namespace {

namespace fs = std::filesystem;

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

double cpu_seconds_self() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
}

// The whole machine's CPU time so far, all CPUs (/proc/stat's first line):
// busy is user + nice + system + irq + softirq; steal is what the hypervisor
// gave to others while this VM's CPUs wanted it (0 where there is none).
struct MachineCpu {
  double busy = 0;
  double steal = 0;
};

MachineCpu machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  return MachineCpu{static_cast<double>(user + nice + system + irq + softirq) / tick, static_cast<double>(steal) / tick};
}

// Writes the block device under a directory has completed so far
// (/sys/dev/block/MAJ:MIN/stat: write requests, 512-byte sectors written).
struct DeviceWrites {
  std::uint64_t requests = 0;
  std::uint64_t sectors = 0;
};

// The stat file of the block device holding `dir`; empty where it has none
// (tmpfs, overlay, network filesystems).
std::string device_stat_path(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || major(st.st_dev) == 0) return "";
  std::string path = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)) + "/stat";
  return std::ifstream(path) ? path : "";
}

DeviceWrites device_writes(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::uint64_t reads, read_merges, read_sectors, read_ticks, write_merges;
  DeviceWrites w;
  in >> reads >> read_merges >> read_sectors >> read_ticks >> w.requests >> write_merges >> w.sectors;
  return in ? w : DeviceWrites{};
}

// Page faults of this process so far (minor: no I/O, e.g. first touches).
std::int64_t minor_faults_self() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

std::uint64_t status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0) return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

// Resets the RSS high-water mark (VmHWM) so each row reports its own peak.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

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

// Runs `once` warmup + repeats times; `once` returns the bytes it wrote.
// `baseline_rss` is the RSS the row's extra memory is counted from (taken
// before the row set anything up); 0 takes it at the start of the timed part.
Row measure(const std::string& name, const BenchOptions& options, Progress& progress,
            const std::function<std::uint64_t()>& once, std::uint64_t baseline_rss = 0) {
  Row row;
  row.name = name;
  reset_peak_rss();
  for (int i = 0; i < options.warmup; ++i) {
    progress.line(name + ": warm-up " + std::to_string(i + 1) + "/" + std::to_string(options.warmup));
    row.bytes = once();
  }
  const std::uint64_t rss_before = baseline_rss ? baseline_rss : status_kib("VmRSS:") * 1024;
  const double cpu_before = cpu_seconds_self();
  for (int i = 0; i < options.repeats; ++i) {
    detail::Stopwatch clock;
    row.bytes = once();
    row.seconds.push_back(clock.elapsed());
    char text[160];
    std::snprintf(text, sizeof text, "%s: repeat %d/%d %.3f GB/s", name.c_str(), i + 1, options.repeats,
                  row.bytes / row.seconds.back() / 1e9);
    progress.line(text);
  }
  row.cpu_seconds = cpu_seconds_self() - cpu_before;
  row.peak_rss_bytes = status_kib("VmHWM:") * 1024;
  row.extra_rss_bytes = row.peak_rss_bytes > rss_before ? row.peak_rss_bytes - rss_before : 0;
  return row;
}

// ---- the write table: rows interleaved round by round ------------------------
//
// Each round runs every row once, in an order that changes from round to
// round (row_at), after the warm-up rounds; before each timed run
// the output directory is emptied and the filesystem synced, so no row pays
// for another's writeback. Every row writes the same file name in the same
// directory.

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

// `make()`, with the RSS it added noted in the Runner.
Runner set_up(const std::function<Runner()>& make) {
  const std::uint64_t before = status_kib("VmRSS:") * 1024;
  Runner runner = make();
  const std::uint64_t after = status_kib("VmRSS:") * 1024;
  runner.setup_rss = after > before ? after - before : 0;
  return runner;
}

// Reads one byte in every page of [data, data + size).
void touch_pages(const void* data, std::size_t size) {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const auto* bytes = static_cast<const volatile unsigned char*>(data);
  unsigned char sink = 0;
  for (std::size_t i = 0; i < size; i += page) sink ^= bytes[i];
  (void)sink;
}

// touch_pages over every tensor's storage in `model`; its seconds.
double touch_model(const StateDict& model) {
  const detail::Stopwatch clock;
  for (const auto& entry : model) {
    if (!entry.value().isTensor()) continue;
    const c10::Storage& storage = entry.value().toTensor().storage();
    touch_pages(storage.data(), storage.nbytes());
  }
  return clock.elapsed();
}

// touch_pages over every buffer of `ring`; its seconds.
double touch_ring(const detail::BufferRing& ring) {
  const detail::Stopwatch clock;
  for (std::size_t i = 0; i < ring.count(); ++i) touch_pages(ring.data(i), ring.buffer_bytes());
  return clock.elapsed();
}

enum class WriteCall { kWrite, kWriteAsync };

Runner writer_runner(const std::string& name, IoBackendKind backend, const StateDict& model, const std::string& out,
                     const BenchOptions& options, WriteCall call = WriteCall::kWrite, RankInfo rank = RankInfo{0, 1},
                     std::shared_ptr<Barrier> barrier = nullptr) {
  Runner runner;
  runner.row.name = name;
  CheckpointWriterConfig config;
  config.io_backend = backend;
  config.direct_io = options.direct_io;
  std::shared_ptr<CheckpointWriter> writer;
  try {
    writer = std::make_shared<CheckpointWriter>(config, rank, barrier);
  } catch (const Error& e) {
    runner.row.note = std::string("unavailable: ") + e.what();
    return runner;
  }
  runner.touch = [&model] { return touch_model(model); };
  runner.once = [writer, &model, out, call] {
    RunResult run;
    WriteResult result;
    if (call == WriteCall::kWriteAsync) {
      detail::Stopwatch blocked;
      std::future<WriteResult> written = writer->write_async(out, model);
      run.blocking = blocked.elapsed();
      result = written.get();
    } else {
      result = writer->write(out, model);
    }
    run.bytes = result.bytes_written;
    run.sync = result.sync_secs;
    run.cpu_phases = CpuPhases{result.plan_cpu_secs, result.copy_crc_secs,
                               // copy_crc_secs is wall time: a preempted copy can exceed the CPU clock
                               std::max(0.0, result.write_cpu_secs - result.copy_crc_secs), 0, true};
    run.how = result.io_backend + (result.direct_io ? ", O_DIRECT" : ", buffered");
    return run;
  };
  return runner;
}

// The filesystem's own limit: sequential writes of pre-filled aligned buffers
// through the auto backend, no copy, no CRC, no format.
Runner limit_runner(std::uint64_t bytes, const std::string& out, const std::string& file_name = rank_file_name(0)) {
  struct Limit {
    CheckpointWriterConfig config;
    std::unique_ptr<detail::IoBackend> io = detail::make_backend(IoBackendKind::kAuto, config.queue_depth);
    detail::BufferRing ring{config.ring_buffers, config.write_buffer_bytes};
    bool direct = false;
  };
  auto limit = std::make_shared<Limit>();
  std::mt19937_64 rng(1);
  for (std::size_t i = 0; i < limit->ring.count(); ++i) {
    auto* words = reinterpret_cast<std::uint64_t*>(limit->ring.data(i));
    for (std::size_t w = 0; w < limit->ring.buffer_bytes() / 8; ++w) words[w] = rng();
  }
  Runner runner;
  runner.row.name = "limit";
  runner.row.note = std::string(limit->io->name()) + (limit->config.direct_io ? ", O_DIRECT" : ", buffered");
  runner.touch = [limit] { return touch_ring(limit->ring); };
  runner.once = [limit, bytes, path = out + "/" + file_name] {
    detail::IoBackend& io = *limit->io;
    detail::BufferRing& ring = limit->ring;
    const std::uint64_t block = detail::BufferRing::kAlignment;
    const std::uint64_t rounded = (bytes + block - 1) / block * block;
    detail::TempFile file(io, path, limit->config.direct_io);
    (void)io.preallocate(file.fd(), rounded);
    {
      auto queue = io.open_queue(file.fd(), ring, limit->config.queue_depth);
      std::vector<std::size_t> free;
      for (std::size_t i = 0; i < ring.count(); ++i) free.push_back(i);
      for (std::uint64_t offset = 0; offset < rounded;) {
        if (free.empty()) free.push_back(queue->wait_any());
        const std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(ring.buffer_bytes(), rounded - offset));
        queue->submit(free.back(), size, offset);
        free.pop_back();
        offset += size;
      }
      while (queue->in_flight() > 0) (void)queue->wait_any();
      if (int rc = queue->error(); rc < 0) throw IoError("limit write failed", path, "", -rc);
    }
    detail::Stopwatch publishing;
    file.publish(true);
    RunResult run;
    run.bytes = bytes;
    run.sync = publishing.elapsed();
    return run;
  };
  return runner;
}

std::string default_python() {
  if (const char* env = std::getenv("CKPTW_PYTHON"); env && *env) return env;
  return CKPTW_DEFAULT_PYTHON;
}

// A started child: its pid, and this process's ends of the pipes on its
// stdin and stdout (-1 where none was asked for).
struct SpawnedChild {
  pid_t pid = -1;
  int to_stdin = -1;
  int from_stdout = -1;
};

// Starts `path` with `args` (argv[0] first) and `env` (null: this process's),
// with a pipe on its stdin and/or stdout where asked. Spawned (the child
// shares this process's memory until it execs), not forked: a fork copies the
// page tables of a process that holds the model and the writers' rings, and
// write-protects all of it in this process, whose rows are timed. The pipes
// are close-on-exec, so that children started later do not inherit this
// one's ends (its stdin would then never see EOF); dup2 clears the flag on
// the child's stdin and stdout.
SpawnedChild spawn_process(const std::string& path, const std::vector<std::string>& args,
                           const std::vector<std::string>* env, bool pipe_stdin, bool pipe_stdout) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  auto close_all = [&] {
    for (int fd : {in[0], in[1], out[0], out[1]}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if ((pipe_stdin && pipe2(in, O_CLOEXEC) != 0) || (pipe_stdout && pipe2(out, O_CLOEXEC) != 0)) {
    const int error = errno;
    close_all();
    throw IoError("pipe failed", path, "", error);
  }
  // posix_spawn does not write through argv or envp; the casts only meet its C signature.
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (env) {
    for (const auto& e : *env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (pipe_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  if (pipe_stdout) posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  SpawnedChild child;
  const int rc = posix_spawn(&child.pid, path.c_str(), &actions, nullptr, argv.data(), env ? envp.data() : environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    close_all();
    throw IoError("cannot start " + path, path, "", rc);
  }
  for (int fd : {in[0], out[1]}) {  // the child's ends
    if (fd >= 0) ::close(fd);
  }
  child.to_stdin = in[1];
  child.from_stdout = out[0];
  return child;
}

// The torch.load row of --read, run by bench/torch_load_bench.py in the
// project's Python (the write table's Python rows are PythonSaver's).
Row measure_python(const std::string& name, const std::string& script, const std::vector<std::string>& script_args,
                   const BenchOptions& options, Progress& progress) {
  Row row;
  row.name = name;
  const std::string python = default_python();
  if (access(python.c_str(), X_OK) != 0 || access(script.c_str(), R_OK) != 0) {
    row.note = "missing: no Python at " + python + " (set CKPTW_PYTHON)";
    return row;
  }
  progress.line(name + ": running " + script);
  std::vector<std::string> args = {python, script};
  args.insert(args.end(), script_args.begin(), script_args.end());
  args.push_back(std::to_string(options.repeats));
  args.push_back(std::to_string(options.warmup));
  const SpawnedChild child = spawn_process(python, args, nullptr, /*pipe_stdin=*/false, /*pipe_stdout=*/true);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = ::read(child.from_stdout, buffer, sizeof buffer)) > 0;) {
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(child.from_stdout);
  int status = 0;
  rusage usage{};
  wait4(child.pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    row.note = "failed: " + python + " " + script + " exited with status " + std::to_string(status);
    return row;
  }
  auto result = nlohmann::json::parse(output);
  row.bytes = result["file_bytes"].get<std::uint64_t>();
  row.seconds = result["seconds"].get<std::vector<double>>();
  row.peak_rss_bytes = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
  // Only the child's rusage: it covers start-up and the warm-up too; scale to the timed part.
  const double total_cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
                           usage.ru_stime.tv_usec / 1e6;
  row.cpu_seconds = total_cpu * options.repeats / (options.repeats + options.warmup + 1);
  row.note = "torch " + result["torch_version"].get<std::string>() + ", CPU s/GB approximate";
  return row;
}

// A Python saver (bench/python_save_bench.py) running for the whole table:
// it loads the state dict once, then saves once per request, so its row
// interleaves with the others.
class PythonSaver {
 public:
  PythonSaver(const std::string& python, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {python};
    argv.insert(argv.end(), args.begin(), args.end());
    const SpawnedChild child = spawn_process(python, argv, nullptr, /*pipe_stdin=*/true, /*pipe_stdout=*/true);
    pid_ = child.pid;
    to_ = fdopen(child.to_stdin, "w");
    from_ = fdopen(child.from_stdout, "r");
    nlohmann::json ready = reply();
    version_ = ready.value("version", "");
  }
  ~PythonSaver() { (void)finish(); }

  const std::string& version() const { return version_; }

  // The saver reads a byte in every page of its state dict; its seconds.
  double touch() { return request("touch")["touch_seconds"].get<double>(); }

  RunResult save() {
    const nlohmann::json answer = request("save");
    RunResult run;
    run.bytes = answer["file_bytes"].get<std::uint64_t>();
    run.seconds = answer["seconds"].get<double>();
    run.cpu_seconds = answer["cpu_seconds"].get<double>();
    return run;
  }

  // Ends the child; its peak RSS (load included).
  std::uint64_t finish() {
    if (pid_ <= 0) return peak_rss_;
    if (to_) std::fclose(to_);
    to_ = nullptr;
    int status = 0;
    rusage usage{};
    wait4(pid_, &status, 0, &usage);
    pid_ = -1;
    if (from_) std::fclose(from_);
    from_ = nullptr;
    peak_rss_ = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
    return peak_rss_;
  }

 private:
  // Sends one command line; the saver's answer, or its error thrown.
  nlohmann::json request(const char* command) {
    std::fprintf(to_, "%s\n", command);
    std::fflush(to_);
    nlohmann::json answer = reply();
    if (answer.contains("error")) throw Error(answer["error"].get<std::string>());
    return answer;
  }

  nlohmann::json reply() {
    char* line = nullptr;
    std::size_t capacity = 0;
    const ssize_t n = getline(&line, &capacity, from_);
    std::string text = n > 0 ? std::string(line, static_cast<std::size_t>(n)) : std::string();
    std::free(line);
    if (text.empty()) throw Error("the Python saver exited (see its error above)");
    return nlohmann::json::parse(text);
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string version_;
  std::uint64_t peak_rss_ = 0;
};

Runner python_runner(const std::string& saver, const std::string& source, const std::string& out,
                     std::vector<std::function<void(Row&)>>* finishers) {
  Runner runner;
  runner.row.name = saver;
  const std::string python = default_python();
  if (access(python.c_str(), X_OK) != 0 || access(CKPTW_PYTHON_SAVE_SCRIPT, R_OK) != 0) {
    runner.row.note = "missing: no Python at " + python + " (set CKPTW_PYTHON)";
    return runner;
  }
  std::shared_ptr<PythonSaver> process;
  try {
    process = std::make_shared<PythonSaver>(python, std::vector<std::string>{CKPTW_PYTHON_SAVE_SCRIPT, source, out, saver});
  } catch (const std::exception& e) {
    runner.row.note = std::string("failed: ") + e.what();
    return runner;
  }
  runner.row.note = process->version();
  runner.touch = [process] { return process->touch(); };
  runner.once = [process] { return process->save(); };
  finishers->push_back([process](Row& row) { row.peak_rss_bytes = process->finish(); });
  return runner;
}

// Waits for the filesystem holding `dir` to finish what was left to do
// (removals, their journal), so that the next timed run does not pay for it.
void sync_filesystem_of(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::syncfs(fd);
    ::close(fd);
  }
}

// Empties `out` and waits for the filesystem to finish what that left to do.
void clear_output(const std::string& out) {
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(out, ignored)) fs::remove_all(entry.path(), ignored);
  sync_filesystem_of(out);
}

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
// inside either run shows (docs/performance.md, 2026-12-04: a whole table,
// `limit` included, 22 % slower than the one before it). So a move of a row is
// read against both runs' rerun p90, and against how far `limit`, the disk
// alone, moved.

struct PreviousRun {
  std::string path;
  std::string machine;
  std::map<std::string, std::pair<double, std::vector<double>>> rows;  // name -> (GB/s median, seconds)
};

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

void drop_from_page_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Read rows: the file is written once (untimed), then read cold (its pages
// dropped from the page cache before every repeat) by CheckpointReader, by a
// raw sequential O_DIRECT read, and by torch.load.
std::vector<Row> measure_reads(const SyntheticModel& model, const std::string& ckpt_dir, const BenchOptions& options,
                               Progress& progress) {
  progress.line("writing the checkpoint to read");
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(ckpt_dir, model.state_dict);
  const std::string file = ckpt_dir + "/" + rank_file_name(0);
  std::vector<Row> rows;
  CheckpointReader reader(RankInfo{0, 1});
  Row ckptw_row = measure("ckptw read", options, progress, [&] {
    drop_from_page_cache(file);
    ReadResult r = reader.read(ckpt_dir);
    return static_cast<std::uint64_t>(fs::file_size(file));
  });
  ckptw_row.note = "CheckpointReader, CRCs and manifest verified";
  rows.push_back(ckptw_row);

  const std::size_t chunk = std::size_t{8} << 20;
  detail::BufferRing buffer(1, chunk);
  Row raw = measure("raw read", options, progress, [&] {
    drop_from_page_cache(file);
    int fd = ::open(file.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IoError("cannot open", file, "", errno);
    std::uint64_t total = 0;
    for (ssize_t n; (n = ::pread(fd, buffer.data(0), chunk, static_cast<off_t>(total))) > 0;) total += static_cast<std::uint64_t>(n);
    ::close(fd);
    return total;
  });
  raw.note = "sequential 8 MiB O_DIRECT preads, no parsing";
  rows.push_back(raw);
  if (options.torch_save) {
    rows.push_back(measure_python("torch.load", CKPTW_TORCH_LOAD_SCRIPT, {file}, options, progress));
  }
  return rows;
}

std::string machine_description() {
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  uname(&u);
  return cpu + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, " +
         std::to_string(sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGE_SIZE) >> 30) + " GiB, Linux " + u.release;
}

// "ext4 /dev/vda on /" for the mount holding `dir`.
std::string filesystem_description(const std::string& dir) {
  const std::string path = fs::canonical(dir).string();
  std::ifstream in("/proc/self/mounts");
  std::string best_mount, best;
  for (std::string source, mount, type, rest; in >> source >> mount >> type && std::getline(in, rest);) {
    const bool inside = path == mount || path.rfind(mount == "/" ? "/" : mount + "/", 0) == 0;
    if (inside && mount.size() >= best_mount.size()) {
      best_mount = mount;
      best = type + " " + source + " on " + mount;
    }
  }
  return best.empty() ? "unknown" : best;
}

}  // namespace

// The run's temp directory inside --dir, removed at the end unless --keep.
class BenchDirectory {
 public:
  explicit BenchDirectory(const BenchOptions& options) : keep_(options.keep) {
    std::string pattern = (fs::path(options.dir) / "ckptw-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw IoError("cannot create the benchmark directory", pattern, "", errno);
    path_ = pattern;
  }
  ~BenchDirectory() {
    std::error_code ignored;
    if (!keep_) fs::remove_all(path_, ignored);
  }
  BenchDirectory(const BenchDirectory&) = delete;
  BenchDirectory& operator=(const BenchDirectory&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool keep_;
};

// ---- --ranks N: several ranks writing at once --------------------------------
//
// The parent spawns N copies of this program (--rank-child), which find one
// another through a TCPStore on loopback that rank 0 hosts (the ckptw row's
// barrier, which also runs its vote and manifest). Every rank runs the same
// rows in the same order (row_at); before each run it empties its own output
// and syncs, and all ranks then leave one barrier together and time the run
// on CLOCK_MONOTONIC, which every process on the machine shares. The parent
// turns each round's N (start, end) pairs into the node's figures.

double monotonic_seconds() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Removes this rank's file from `dir` (its own only: other ranks may still be
// writing theirs), then syncs the filesystem.
void clear_rank_output(const std::string& dir, const std::string& rank_file) {
  std::error_code ignored;
  fs::remove(fs::path(dir) / rank_file, ignored);
  sync_filesystem_of(dir);
}

int run_bench_rank(const BenchOptions& options) {
  const RankInfo rank = RankInfo::from_env();
  const bool rank0 = rank.global_rank == 0;
  Progress progress(/*quiet=*/!rank0);
  BarrierConfig barrier_config;
  barrier_config.type = BarrierType::kTcpStore;
  barrier_config.timeout_secs = 300;  // the slowest rank's model build and Python start-up
  std::shared_ptr<Barrier> barrier = create_barrier_from_config(barrier_config, rank);

  progress.line("building the synthetic model in each of " + std::to_string(rank.global_world_size) + " ranks");
  SyntheticModel model = make_synthetic_model(options.size_bytes, options.seed);
  const std::string rank_file = rank_file_name(rank.global_rank);
  const std::string own = options.dir + "/rank" + std::to_string(rank.global_rank);
  const std::string shared = options.dir + "/ckptw";  // every rank's file and the manifest, as in training
  for (const std::string& d : {own + "/limit", own + "/torch", shared}) fs::create_directories(d);
  const std::uint64_t file_bytes =
      CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(own + "/source", model.state_dict).bytes_written;

  // Each row's output, and the name its file has there. A row clears only
  // its own before it runs, so each row's last files stay (--keep).
  std::vector<Runner> runners;
  std::vector<std::pair<std::string, std::string>> outputs;
  runners.push_back(writer_runner("ckptw", options.backend.value_or(IoBackendKind::kAuto), model.state_dict, shared,
                                  options, WriteCall::kWrite, rank, barrier));
  outputs.emplace_back(shared, rank_file);
  runners.push_back(limit_runner(file_bytes, own + "/limit", rank_file));
  outputs.emplace_back(own + "/limit", rank_file);
  std::vector<std::function<void(Row&)>> finishers;
  if (options.torch_save) {
    runners.push_back(python_runner("torch.save", own + "/source/checkpoint_0.pt", own + "/torch", &finishers));
    outputs.emplace_back(own + "/torch", rank_file_name(0));  // bench/python_save_bench.py's name
  }
  for (const Runner& r : runners) {
    if (!r.once) throw Error("rank " + std::to_string(rank.global_rank) + ": row " + r.row.name + " " + r.row.note);
  }
  const std::size_t n = runners.size();
  barrier->execute_barrier();  // every rank set up
  for (int round = 0; round < options.warmup + options.repeats; ++round) {
    const bool timed = round >= options.warmup;
    const std::size_t timed_round = timed ? static_cast<std::size_t>(round - options.warmup) : 0;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t which = row_at(round, options.warmup, k, n);  // the same in every rank
      Runner& runner = runners[which];
      progress.line(runner.row.name + (timed ? ": repeat " + std::to_string(timed_round + 1) : ": warm-up") + ", " +
                    std::to_string(rank.global_world_size) + " ranks");
      clear_rank_output(outputs[which].first, outputs[which].second);
      const double touched = runner.touch ? runner.touch() : 0;
      barrier->execute_barrier();
      const double cpu_before = cpu_seconds_self();
      const double start = monotonic_seconds();
      const RunResult run = runner.once();
      const double end = monotonic_seconds();
      const double cpu = run.cpu_seconds >= 0 ? run.cpu_seconds : cpu_seconds_self() - cpu_before;
      if (!timed) continue;
      nlohmann::json line = {{"row", runner.row.name}, {"round", timed_round}, {"start", start},
                             {"end", run.seconds >= 0 ? start + run.seconds : end},
                             {"bytes", run.bytes}, {"cpu_seconds", cpu}, {"touch_seconds", touched},
                             {"note", run.how.empty() ? runner.row.note : run.how}};
      std::cout << line.dump() << std::endl;
    }
  }
  progress.done();
  barrier->execute_barrier();  // no rank's store (rank 0's) goes away while another still needs it
  return 0;
}

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw IoError("cannot find a free loopback port for the ranks' TCPStore", "127.0.0.1", "", errno);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// One row of the --ranks table: per timed round, every rank's run.
struct RankRow {
  std::string name;
  std::string note;
  std::map<int, std::vector<nlohmann::json>> rounds;
  std::vector<double> aggregate_gbps() const {
    std::vector<double> v;
    for (const auto& [round, runs] : rounds) {
      double first = 1e300, last = 0, bytes = 0;
      for (const auto& r : runs) {
        first = std::min(first, r["start"].get<double>());
        last = std::max(last, r["end"].get<double>());
        bytes += r["bytes"].get<double>();
      }
      v.push_back(bytes / (last - first) / 1e9);
    }
    return v;
  }
  std::vector<double> slowest_rank_seconds() const {
    std::vector<double> v;
    for (const auto& [round, runs] : rounds) {
      double slowest = 0;
      for (const auto& r : runs) slowest = std::max(slowest, r["end"].get<double>() - r["start"].get<double>());
      v.push_back(slowest);
    }
    return v;
  }
  // Per round, the CPU seconds of all ranks over the bytes of all ranks; the median over the rounds.
  double cpu_s_per_gb() const {
    std::vector<double> v;
    for (const auto& [round, runs] : rounds) {
      double cpu = 0, bytes = 0;
      for (const auto& r : runs) {
        cpu += r["cpu_seconds"].get<double>();
        bytes += r["bytes"].get<double>();
      }
      v.push_back(cpu / (bytes / 1e9));
    }
    return median(v);
  }
};

int run_bench_ranks(const BenchOptions& options) {
  const BenchDirectory bench_dir(options);
  const std::string& dir = bench_dir.path();

  const int port = free_loopback_port();
  std::vector<std::string> args = {"/proc/self/exe", "bench", "--rank-child", "--dir", dir,
                                   "--size", std::to_string(options.size_bytes), "--seed", std::to_string(options.seed),
                                   "--repeat", std::to_string(options.repeats), "--warmup",
                                   std::to_string(options.warmup)};
  if (!options.torch_save) args.push_back("--no-torch");
  if (!options.direct_io) args.push_back("--buffered");
  if (options.backend) args.insert(args.end(), {"--backend", to_string(*options.backend)});
  struct Child {
    pid_t pid = -1;
    FILE* out = nullptr;
  };
  // This process's environment without the rank variables, which each child
  // gets its own of.
  std::vector<std::string> inherited;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (name != "RANK" && name != "LOCAL_RANK" && name != "WORLD_SIZE" && name != "MASTER_ADDR" &&
        name != "MASTER_PORT" && name != "TORCHELASTIC_USE_AGENT_STORE") {
      inherited.push_back(entry);
    }
  }
  std::vector<Child> children;
  for (int r = 0; r < options.ranks; ++r) {
    std::vector<std::string> env = inherited;
    env.insert(env.end(), {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
                           "WORLD_SIZE=" + std::to_string(options.ranks), "MASTER_ADDR=127.0.0.1",
                           "MASTER_PORT=" + std::to_string(port)});
    const SpawnedChild child = spawn_process("/proc/self/exe", args, &env, /*pipe_stdin=*/false, /*pipe_stdout=*/true);
    children.push_back(Child{child.pid, fdopen(child.from_stdout, "r")});
  }
  std::vector<RankRow> rows;
  std::vector<std::string> failures;
  for (std::size_t r = 0; r < children.size(); ++r) {
    char* text = nullptr;
    std::size_t capacity = 0;
    while (getline(&text, &capacity, children[r].out) > 0) {
      const nlohmann::json line = nlohmann::json::parse(text);
      const std::string name = line["row"].get<std::string>();
      auto it = std::find_if(rows.begin(), rows.end(), [&](const RankRow& row) { return row.name == name; });
      if (it == rows.end()) it = rows.insert(rows.end(), RankRow{name, line.value("note", ""), {}});
      it->rounds[line["round"].get<int>()].push_back(line);
    }
    std::free(text);
    std::fclose(children[r].out);
    int status = 0;
    waitpid(children[r].pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failures.push_back("rank " + std::to_string(r) + (WIFEXITED(status) ? " exited with " + std::to_string(WEXITSTATUS(status))
                                                                           : " was killed by signal " + std::to_string(WTERMSIG(status))));
    }
  }
  if (!failures.empty()) {
    std::string what;
    for (const auto& f : failures) what += (what.empty() ? "" : "; ") + f;
    throw Error("ckptw bench --ranks " + std::to_string(options.ranks) + ": " + what + " (its error is above)");
  }
  for (const RankRow& row : rows) {
    for (const auto& [round, runs] : row.rounds) {
      if (static_cast<int>(runs.size()) != options.ranks) {
        throw Error("ckptw bench --ranks: row " + row.name + " round " + std::to_string(round) + " has " +
                    std::to_string(runs.size()) + " ranks' results");
      }
    }
  }
  const std::string machine = machine_description();
  const std::string filesystem = filesystem_description(options.dir);
  if (options.json) {
    nlohmann::json json_rows = nlohmann::json::array();
    for (const RankRow& row : rows) {
      const auto g = row.aggregate_gbps();
      nlohmann::json raw = nlohmann::json::array();
      for (const auto& [round, runs] : row.rounds) raw.push_back(runs);
      json_rows.push_back({{"name", row.name}, {"note", row.note},
                           {"aggregate_gbps_median", median(g)}, {"aggregate_gbps", g},
                           {"slowest_rank_seconds_median", median(row.slowest_rank_seconds())},
                           {"cpu_s_per_gb", row.cpu_s_per_gb()}, {"runs", raw}});
    }
    nlohmann::json out = {{"machine", machine}, {"filesystem", filesystem}, {"ranks", options.ranks},
                          {"config", {{"repeats", options.repeats}, {"warmup", options.warmup},
                                      {"size", options.size_bytes}, {"direct_io", options.direct_io}}},
                          {"rows", json_rows}};
    if (options.json_file.empty()) {
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    std::ofstream(options.json_file) << out.dump(2) << "\n";
  }
  std::printf("ckptw bench --ranks %d: %d rank process%s, each writing the synthetic model (%.3f GB payload),\n"
              "all at once; %d repeats after %d warm-up, fsync on\n", options.ranks, options.ranks,
              options.ranks == 1 ? "" : "es", options.size_bytes / 1e9, options.repeats, options.warmup);
  std::printf("machine:    %s\nfilesystem: %s\n\n", machine.c_str(), filesystem.c_str());
  std::printf("%-12s %12s %9s %9s %14s %9s  %s\n", "row", "node GB/s med", "min", "max", "slowest rank s", "CPU s/GB",
              "how");
  for (const RankRow& row : rows) {
    const auto g = row.aggregate_gbps();
    std::printf("%-12s %12.3f %9.3f %9.3f %14.3f %9.3f  %s\n", row.name.c_str(), median(g),
                *std::min_element(g.begin(), g.end()), *std::max_element(g.begin(), g.end()),
                median(row.slowest_rank_seconds()), row.cpu_s_per_gb(), row.note.c_str());
  }
  std::printf("\nnode GB/s = all ranks' bytes / (first rank's start to last rank's end), the ranks released by one\n"
              "barrier; CPU s/GB summed over the ranks, median over the rounds. ckptw: one writer per rank with\n"
              "the vote and manifest (TCPStore on loopback); limit: raw O_DIRECT writes of the same bytes in each\n"
              "rank; torch.save: one Python saver per rank. Rows interleaved as in the single-process table.\n");
  return 0;
}

int run_bench(const BenchOptions& options) {
  if (options.rank_child) return run_bench_rank(options);
  if (options.ranks > 0) return run_bench_ranks(options);
  std::optional<PreviousRun> previous;
  if (!options.compare_file.empty()) previous = load_previous_run(options.compare_file, options);
  Progress progress(/*quiet=*/false);
  const BenchDirectory bench_dir(options);
  const std::string& dir = bench_dir.path();

  progress.line("building the synthetic model (" + std::to_string(options.size_bytes) + " bytes)");
  SyntheticModel model = make_synthetic_model(options.size_bytes, options.seed);

  std::vector<Row> rows;
  const std::string ckpt_dir = dir + "/ckptw";
  std::vector<std::vector<std::string>> order;
  std::uint64_t file_bytes = 0;
  if (options.read) {
    rows = measure_reads(model, ckpt_dir, options, progress);
    file_bytes = rows.front().bytes;
  } else {
    // The source of the Python rows and the byte count of `limit`, written once, untimed.
    progress.line("writing the model once (the Python rows load it)");
    file_bytes = CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(dir + "/source", model.state_dict).bytes_written;
    const std::string source = dir + "/source/checkpoint_0.pt";
    const std::string out = dir + "/out";
    fs::create_directories(out);
    std::vector<Runner> runners;
    auto writer_row = [&](const char* name, IoBackendKind backend, WriteCall call = WriteCall::kWrite) {
      runners.push_back(set_up([&] { return writer_runner(name, backend, model.state_dict, out, options, call); }));
    };
    if (options.backend) {
      writer_row("ckptw", *options.backend);
      writer_row("ckptw-async", *options.backend, WriteCall::kWriteAsync);
    } else {
      writer_row("ckptw", IoBackendKind::kAuto);
      writer_row("ckptw-posix", IoBackendKind::kPosix);
      writer_row("ckptw-uring", IoBackendKind::kUring);
      writer_row("ckptw-async", IoBackendKind::kAuto, WriteCall::kWriteAsync);
    }
    runners.push_back(set_up([&] { return limit_runner(file_bytes, out); }));
    std::vector<std::function<void(Row&)>> finishers(runners.size());
    if (options.torch_save) {
      for (const char* saver : {"torch.save", "ckptw.save", "dcp", "safetensors"}) {
        progress.line(std::string(saver) + ": starting " + CKPTW_PYTHON_SAVE_SCRIPT);
        std::vector<std::function<void(Row&)>> finisher;
        runners.push_back(python_runner(saver, source, out, &finisher));
        finishers.push_back(finisher.empty() ? nullptr : finisher.front());
      }
    }
    rows = run_rounds(runners, out, options, progress, order);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (finishers[i]) finishers[i](rows[i]);
    }
  }
  progress.done();

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
  std::printf("%-12s %9s %9s %9s %9s %9s %9s %10s %10s  %s\n", "row", "GB/s med", "min", "max", "rerun p90", "x limit",
              "CPU s/GB", "peak RSS", "extra RSS", "how");
  for (const auto& r : rows) {
    if (!r.ok()) {
      std::printf("%-12s %s\n", r.name.c_str(), r.note.c_str());
      continue;
    }
    auto g = r.gbps();
    std::printf("%-12s %9.3f %9.3f %9.3f %7.0f %% %9.2f %9.3f %8.0f M %8.0f M  %s\n", r.name.c_str(), median(g),
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
      std::printf("\n%-12s %9s %9s %9s %9s   CPU s/GB by phase\n", "row", "plan", "copy+CRC", "write", "other");
      phases_header = true;
    }
    const CpuPhases per_gb = r.cpu_phases_per_gb();
    std::printf("%-12s %9.3f %9.3f %9.3f %9.3f\n", r.name.c_str(), per_gb.plan, per_gb.copy_crc,
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
    std::printf("%-12s %9s %9s %7s %17s  %s\n", "row", "GB/s then", "now", "move", "rerun p90 then/now", "");
    const RowMove* disk = nullptr;
    for (const RowMove& m : moves) {
      std::printf("%-12s %9.3f %9.3f %+6.0f %% %8.0f %% / %3.0f %%  %s\n", m.name.c_str(), m.before_gbps, m.now_gbps,
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

}  // namespace ckptw::cli
