// The rows of `ckptw bench` that run in this process: CheckpointWriter's
// write() and write_async() over each backend, the filesystem's own limit,
// and the read rows; each as a Runner (types.hpp) or measured in place.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ckptw/barrier.hpp"
#include "ckptw/config.hpp"
#include "ckptw/types.hpp"
#include "cli/bench/types.hpp"
#include "cli/synthetic_model.hpp"

namespace ckptw::cli::bench {

/// Runs `once` warmup + repeats times; `once` returns the bytes it wrote.
/// `baseline_rss` is the RSS the row's extra memory is counted from (taken
/// before the row set anything up); 0 takes it at the start of the timed part.
Row measure(const std::string& name, const BenchOptions& options, Progress& progress,
            const std::function<std::uint64_t()>& once, std::uint64_t baseline_rss = 0);

/// `make()`, with the RSS it added noted in the Runner.
Runner set_up(const std::function<Runner()>& make);

enum class WriteCall { kWrite, kWriteAsync };

/// CheckpointWriter::write() (or write_async(), timed to the commit) of
/// `model` into `out` over `backend`.
Runner writer_runner(const std::string& name, IoBackendKind backend, const StateDict& model, const std::string& out,
                     const BenchOptions& options, WriteCall call = WriteCall::kWrite, RankInfo rank = RankInfo{0, 1},
                     std::shared_ptr<Barrier> barrier = nullptr);

/// The filesystem's own limit: sequential writes of pre-filled aligned buffers
/// through the auto backend, no copy, no CRC, no format.
Runner limit_runner(std::uint64_t bytes, const std::string& out, const std::string& file_name = rank_file_name(0));

/// Read rows: the file is written once (untimed), then read cold (its pages
/// dropped from the page cache before every repeat) by CheckpointReader, by a
/// raw sequential O_DIRECT read, and by torch.load.
std::vector<Row> measure_reads(const SyntheticModel& model, const std::string& ckpt_dir, const BenchOptions& options,
                               Progress& progress);

}  // namespace ckptw::cli::bench
