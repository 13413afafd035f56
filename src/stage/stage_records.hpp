// Capturing a plan's payloads into the snapshot arena: device storages (and,
// for write_async, every storage) are copied into pinned host memory through
// the copy engine, and the plan's records are repointed at the copies. Or,
// where no arena may hold them, device storages streamed through the ring.
#pragma once

#include <cstdint>
#include <vector>

#include "plan/file_plan.hpp"
#include "stage/copy_engine.hpp"
#include "stage/snapshot_arena.hpp"

namespace ckptw::detail {

enum class StageWhat { kDeviceRecords, kAllRecords };

/// Copies the payloads `what` selects into `arena`, each device's copies
/// ordered after the work already queued on that device's current stream,
/// and repoints the records at the copies.
///  - kAllRecords (write_async's capture): every payload at its file offset,
///    so the arena holds the file image (Staging::image) but for headers and
///    descriptors; waits for every copy; the plan no longer refers to the
///    caller's tensors afterwards.
///  - kDeviceRecords (write): device payloads, and, when the host payloads
///    are small (options.image_host_bytes: an all-GPU state dict) and the
///    image fits the arena's budget, those too,
///    all at their file offsets (Staging::image, written straight from the
///    arena); otherwise device payloads only, in record order, large ones
///    page-aligned, and the host ones written from their own memory.
///    Returns at once; the Staging holds each record's copy ticket, which
///    the streamer waits for before writing it, so disk writes overlap the
///    copies still in flight. The caller must finish() the engine before the
///    arena is reused, also after a failure.
struct StageOptions {
  /// Order each device's copies after its producer stream (false only in
  /// tests that stand host memory in for a device).
  bool order_after_producers = true;
  /// Checksum device payloads on the device (CopyEngine::queue_device_crc32):
  /// kAllRecords takes the CRCs before returning, kDeviceRecords leaves
  /// their tickets to the streamer.
  bool checksum_on_device = false;
  /// With checksum_on_device: payloads below this many bytes are checksummed
  /// on the host (CheckpointWriterConfig::crc_on_gpu_min_bytes).
  std::uint64_t device_checksum_min_bytes = 0;
  /// kDeviceRecords: host payload bytes up to which host records are copied
  /// into the file image next to the device ones (a copy either way: into
  /// the image here, or into the ring while streaming).
  std::uint64_t image_host_bytes = std::uint64_t{64} << 20;
};

/// A staged record's work still in flight.
struct StagedRecord {
  /// The copy engine's ticket to wait for before the payload is read (0: landed).
  std::uint64_t copy_ticket = 0;
  /// The device CRC-32 still being computed, for device_crc32_result() (0: none).
  std::uint64_t crc32_ticket = 0;
};

/// What stage_records() leaves beside the plan for the streamer: where the
/// file image is, and what is still being copied or checksummed. Run-time
/// state of one write; the plan only says what the file holds.
struct Staging {
  /// Page-aligned memory of at least file_size rounded up to 4096 bytes in
  /// which every payload already sits at its file offset (records[i].data ==
  /// image + payload_offset), or nullptr. The streamer fills in headers,
  /// descriptors and the central directory around them and writes the file
  /// straight from it, O_DIRECT included: no copy through the ring.
  unsigned char* image = nullptr;
  /// By plan record index; empty when nothing is in flight.
  std::vector<StagedRecord> records;

  const StagedRecord& record(std::size_t index) const {
    static const StagedRecord kLanded;
    return index < records.size() ? records[index] : kLanded;
  }
};

Staging stage_records(FilePlan& plan, StageWhat what, SnapshotArena& arena, CopyEngine& engine,
                      const StageOptions& options = StageOptions());

/// Device payloads streamed instead of staged, for files whose payloads must
/// not be held in host memory all at once (save_segments: the shards of one
/// torch.distributed.checkpoint rank): each device record becomes a streamed
/// record (PlannedRecord::source, owned by the plan) whose pieces `engine`
/// copies straight into the ring buffer the streamer gives, one piece at a
/// time, waiting for each; the copies are ordered after each device's
/// producer stream (options.order_after_producers; checksum_on_device does
/// not apply: the streamer checksums each piece in the ring). No host memory beyond
/// the ring, and no staging arena. Returns whether the plan had device
/// records; then the caller must finish() the engine after the write, also
/// after a failure, and the engine must outlive the plan's writes.
bool stream_device_records(FilePlan& plan, CopyEngine& engine, const StageOptions& options = StageOptions());

}  // namespace ckptw::detail
