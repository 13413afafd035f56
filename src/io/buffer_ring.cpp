#include "io/buffer_ring.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <sys/mman.h>

#include "ckptw/error.hpp"
#include "util/huge_pages.hpp"

namespace ckptw::detail {

BufferRing::BufferRing(std::size_t count, std::size_t buffer_bytes) : buffer_bytes_(buffer_bytes) {
  static std::atomic<std::uint64_t> next_id{1};
  id_ = next_id.fetch_add(1);
  const std::size_t bytes = std::max(count * buffer_bytes, kAlignment);
  // A ring of at least one huge page starts on a huge-page boundary, so that
  // every 2 MiB of it can be one transparent huge page.
  const std::size_t align = bytes >= kHugePageBytes ? kHugePageBytes : kAlignment;
  mapped_bytes_ = (bytes + align - 1) / align * align + (align - kAlignment);
  void* p = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int error = errno;
    throw Error("cannot allocate " + std::to_string(count) + " write buffers of " + std::to_string(buffer_bytes) +
                    " bytes",
                "", "", error);
  }
  mapping_ = static_cast<unsigned char*>(p);
  keep_out_of_forks(mapping_, mapped_bytes_);
  auto* base = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(mapping_) + align - 1) / align * align);
  // Huge pages make each buffer a few physically contiguous runs. A write
  // from a buffer of scattered 4 KiB pages becomes a scatter list of
  // hundreds of segments, and a block device's segment limit (254 on
  // virtio-blk) splits it into many small requests: on the 2026-12-03 VM,
  // rings of 831-2,048 runs per 8 MiB wrote O_DIRECT at 1.5-1.7 GB/s in
  // 0.5 MiB requests, rings of 4 runs at 3.5-4.0 GB/s in 4 MiB requests
  // (bench/ring_contiguity.c, docs/performance-log.md). Where THP is off this is
  // a no-op.
  advise_huge_pages(base, bytes);
  // Touch every page now so that the first checkpoint does not pay the page faults.
  std::memset(base, 0, bytes);
  buffers_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) buffers_.push_back(base + i * buffer_bytes);
}

BufferRing::~BufferRing() { ::munmap(mapping_, mapped_bytes_); }

}  // namespace ckptw::detail
