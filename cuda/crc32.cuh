// CRC-32 (zip's) of device memory, computed on the GPU so that the host never
// reads the bytes: each block checksums one kCrcSliceBytes slice (128 threads
// × 128 bytes, joined in the block with a precomputed shift operator), and
// the host joins the slice CRCs (crc32_math::join_parts).
// Asynchronous: the caller moves the slice CRCs to the host on its stream.
// Plain C++ interface, free of LibTorch headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "checksum/crc32_math.hpp"

namespace ckptw::detail::cuda {

inline constexpr std::size_t kCrcSliceBytes = 16384;
inline constexpr std::size_t kCrcSubSliceBytes = 128;

/// Slices of `bytes` bytes: ceil(bytes / kCrcSliceBytes), the last over the
/// remainder.
inline std::size_t crc32_slice_count(std::size_t bytes) { return crc32_math::part_count(bytes, kCrcSliceBytes); }

/// What thread `sub` of block `slice` computes: the CRC of sub-slice `sub`
/// of slice `slice` of [data, data + bytes), which must exist.
CKPTW_HOST_DEVICE inline std::uint32_t crc32_sub_slice(const unsigned char* data, std::uint64_t bytes,
                                                       std::uint64_t slice, std::uint64_t sub,
                                                       const std::uint32_t* table) {
  const std::uint64_t begin = slice * kCrcSliceBytes + sub * kCrcSubSliceBytes;
  const std::uint64_t length = bytes - begin < kCrcSubSliceBytes ? bytes - begin : kCrcSubSliceBytes;
  return crc32_math::update_bytes(table, 0, data + begin, length);
}

/// Sub-slices of slice `slice`: the threads of its block that have work.
CKPTW_HOST_DEVICE inline std::uint64_t crc32_sub_slice_count(std::uint64_t bytes, std::uint64_t slice) {
  const std::uint64_t rest = bytes - slice * kCrcSliceBytes;
  return crc32_math::part_count(rest < kCrcSliceBytes ? rest : kCrcSliceBytes, kCrcSubSliceBytes);
}

/// What thread 0 of block `slice` computes from its block's sub-slice CRCs:
/// the slice's CRC. `shift_sub_slice` = crc32_math::shift_operator(kCrcSubSliceBytes).
CKPTW_HOST_DEVICE inline std::uint32_t crc32_join_sub_slices(const std::uint32_t* sub_crcs, std::uint64_t bytes,
                                                             std::uint64_t slice,
                                                             const std::uint32_t* shift_sub_slice) {
  const std::uint64_t rest = bytes - slice * kCrcSliceBytes;
  return crc32_math::join_parts(sub_crcs, rest < kCrcSliceBytes ? rest : kCrcSliceBytes, kCrcSubSliceBytes,
                                shift_sub_slice);
}

/// Uploads the sub-slice shift operator (crc32_shift(kCrcSubSliceBytes)) to the current
/// device, once per device before its first crc32_queue_slices(), on `stream`
/// (a cudaStream_t).
std::string crc32_prepare_device(const std::uint32_t shift_sub_slice[32], void* stream);

/// Queues, on `stream` of the current device, the slice CRCs of device memory
/// [data, data + bytes) into device memory `slice_crcs` (crc32_slice_count
/// of them). Returns an error message, empty on success.
std::string crc32_queue_slices(const void* data, std::size_t bytes, std::uint32_t* slice_crcs, void* stream);

}  // namespace ckptw::detail::cuda
