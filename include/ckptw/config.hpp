// Configuration of a CheckpointWriter. Every field has its default inline.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptw/export.hpp"

namespace ckptw {

/// Which kernel interface writes the file.
enum class IoBackendKind : std::uint8_t {
  kAuto,   ///< io_uring when it can be set up, otherwise POSIX (logged once)
  kUring,  ///< io_uring only; failing to set it up is an error
  kPosix,  ///< pwrite from a small thread pool
};

/// "auto", "uring" or "posix".
CKPTW_EXPORT const char* to_string(IoBackendKind kind);
/// Parses "auto", "uring" or "posix"; throws ckptw::UsageError otherwise.
CKPTW_EXPORT IoBackendKind parse_io_backend_kind(const char* text);

struct CKPTW_EXPORT CheckpointWriterConfig {
  /// Maximum time, in seconds, a write waits at the barrier for the other ranks.
  /// Default 600 (the seed's value). Must be > 0.
  int write_barrier_timeout_secs = 600;

  /// Alignment, in bytes, of every record payload inside the .pt file; written to
  /// the `.storage_alignment` record. Default 64, as torch.save. A power of two
  /// in [1, 4096]; torch's mmap loader honours any value it finds in the file.
  std::uint32_t storage_alignment = 64;

  /// Kernel interface for the file writes. Default kAuto.
  IoBackendKind io_backend = IoBackendKind::kAuto;

  /// Write with O_DIRECT, bypassing the page cache, where the filesystem allows
  /// it (the writer falls back to buffered writes where O_DIRECT is refused).
  /// Default true: checkpoints are written once and rarely read back soon, and
  /// O_DIRECT keeps them from evicting the trainer's page cache.
  bool direct_io = true;

  /// Size, in bytes, of each buffer of the write ring through which the file
  /// image is streamed: the size of one write system call or SQE. A multiple of
  /// 4096 in [64 KiB, 1 GiB]. Default 8 MiB (measured: docs/performance-log.md).
  std::size_t write_buffer_bytes = std::size_t{8} << 20;

  /// Number of buffers in the ring. The writer's memory for file data is
  /// ring_buffers * write_buffer_bytes, whatever the checkpoint size; they are
  /// allocated once per writer and reused. At least 2. Default 4.
  unsigned ring_buffers = 4;

  /// Writes in flight at once (io_uring queue depth, or POSIX writer threads).
  /// In [1, ring_buffers]. Default 3: one buffer is being filled while three
  /// are written.
  unsigned queue_depth = 3;

  /// fsync the file and its directory before the checkpoint counts as written.
  /// Default true. Turning it off makes writes faster and lets a power loss leave
  /// an older or missing file (never a torn one under the final name on
  /// filesystems that order rename after data, such as ext4 with data=ordered).
  bool fsync = true;

  /// Record every tensor's location as "cpu" in the file instead of its
  /// device, so that torch.load without map_location puts everything on the
  /// CPU. Default false: "cuda:0" as torch.save records it.
  bool record_device_as_cpu = false;

  /// Most bytes of host staging memory the writer may hold, all snapshot
  /// sets together (each set gets an equal share): write_async() captures
  /// whole state dicts into a set, write() stages device storages through
  /// one. 0 (default): no limit, each set grows to the largest state dict.
  /// A state dict needing more than a set's share fails with
  /// ckptw::UsageError.
  std::size_t staging_budget_bytes = 0;

  /// Snapshot sets write_async() captures into, 1 or 2. With 1 (default) a
  /// write_async() waits for the previous write to finish before it
  /// captures. With 2 it captures into the free set while the previous write
  /// is still going to disk, and waits only when both sets are taken (one
  /// write running, one captured and queued); the writes still run one after
  /// the other, in call order. Costs a second set of staging memory.
  unsigned snapshot_sets = 1;

  /// Compute each CUDA storage's CRC-32 on its GPU (a kernel in cuda/, slice
  /// CRCs combined on the host), so the host never checksums those bytes.
  /// Default false: ISA-L on the host, fast and already overlapped with I/O.
  bool crc_on_gpu = false;
  /// With crc_on_gpu: storages smaller than this are checksummed on the host
  /// after their copy lands. A device CRC costs a handful of API calls and a
  /// kernel on the copy stream; for KB-sized storages (biases, norms: often
  /// thousands of them) that costs more than the host's CRC of their bytes
  /// and holds up the packed copies. Default 1 MiB; 0 checksums every
  /// storage on its GPU.
  std::size_t crc_on_gpu_min_bytes = std::size_t{1} << 20;

  /// How long close() waits for a write in flight. Default 600 s.
  int close_timeout_secs = 600;
};

}  // namespace ckptw
