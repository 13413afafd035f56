#include "cli/bench/rows.hpp"


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
#include "cli/bench/python_peers.hpp"

namespace ckptw::cli::bench {

namespace fs = std::filesystem;

Row measure(const std::string& name, const BenchOptions& options, Progress& progress,
            const std::function<std::uint64_t()>& once, std::uint64_t baseline_rss) {
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

Runner writer_runner(const std::string& name, IoBackendKind backend, const StateDict& model, const std::string& out,
                     const BenchOptions& options, WriteCall call, RankInfo rank, std::shared_ptr<Barrier> barrier) {
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

Runner limit_runner(std::uint64_t bytes, const std::string& out, const std::string& file_name) {
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
    rows.push_back(measure_python("torch.load", bench_script("torch_load_bench.py"), {file}, options, progress));
  }
  return rows;
}

}  // namespace ckptw::cli::bench
