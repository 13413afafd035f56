// CRC-32 (zip's) of device memory, computed on the GPU so that the host never
// reads the bytes: each block checksums one kCrcSliceBytes slice (128 threads
// × 128 bytes, combined in the block with a precomputed shift operator), and
// the host combines the slice CRCs (src/checksum: crc32_shift/crc32_apply).
// Plain C++ interface, free of LibTorch headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ckptw::detail::cuda {

inline constexpr std::size_t kCrcSliceBytes = 16384;
inline constexpr std::size_t kCrcSubSliceBytes = 128;

/// Queues the slice CRCs of [data, data + bytes) on `device`'s `stream` (a
/// cudaStream_t) and waits for them. `shift_128` is crc32_shift(128).
/// *slice_crcs gets ceil(bytes / kCrcSliceBytes) CRCs, the last over the
/// remainder. Returns an error message, empty on success.
std::string crc32_slices(const void* data, std::size_t bytes, int device, void* stream,
                         const std::uint32_t shift_128[32], std::vector<std::uint32_t>* slice_crcs);

}  // namespace ckptw::detail::cuda
