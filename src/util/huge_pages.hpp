// Transparent huge pages for the large anonymous mappings of the write ring,
// the write_async staging arena and the reader's tensor memory: fewer page
// faults when they are first touched, and buffers of a few physically
// contiguous runs for O_DIRECT (see BufferRing).
#pragma once

#include <cstddef>

#include <sys/mman.h>

namespace ckptw::detail {

inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

/// Asks for transparent huge pages over [data, data + bytes) when it spans
/// at least one; only the 2 MiB-aligned parts can become huge pages. Advice
/// only: where THP is off or `never`, nothing changes.
inline void advise_huge_pages(void* data, std::size_t bytes) {
  if (bytes >= kHugePageBytes) (void)::madvise(data, bytes, MADV_HUGEPAGE);
}

}  // namespace ckptw::detail
