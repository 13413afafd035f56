// Streams a laid-out FilePlan into a file through the writer's BufferRing:
// headers, payloads (CRC-32'd while hot in cache right after the copy into
// the buffer), data descriptors, central directory and end records, in file
// order. While one buffer is filled the others are being written, so copying
// and checksumming overlap with the I/O.
//
// Into an O_DIRECT file each buffer covers one buffer-sized, buffer-aligned
// range of the file, so every write but the last is aligned; the last is
// padded to the block size when asked (the caller truncates the file to its
// real size). Into a buffered file, payloads of at least kInPlaceMinBytes are
// written straight from their memory (one copy, the kernel's), checksummed
// while the kernel writes them; the ring carries the rest.
//
// Streamed payloads (PlannedRecord::source) are produced straight into the
// ring's buffers.
//
// A plan whose payloads were staged at their file offsets (Staging::image, see
// stage_records: write_async's captures, and write() of an all-GPU state
// dict) needs no ring at all; records still being copied are waited for one
// by one, in file order. The streamer writes headers,
// descriptors and the central directory into the gaps of the image and
// writes it in ring-buffer-sized pieces straight from that memory, each
// piece as soon as it is final, O_DIRECT included (the image is page-aligned
// and pieces start on buffer-size multiples).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/io_backend.hpp"
#include "plan/file_plan.hpp"
#include "io/buffer_ring.hpp"
#include "stage/copy_engine.hpp"
#include "stage/stage_records.hpp"

namespace ckptw::detail {

class ImageStreamer {
 public:
  static constexpr std::size_t kInPlaceMinBytes = std::size_t{256} << 10;

  explicit ImageStreamer(BufferRing& ring) : ring_(ring) {}

  /// Writes the file image of `plan` from offset 0 through `queue`, waiting
  /// for every write. With `pad_last_write` the final write is rounded up to
  /// BufferRing::kAlignment with zeros. Throws ckptw::IoError naming `path` on
  /// a failed write, after the writes in flight have drained.
  struct Result {
    std::uint64_t bytes = 0;            ///< plan.file_size
    std::uint32_t directory_crc32 = 0;  ///< CRC-32 of the central directory and end records
    double copy_crc_secs = 0;           ///< in payload copies into the ring and CRC-32 computations, which never wait
  };
  /// With `staging` (what stage_records() returned for `plan`), from its
  /// image when it has one; records still being copied are written once
  /// `engine` says their copy landed, and device CRC-32s are taken from it.
  Result stream(const FilePlan& plan, WriteQueue& queue, const std::string& path, bool pad_last_write,
                const Staging* staging = nullptr, CopyEngine* engine = nullptr);

  /// One piece of a file of several: `size` raw bytes at `bytes`, or, when
  /// `archive` is set, that laid-out plan's whole archive (its offsets are
  /// the archive's own, as torch.save's are when it writes into a stream).
  struct Segment {
    const void* bytes = nullptr;
    std::size_t size = 0;
    const FilePlan* archive = nullptr;
  };
  struct SegmentResult {
    std::uint64_t offset = 0;  ///< in the file
    std::uint64_t length = 0;
    std::uint32_t crc32 = 0;   ///< of all the segment's bytes
  };
  /// Writes `segments` back to back from offset 0 through the ring (the
  /// archives' payloads in host memory, no Staging), as stream() writes one
  /// archive; returns where each landed and its CRC-32. Sets
  /// `*copy_crc_secs` as Result::copy_crc_secs. Throws as stream() does.
  std::vector<SegmentResult> stream_segments(const std::vector<Segment>& segments, WriteQueue& queue,
                                             const std::string& path, bool pad_last_write,
                                             double* copy_crc_secs = nullptr);

 private:
  struct ArchiveCrcs {
    std::uint32_t directory = 0;  ///< of the central directory and end records
    std::uint32_t whole = 0;      ///< of every byte of the archive, when asked for
  };
  void start(WriteQueue& queue, const std::string& path, unsigned char* image);
  ArchiveCrcs stream_archive(const FilePlan& plan, bool in_place, const Staging& staging, CopyEngine* engine,
                             bool whole_crc);
  std::uint64_t finish(bool pad_last_write);
  std::uint64_t offset() const;  // file bytes streamed so far
  void put(const void* data, std::size_t size, std::uint32_t* crc);
  void put_payload(const PlannedRecord& record, bool in_place, std::uint32_t* crc);
  void put_from_source(const PlannedRecord& record, std::uint32_t* crc);
  void submit_image_through(std::uint64_t ready, std::uint64_t padded_end);
  void append(const void* data, std::size_t size, std::uint32_t* crc);
  void write_in_place(const unsigned char* data, std::size_t size, std::uint32_t* crc);
  void note_done(std::size_t buffer);
  void take_completion();
  void submit_current(std::size_t size);
  void acquire();
  void check_queue();

  BufferRing& ring_;
  WriteQueue* queue_ = nullptr;
  const std::string* path_ = nullptr;
  std::vector<std::size_t> free_;    // ring buffers not being written
  std::size_t current_ = 0;          // ring buffer being filled
  std::size_t buffered_ = 0;         // bytes in the current buffer
  std::uint64_t buffer_offset_ = 0;  // file offset of the current buffer's first byte
  std::size_t externals_in_flight_ = 0;  // in-place payload writes not yet finished
  unsigned char* image_ = nullptr;       // Staging::image, or nullptr: through the ring
  std::uint64_t image_end_ = 0;          // image mode: the image is final below it
  std::uint64_t image_submitted_ = 0;    // image mode: file bytes handed to the queue
  double copy_crc_secs_ = 0;             // Result::copy_crc_secs so far
  // The first bytes of the last streamed payload (PlannedRecord::source):
  // the serialization id reads a payload's first 8.
  static constexpr std::size_t kSourceHeadBytes = 8;
  std::string source_head_;
};

}  // namespace ckptw::detail
