#include "ckptw/checkpoint_writer.hpp"

#include <cstdio>

#include "ckptw/error.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "plan/state_dict_plan.hpp"
#include "util/stopwatch.hpp"
#include "stage/buffer_ring.hpp"
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
        io_(detail::make_backend(config.io_backend, config.queue_depth)),
        ring_(std::make_unique<detail::BufferRing>(config.ring_buffers, config.write_buffer_bytes)) {}

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
    result.io_backend = io_->name();
    try {
      detail::TempFile file(*io_, result.file, config_.direct_io);
      result.direct_io = file.direct();
      // Preallocating the whole (block-rounded) file keeps the writes from
      // extending it one by one, which makes ext4/xfs punt them to worker
      // threads; it also sets the size, so the file is truncated after.
      const std::uint64_t rounded =
          (plan.file_size + detail::BufferRing::kAlignment - 1) / detail::BufferRing::kAlignment *
          detail::BufferRing::kAlignment;
      (void)io_->preallocate(file.fd(), rounded);  // best effort: tmpfs and others may refuse
      {
        std::unique_ptr<detail::WriteQueue> queue = io_->open_queue(file.fd(), *ring_, config_.queue_depth);
        detail::ImageStreamer streamer(*ring_);
        result.bytes_written = streamer.stream(plan, *queue, result.file, file.direct());
      }
      if (int rc = io_->truncate(file.fd(), plan.file_size); rc < 0) {
        throw IoError("cannot truncate to the final size", file.temp_path(), "", -rc);
      }
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
    ring_.reset();
  }

  CheckpointWriterConfig config_;
  RankInfo rank_info_;

 private:
  std::shared_ptr<Barrier> barrier_;
  std::shared_ptr<WriterHook> hook_;
  std::unique_ptr<detail::IoBackend> io_;
  std::unique_ptr<detail::BufferRing> ring_;  // allocated once, reused by every write
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
  if (config.write_buffer_bytes < (std::size_t{64} << 10) || config.write_buffer_bytes > (std::size_t{1} << 30) ||
      config.write_buffer_bytes % detail::BufferRing::kAlignment != 0) {
    throw UsageError("write_buffer_bytes must be a multiple of 4096 in [64 KiB, 1 GiB], got " +
                     std::to_string(config.write_buffer_bytes));
  }
  if (config.ring_buffers < 2) {
    throw UsageError("ring_buffers must be at least 2, got " + std::to_string(config.ring_buffers));
  }
  if (config.queue_depth < 1 || config.queue_depth > config.ring_buffers) {
    throw UsageError("queue_depth must be in [1, ring_buffers=" + std::to_string(config.ring_buffers) + "], got " +
                     std::to_string(config.queue_depth));
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
