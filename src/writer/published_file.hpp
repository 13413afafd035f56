// One file written through the ring under a temporary name and published
// under its final name: what write(), save() and save_segments() share.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ckptw/checkpoint_writer.hpp"
#include "commit/atomic_file.hpp"
#include "commit/manifest.hpp"
#include "io/buffer_ring.hpp"
#include "io/io_backend.hpp"
#include "writer/image_streamer.hpp"

namespace ckptw::detail {

/// Streams the file's bytes into the queue of its temporary file.
using StreamFile = std::function<ImageStreamer::Result(ImageStreamer&, WriteQueue&, const TempFile&)>;

/// Writes result.file (`file_size` bytes, by `stream`) under a temporary
/// name, truncated to its size, runs `before_publish` with this rank's vote,
/// then publishes it (fsync per config.fsync, rename, directory fsync). Fills
/// in result's direct_io, sync_secs, copy_crc_secs and bytes_written; returns
/// the streamed directory CRC-32. `staging_memory` is declared to the backend
/// first (io_uring registers it). On failure the temporary file is removed.
std::uint32_t write_published_file(IoBackend& io, BufferRing& ring, const CheckpointWriterConfig& config,
                                   std::vector<MemoryRegion> staging_memory, std::uint64_t file_size,
                                   WriteResult& result, const StreamFile& stream,
                                   const std::function<void(const Vote&)>& before_publish);

}  // namespace ckptw::detail
