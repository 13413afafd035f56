// CRC-32 as zip uses it (IEEE 802.3, reflected, zlib.crc32-compatible),
// computed with ISA-L's carry-less-multiply kernels (several GB/s per core).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ckptw::detail {

/// Extends `crc` (0 for a fresh checksum) over `size` bytes at `data`;
/// crc32_update(crc32_update(0, a), b) == crc32 of a followed by b.
std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size);

}  // namespace ckptw::detail
