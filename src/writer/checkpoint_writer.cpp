#include "ckptw/checkpoint_writer.hpp"

#include <cstdio>

#include "ckptw/error.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "plan/state_dict_plan.hpp"
#include "util/stopwatch.hpp"
#include "writer/image_streamer.hpp"

namespace ckptw {

class CheckpointWriter::Impl {
 public:
  Impl(CheckpointWriterConfig config, RankInfo rank_info, std::shared_ptr<Barrier> barrier,
       std::shared_ptr<WriterHook> hook)
      : config_(config),
        rank_info_(rank_info),
        barrier_(std::move(barrier)),
        hook_(std::move(hook)),
        io_(detail::make_posix_backend()),
        streamer_(config.write_buffer_bytes) {}

  WriteResult write(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs) {
    if (closed_) throw UsageError("write() on a closed CheckpointWriter", path);
    if (path.empty()) throw UsageError("checkpoint path is empty");
    detail::Stopwatch total;
    detail::Stopwatch phase;
    WriteResult result;
    result.file = path + "/checkpoint_" + std::to_string(rank_info_.global_rank) + ".pt";

    // Plan first: invalid input must fail before anything touches the disk.
    detail::PlanOptions options;
    options.folder = detail::archive_folder_for(result.file);
    options.alignment = config_.storage_alignment;
    detail::FilePlan plan = detail::plan_state_dict(state_dict, options);
    result.plan_secs = phase.lap();
    result.tensor_count = plan.tensor_count;
    result.storage_count = plan.storage_count;

    std::vector<std::string> created = detail::make_directories(*io_, path);
    try {
      detail::TempFile file(*io_, result.file);
      result.bytes_written = streamer_.stream(plan, *io_, file.fd(), result.file);
      result.write_secs = phase.lap();
      file.publish(config_.fsync);
      result.sync_secs = phase.lap();
    } catch (...) {
      detail::remove_created_directories(*io_, created);
      throw;
    }

    if (hook_) hook_->pre_commit(path, kwargs);
    result.pre_commit_secs = phase.lap();
    if (barrier_) barrier_->execute_barrier();
    result.barrier_secs = phase.lap();
    if (hook_) hook_->post_commit(path, kwargs);
    result.post_commit_secs = phase.lap();
    result.total_secs = total.elapsed();
    return result;
  }

  void close() {
    closed_ = true;
    streamer_.release();
  }

  CheckpointWriterConfig config_;
  RankInfo rank_info_;

 private:
  std::shared_ptr<Barrier> barrier_;
  std::shared_ptr<WriterHook> hook_;
  std::unique_ptr<detail::IoBackend> io_;
  detail::ImageStreamer streamer_;
  bool closed_ = false;
};

namespace {

void validate(const CheckpointWriterConfig& config, const RankInfo& rank_info) {
  if (config.write_barrier_timeout_secs <= 0) {
    throw UsageError("write_barrier_timeout_secs must be > 0, got " +
                     std::to_string(config.write_barrier_timeout_secs));
  }
  const std::uint32_t a = config.storage_alignment;
  if (a == 0 || a > 4096 || (a & (a - 1)) != 0) {
    throw UsageError("storage_alignment must be a power of two in [1, 4096], got " + std::to_string(a));
  }
  if (config.write_buffer_bytes < 4096) {
    throw UsageError("write_buffer_bytes must be at least 4096, got " +
                     std::to_string(config.write_buffer_bytes));
  }
  if (rank_info.global_world_size < 1 || rank_info.global_rank < 0 ||
      rank_info.global_rank >= rank_info.global_world_size) {
    throw UsageError("rank " + std::to_string(rank_info.global_rank) + " is outside [0, " +
                     std::to_string(rank_info.global_world_size) + ")");
  }
}

}  // namespace

CheckpointWriter::CheckpointWriter(CheckpointWriterConfig config, RankInfo rank_info,
                                   std::shared_ptr<Barrier> barrier,
                                   std::shared_ptr<WriterHook> commit_hook) {
  validate(config, rank_info);
  impl_ = std::make_unique<Impl>(config, rank_info, std::move(barrier), std::move(commit_hook));
}

CheckpointWriter::~CheckpointWriter() = default;
CheckpointWriter::CheckpointWriter(CheckpointWriter&&) noexcept = default;
CheckpointWriter& CheckpointWriter::operator=(CheckpointWriter&&) noexcept = default;

WriteResult CheckpointWriter::write(const std::string& path, const StateDict& state_dict,
                                    const HookArgs& kwargs) {
  if (!impl_) throw UsageError("write() on a moved-from CheckpointWriter", path);
  return impl_->write(path, state_dict, kwargs);
}

WriteResult CheckpointWriter::write(const std::string& path, const StateDict& state_dict) {
  return write(path, state_dict, make_state_dict());
}

void CheckpointWriter::close() {
  if (impl_) impl_->close();
}

const CheckpointWriterConfig& CheckpointWriter::config() const noexcept { return impl_->config_; }
const RankInfo& CheckpointWriter::rank_info() const noexcept { return impl_->rank_info_; }

}  // namespace ckptw
