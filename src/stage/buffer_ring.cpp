#include "stage/buffer_ring.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ckptw/error.hpp"

namespace ckptw::detail {

BufferRing::BufferRing(std::size_t count, std::size_t buffer_bytes) : buffer_bytes_(buffer_bytes) {
  static std::atomic<std::uint64_t> next_id{1};
  id_ = next_id.fetch_add(1);
  buffers_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    void* p = nullptr;
    if (posix_memalign(&p, kAlignment, buffer_bytes) != 0) {
      for (unsigned char* b : buffers_) std::free(b);
      throw Error("cannot allocate " + std::to_string(count) + " write buffers of " +
                      std::to_string(buffer_bytes) + " bytes",
                  "", "", ENOMEM);
    }
    // Touch every page now so that the first checkpoint does not pay the page faults.
    std::memset(p, 0, buffer_bytes);
    buffers_.push_back(static_cast<unsigned char*>(p));
  }
}

BufferRing::~BufferRing() {
  for (unsigned char* b : buffers_) std::free(b);
}

}  // namespace ckptw::detail
