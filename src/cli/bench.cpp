// What it measures: wall time of writing the synthetic model to a fresh temp
// directory on the chosen filesystem, fsync of file and directory included in
// every figure, warm model in memory, one warm-up write per row first.
// Rows, in one run on the same bytes:
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
// (user + system) per GB written. Peak RSS: the process's high-water mark
// during the row (reset before it via /proc/self/clear_refs); "extra" is that
// minus the RSS before the row, i.e. what writing added on top of the model.
#include "cli/bench.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <random>
#include <sstream>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/error.hpp"
#include "cli/synthetic_model.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "stage/buffer_ring.hpp"
#include "util/stopwatch.hpp"

namespace ckptw::cli {
namespace {

namespace fs = std::filesystem;

struct Row {
  std::string name;
  std::string note;                 // e.g. "missing: ..." or "posix, O_DIRECT"
  std::vector<double> seconds;
  std::uint64_t bytes = 0;
  double cpu_seconds = 0;           // over the timed repeats
  std::uint64_t peak_rss_bytes = 0;
  std::uint64_t extra_rss_bytes = 0;
  std::vector<double> blocking_seconds;  // write_async rows: until the call returned
  bool ok() const { return !seconds.empty(); }
  std::vector<double> gbps() const {
    std::vector<double> v;
    for (double s : seconds) v.push_back(static_cast<double>(bytes) / s / 1e9);
    return v;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double cpu_seconds_self() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
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

enum class WriteCall { kWrite, kWriteAsync };

Row measure_writer(const std::string& name, IoBackendKind backend, const StateDict& model, const std::string& dir,
                   const BenchOptions& options, Progress& progress, WriteCall call = WriteCall::kWrite) {
  CheckpointWriterConfig config;
  config.io_backend = backend;
  config.direct_io = options.direct_io;
  const std::uint64_t baseline_rss = status_kib("VmRSS:") * 1024;  // before the writer's ring exists
  std::unique_ptr<CheckpointWriter> writer;
  try {
    writer = std::make_unique<CheckpointWriter>(config, RankInfo{0, 1});
  } catch (const Error& e) {
    Row row;
    row.name = name;
    row.note = std::string("unavailable: ") + e.what();
    return row;
  }
  std::string how;
  std::vector<double> blocking;  // warm-up calls first
  Row row = measure(name, options, progress, [&] {
    WriteResult result;
    if (call == WriteCall::kWriteAsync) {
      detail::Stopwatch blocked;
      std::future<WriteResult> written = writer->write_async(dir, model);
      blocking.push_back(blocked.elapsed());
      result = written.get();
    } else {
      result = writer->write(dir, model);
    }
    how = result.io_backend + (result.direct_io ? ", O_DIRECT" : ", buffered");
    return result.bytes_written;
  }, baseline_rss);
  row.note = how;
  if (call == WriteCall::kWriteAsync) {
    row.blocking_seconds.assign(blocking.begin() + options.warmup, blocking.end());
    char text[80];
    std::snprintf(text, sizeof text, "; caller blocked %.3f s med", median(row.blocking_seconds));
    row.note += text;
  }
  return row;
}

// The filesystem's own limit: sequential writes of pre-filled aligned buffers.
Row measure_limit(std::uint64_t bytes, const std::string& dir, const BenchOptions& options, Progress& progress) {
  CheckpointWriterConfig config;
  auto io = detail::make_backend(IoBackendKind::kAuto, config.queue_depth);
  detail::BufferRing ring(config.ring_buffers, config.write_buffer_bytes);
  std::mt19937_64 rng(1);
  for (std::size_t i = 0; i < ring.count(); ++i) {
    auto* words = reinterpret_cast<std::uint64_t*>(ring.data(i));
    for (std::size_t w = 0; w < ring.buffer_bytes() / 8; ++w) words[w] = rng();
  }
  const std::uint64_t block = detail::BufferRing::kAlignment;
  const std::uint64_t rounded = (bytes + block - 1) / block * block;
  bool direct = false;
  Row row = measure("limit", options, progress, [&] {
    const std::string path = dir + "/limit.bin";
    detail::TempFile file(*io, path, config.direct_io);
    direct = file.direct();
    (void)io->preallocate(file.fd(), rounded);
    {
      auto queue = io->open_queue(file.fd(), ring, config.queue_depth);
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
    file.publish(true);
    return bytes;
  });
  row.note = std::string(io->name()) + (direct ? ", O_DIRECT" : ", buffered");
  return row;
}

std::string default_python() {
  if (const char* env = std::getenv("CKPTW_PYTHON"); env && *env) return env;
  return CKPTW_DEFAULT_PYTHON;
}

// A reference row run by a script in the project's Python: torch.save of the
// same state dict, or torch.load of the same file (see the scripts).
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
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw IoError("pipe failed", "", "", errno);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    std::vector<std::string> argv_text = {python, script};
    argv_text.insert(argv_text.end(), script_args.begin(), script_args.end());
    argv_text.push_back(std::to_string(options.repeats));
    argv_text.push_back(std::to_string(options.warmup));
    std::vector<char*> argv_ptrs;
    for (auto& a : argv_text) argv_ptrs.push_back(a.data());
    argv_ptrs.push_back(nullptr);
    execv(python.c_str(), argv_ptrs.data());
    _exit(127);
  }
  ::close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) output.append(buffer, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    row.note = "failed: " + python + " " + script + " exited with status " + std::to_string(status);
    return row;
  }
  auto result = nlohmann::json::parse(output);
  row.bytes = result["file_bytes"].get<std::uint64_t>();
  row.seconds = result["seconds"].get<std::vector<double>>();
  row.peak_rss_bytes = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
  if (result.contains("cpu_seconds")) {
    double cpu = 0;
    for (double s : result["cpu_seconds"].get<std::vector<double>>()) cpu += s;
    row.cpu_seconds = cpu;
    row.note = result["version"].get<std::string>();
  } else {
    // Only the child's rusage: it covers start-up and the warm-up too; scale to the timed part.
    const double total_cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
                             usage.ru_stime.tv_usec / 1e6;
    row.cpu_seconds = total_cpu * options.repeats / (options.repeats + options.warmup + 1);
    row.note = "torch " + result["torch_version"].get<std::string>() + ", CPU s/GB approximate";
  }
  return row;
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
  const std::string file = ckpt_dir + "/checkpoint_0.pt";
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

int run_bench(const BenchOptions& options) {
  Progress progress(/*quiet=*/false);
  std::string pattern = (fs::path(options.dir) / "ckptw-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw IoError("cannot create the benchmark directory", pattern, "", errno);
  const std::string dir = pattern;
  struct Cleanup {
    std::string dir;
    bool keep;
    ~Cleanup() {
      std::error_code ignored;
      if (!keep) fs::remove_all(dir, ignored);
    }
  } cleanup{dir, options.keep};

  progress.line("building the synthetic model (" + std::to_string(options.size_bytes) + " bytes)");
  SyntheticModel model = make_synthetic_model(options.size_bytes, options.seed);

  std::vector<Row> rows;
  const std::string ckpt_dir = dir + "/ckptw";
  if (options.read) {
    rows = measure_reads(model, ckpt_dir, options, progress);
  } else if (options.backend) {
    rows.push_back(measure_writer("ckptw", *options.backend, model.state_dict, ckpt_dir, options, progress));
    rows.push_back(measure_writer("ckptw-async", *options.backend, model.state_dict, ckpt_dir, options, progress,
                                  WriteCall::kWriteAsync));
  } else {
    rows.push_back(measure_writer("ckptw", IoBackendKind::kAuto, model.state_dict, ckpt_dir, options, progress));
    rows.push_back(measure_writer("ckptw-posix", IoBackendKind::kPosix, model.state_dict, ckpt_dir, options, progress));
    rows.push_back(measure_writer("ckptw-uring", IoBackendKind::kUring, model.state_dict, ckpt_dir, options, progress));
    rows.push_back(measure_writer("ckptw-async", IoBackendKind::kAuto, model.state_dict, ckpt_dir, options, progress,
                                  WriteCall::kWriteAsync));
  }
  const std::uint64_t file_bytes = rows.front().bytes;
  if (!options.read) rows.push_back(measure_limit(file_bytes, dir, options, progress));
  if (options.torch_save && !options.read) {
    for (const char* saver : {"torch.save", "ckptw.save", "dcp", "safetensors"}) {
      const std::string out = dir + "/" + saver;
      fs::create_directories(out);
      rows.push_back(measure_python(saver, CKPTW_PYTHON_SAVE_SCRIPT, {ckpt_dir + "/checkpoint_0.pt", out, saver},
                                    options, progress));
      fs::remove_all(out);  // the next row's writes get the same free space
    }
  }
  progress.done();

  const Row* limit = nullptr;
  for (const auto& r : rows) {
    if ((r.name == "limit" || r.name == "raw read") && r.ok()) limit = &r;
  }
  auto ratio = [&](const Row& r) { return limit ? median(r.gbps()) / median(limit->gbps()) : 0.0; };
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
                    {"cpu_s_per_gb", r.cpu_seconds / (r.bytes / 1e9 * options.repeats)},
                    {"peak_rss_bytes", r.peak_rss_bytes},
                    {"extra_rss_bytes", r.extra_rss_bytes}});
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
          {"write_buffer_bytes", defaults.write_buffer_bytes},
          {"ring_buffers", defaults.ring_buffers},
          {"queue_depth", defaults.queue_depth},
          {"direct_io", options.direct_io},
          {"fsync", defaults.fsync}}},
        {"rows", json_rows},
    };
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
  std::printf("%-12s %9s %9s %9s %9s %9s %10s %10s  %s\n", "row", "GB/s med", "min", "max", "x limit", "CPU s/GB",
              "peak RSS", "extra RSS", "how");
  for (const auto& r : rows) {
    if (!r.ok()) {
      std::printf("%-12s %s\n", r.name.c_str(), r.note.c_str());
      continue;
    }
    auto g = r.gbps();
    std::printf("%-12s %9.3f %9.3f %9.3f %9.2f %9.3f %8.0f M %8.0f M  %s\n", r.name.c_str(), median(g),
                *std::min_element(g.begin(), g.end()), *std::max_element(g.begin(), g.end()), ratio(r),
                r.cpu_seconds / (r.bytes / 1e9 * options.repeats), r.peak_rss_bytes / 1048576.0,
                r.extra_rss_bytes / 1048576.0, r.note.c_str());
  }
  std::printf("\nGB = 1e9 bytes; RSS in MiB; extra RSS = peak during the row minus RSS before it (the model is %.0f MiB).\n",
              model.payload_bytes / 1048576.0);
  return 0;
}

}  // namespace ckptw::cli
