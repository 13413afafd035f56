#include "writer/published_file.hpp"

#include "ckptw/error.hpp"
#include "util/stopwatch.hpp"

namespace ckptw::detail {

std::uint32_t write_published_file(IoBackend& io, BufferRing& ring, const CheckpointWriterConfig& config,
                                   std::vector<MemoryRegion> staging_memory, std::uint64_t file_size,
                                   WriteResult& result, const StreamFile& stream,
                                   const std::function<void(const Vote&)>& before_publish) {
  TempFile file(io, result.file, config.direct_io);
  result.direct_io = file.direct();
  // Preallocating the whole (block-rounded) file keeps the writes from
  // extending it one by one, which makes ext4/xfs punt them to worker
  // threads; it also sets the size, so the file is truncated after.
  const std::uint64_t block = BufferRing::kAlignment;
  (void)io.preallocate(file.fd(), (file_size + block - 1) / block * block);  // best effort
  ImageStreamer::Result streamed;
  {
    io.set_staging_memory(std::move(staging_memory));
    std::unique_ptr<WriteQueue> queue = io.open_queue(file.fd(), ring, config.queue_depth);
    ImageStreamer streamer(ring);
    streamed = stream(streamer, *queue, file);
  }
  if (int rc = io.truncate(file.fd(), file_size); rc < 0) {
    throw IoError("cannot truncate to the final size", file.temp_path(), "", -rc);
  }
  before_publish(Vote{true, streamed.bytes, streamed.directory_crc32, ""});
  Stopwatch publishing;
  file.publish(config.fsync);
  result.sync_secs = publishing.elapsed();
  result.copy_crc_secs = streamed.copy_crc_secs;
  result.bytes_written = streamed.bytes;
  return streamed.directory_crc32;
}

}  // namespace ckptw::detail
