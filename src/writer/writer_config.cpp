#include "writer/writer_config.hpp"

#include <string>

#include "ckptw/error.hpp"
#include "io/buffer_ring.hpp"

namespace ckptw::detail {

void validate_writer_config(const CheckpointWriterConfig& config, const RankInfo& rank_info) {
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
  if (config.snapshot_sets < 1 || config.snapshot_sets > 2) {
    throw UsageError("snapshot_sets must be 1 or 2, got " + std::to_string(config.snapshot_sets));
  }
  if (rank_info.global_world_size < 1 || rank_info.global_rank < 0 ||
      rank_info.global_rank >= rank_info.global_world_size) {
    throw UsageError("rank " + std::to_string(rank_info.global_rank) + " is outside [0, " +
                     std::to_string(rank_info.global_world_size) + ")");
  }
}

PlanOptions plan_options(const CheckpointWriterConfig& config, const std::string& folder) {
  PlanOptions options;
  options.folder = folder;
  options.alignment = config.storage_alignment;
  options.record_device_as_cpu = config.record_device_as_cpu;
  return options;
}

StageOptions stage_options(const CheckpointWriterConfig& config) {
  StageOptions options;
  options.checksum_on_device = config.crc_on_gpu;
  options.device_checksum_min_bytes = config.crc_on_gpu_min_bytes;
  return options;
}

}  // namespace ckptw::detail
