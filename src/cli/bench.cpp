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
//   torch.save, ckptw.save, dcp, ckptw.dcp, safetensors, torch-checkpointing:
//     Python savers writing the same state dict (loaded from the ckptw file)
//     durably, in the project's Python (bench/python_save_bench.py): torch's
//     reference, ckptw through its binding, torch.distributed.checkpoint with
//     the stock writer and with ckptw.dcp's (one process), safetensors and
//     torch_checkpointing (the seed's successor on PyPI), the peers users
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
#include "cli/bench.hpp"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ckptw/checkpoint_writer.hpp"
#include "cli/bench/compare.hpp"
#include "cli/bench/python_peers.hpp"
#include "cli/bench/ranks.hpp"
#include "cli/bench/report.hpp"
#include "cli/bench/rounds.hpp"
#include "cli/bench/rows.hpp"
#include "cli/synthetic_model.hpp"

namespace ckptw::cli {

using namespace bench;
namespace fs = std::filesystem;

int run_bench(const BenchOptions& options) {
  if (options.dcp) return run_dcp_bench(options);
  if (options.convert) return run_convert_bench(options);
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
      for (const char* saver : {"torch.save", "ckptw.save", "dcp", "ckptw.dcp", "safetensors", "torch-checkpointing"}) {
        progress.line(std::string(saver) + ": starting " + bench_script("python_save_bench.py"));
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
  return report(rows, model, file_bytes, order, previous, options);
}

}  // namespace ckptw::cli
