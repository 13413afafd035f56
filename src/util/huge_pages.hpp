// Advice for ckptw's large anonymous mappings. Transparent huge pages for the
// write ring, the write_async staging arena and the reader's tensor memory:
// fewer page faults when they are first touched, and buffers of a few
// physically contiguous runs for O_DIRECT (see BufferRing). And, for the
// staging memory alone, no copy into fork()ed children.
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

/// Keeps [data, data + bytes) out of fork()ed children (MADV_DONTFORK), for
/// ckptw's private staging memory only (the write ring, the write_async
/// arena), never for tensors handed to the caller. That memory is pinned
/// long-term (io_uring fixed buffers, cudaHostRegister), and Linux copies
/// such pages into a child at fork() at once: every DataLoader worker forked
/// after the first checkpoint would get its own copy of the rank's staging
/// memory. No child uses it (ckptw's threads do not survive a fork either).
inline void keep_out_of_forks(void* data, std::size_t bytes) { (void)::madvise(data, bytes, MADV_DONTFORK); }

}  // namespace ckptw::detail
