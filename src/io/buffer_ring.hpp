// The ring of page-aligned host buffers the file image is streamed through.
//
// Allocated once per writer and reused for every write, so memory for file
// data is bounded by count * size whatever the checkpoint size. Page
// alignment makes every buffer usable for O_DIRECT and for io_uring fixed
// buffers (registered once by the backend). The buffers are one mapping,
// backed by huge pages where the kernel has them, so that an O_DIRECT write
// from a buffer is a few physically contiguous runs, not one per 4 KiB page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ckptw::detail {

class BufferRing {
 public:
  static constexpr std::size_t kAlignment = 4096;

  /// `buffer_bytes` must be a multiple of kAlignment.
  BufferRing(std::size_t count, std::size_t buffer_bytes);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  std::size_t count() const noexcept { return buffers_.size(); }
  std::size_t buffer_bytes() const noexcept { return buffer_bytes_; }
  unsigned char* data(std::size_t index) const noexcept { return buffers_[index]; }
  /// Unique for the life of the process: a new ring allocated where an old
  /// one was gets another id (io_uring registrations are keyed by it).
  std::uint64_t id() const noexcept { return id_; }

 private:
  std::size_t buffer_bytes_;
  unsigned char* mapping_ = nullptr;  // one mapping holds every buffer
  std::size_t mapped_bytes_ = 0;
  std::vector<unsigned char*> buffers_;
  std::uint64_t id_;
};

}  // namespace ckptw::detail
