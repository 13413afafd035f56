// CRC-32 as zip uses it (IEEE 802.3, reflected, zlib.crc32-compatible),
// computed with ISA-L's carry-less-multiply kernels (several GB/s per core).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ckptw::detail {

/// Extends `crc` (0 for a fresh checksum) over `size` bytes at `data`;
/// crc32_update(crc32_update(0, a), b) == crc32 of a followed by b.
std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size);

/// Copies `size` bytes from `src` to `dst` (not overlapping) and returns
/// crc32_update(crc, src, size), in one pass over memory: each L2-sized piece
/// is checksummed from the source, which leaves it in cache, and then copied
/// from there with non-temporal stores, so the destination (a write buffer
/// the kernel or the disk reads next) neither evicts the source nor is read
/// for ownership. The stores are fenced before it returns: another thread or
/// the kernel may read `dst` as soon as it does. Small copies take memcpy.
std::uint32_t crc32_copy(void* dst, const void* src, std::size_t size, std::uint32_t crc);

/// The GF(2) operator that moves a CRC-32 past `length` more bytes, as 32
/// columns (crc32_math::shift_operator). Computing one costs 32 polynomial
/// products more than crc32_combine; applying it is 32 conditional XORs, so
/// slice CRCs of a fixed length (the GPU's) combine cheaply.
using Crc32Shift = std::array<std::uint32_t, 32>;
Crc32Shift crc32_shift(std::uint64_t length);
std::uint32_t crc32_apply(const Crc32Shift& shift, std::uint32_t crc);

/// CRC-32 of A followed by B, from crc(A), crc(B) and B's length.
std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b);

}  // namespace ckptw::detail
