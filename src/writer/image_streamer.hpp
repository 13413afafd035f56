// Streams a laid-out FilePlan to a file descriptor through one bounded host
// buffer: headers, payloads (CRC-32'd while they are hot in cache after the
// copy), data descriptors, central directory and end records, in file order.
//
// Memory stays bounded by the buffer whatever the checkpoint size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/io_backend.hpp"
#include "plan/file_plan.hpp"

namespace ckptw::detail {

class ImageStreamer {
 public:
  /// `buffer_bytes` is the largest single write issued.
  explicit ImageStreamer(std::size_t buffer_bytes);

  /// Writes the whole file image of `plan` to `fd` starting at offset 0.
  /// Throws ckptw::IoError naming `path` on a failed write. Returns the number
  /// of bytes written, which equals plan.file_size.
  std::uint64_t stream(const FilePlan& plan, IoBackend& io, int fd, const std::string& path);

  /// Releases the buffer (it is reallocated on the next stream()).
  void release();

 private:
  void append(const void* data, std::size_t size, std::uint32_t* crc);
  void flush();

  std::size_t capacity_;
  std::vector<unsigned char> buffer_;
  std::size_t buffered_ = 0;
  std::uint64_t buffer_offset_ = 0;  // file offset of buffer_[0]
  IoBackend* io_ = nullptr;
  int fd_ = -1;
  const std::string* path_ = nullptr;
};

/// The 40-digit serialization id: 20 digits of a hash of the record names and
/// 20 digits of a hash of the CRCs of the records written before it.
std::string serialization_id(const std::vector<std::string>& full_names,
                             const std::vector<std::uint32_t>& crcs);

}  // namespace ckptw::detail
