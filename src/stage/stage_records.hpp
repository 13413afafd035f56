// Capturing a plan's payloads into the snapshot arena: device storages (and,
// for write_async, every storage) are copied into pinned host memory through
// the copy engine, and the plan's records are repointed at the copies.
#pragma once

#include "plan/file_plan.hpp"
#include "stage/copy_engine.hpp"
#include "stage/snapshot_arena.hpp"

namespace ckptw::detail {

enum class StageWhat { kDeviceRecords, kAllRecords };

/// Copies the payloads `what` selects into `arena`, each device's copies
/// ordered after the work already queued on that device's current stream,
/// and repoints the records at the copies.
///  - kAllRecords (write_async's capture): every payload at its file offset,
///    so the arena holds the file image (plan.image) but for headers and
///    descriptors; waits for every copy; the plan no longer refers to the
///    caller's tensors afterwards.
///  - kDeviceRecords (write): device payloads, and, when the host payloads
///    are small (options.image_host_bytes: an all-GPU state dict) and the
///    image fits the arena's budget, those too,
///    all at their file offsets (plan.image, written straight from the
///    arena); otherwise device payloads only, in record order, large ones
///    page-aligned, and the host ones written from their own memory.
///    Returns at once; each record carries the ticket
///    of its copy, which the streamer waits for before writing it, so disk
///    writes overlap the copies still in flight. The caller must finish()
///    the engine before the arena is reused, also after a failure.
/// Returns the bytes staged.
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

std::uint64_t stage_records(FilePlan& plan, StageWhat what, SnapshotArena& arena, CopyEngine& engine,
                            const StageOptions& options = StageOptions());

}  // namespace ckptw::detail
