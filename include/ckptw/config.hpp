// Configuration of a CheckpointWriter. Every field has its default inline.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptw/export.hpp"

namespace ckptw {

struct CKPTW_EXPORT CheckpointWriterConfig {
  /// Maximum time, in seconds, a write waits at the barrier for the other ranks.
  /// Default 600 (the seed's value). Must be > 0.
  int write_barrier_timeout_secs = 600;

  /// Alignment, in bytes, of every record payload inside the .pt file; written to
  /// the `.storage_alignment` record. Default 64, as torch.save. A power of two
  /// in [1, 4096]; torch's mmap loader honours any value it finds in the file.
  std::uint32_t storage_alignment = 64;

  /// Size, in bytes, of the host buffer through which the file image is streamed
  /// to the kernel. Larger buffers mean fewer system calls; memory use is bounded
  /// by this value regardless of the checkpoint size. Default 8 MiB; at least 4 KiB.
  std::size_t write_buffer_bytes = std::size_t{8} << 20;

  /// fsync the file and its directory before the checkpoint counts as written.
  /// Default true. Turning it off makes writes faster and lets a power loss leave
  /// an older or missing file (never a torn one under the final name on
  /// filesystems that order rename after data, such as ext4 with data=ordered).
  bool fsync = true;
};

}  // namespace ckptw
