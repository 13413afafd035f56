// CRC-32 (zip's) of device memory, computed on the GPU so that the host never
// reads the bytes: each block checksums one kCrcSliceBytes slice (128 threads
// × 128 bytes, combined in the block with a precomputed shift operator), and
// the host combines the slice CRCs (src/checksum: crc32_shift/crc32_apply).
// Asynchronous: the caller moves the slice CRCs to the host on its stream.
// Plain C++ interface, free of LibTorch headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ckptw::detail::cuda {

inline constexpr std::size_t kCrcSliceBytes = 16384;
inline constexpr std::size_t kCrcSubSliceBytes = 128;

/// Slices of `bytes` bytes: ceil(bytes / kCrcSliceBytes), the last over the
/// remainder.
inline std::size_t crc32_slice_count(std::size_t bytes) { return (bytes + kCrcSliceBytes - 1) / kCrcSliceBytes; }

/// Uploads the 128-byte shift operator (crc32_shift(128)) to the current
/// device, once per device before its first crc32_queue_slices(), on `stream`
/// (a cudaStream_t).
std::string crc32_prepare_device(const std::uint32_t shift_128[32], void* stream);

/// Queues, on `stream` of the current device, the slice CRCs of device memory
/// [data, data + bytes) into device memory `slice_crcs` (crc32_slice_count
/// of them). Returns an error message, empty on success.
std::string crc32_queue_slices(const void* data, std::size_t bytes, std::uint32_t* slice_crcs, void* stream);

}  // namespace ckptw::detail::cuda
