// The CRC-32 ckptw records for every record of a .pt file and every item of
// a DCP checkpoint (the checksum sidecar), for callers that check bytes they
// read themselves: ckptw.dcp's reader checks each item as it reads it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptw/export.hpp"

namespace ckptw {

/// Extends `crc` (0 for a fresh checksum) over `size` bytes at `data`: zip's
/// CRC-32 (IEEE 802.3, reflected; the value zlib.crc32 gives), computed with
/// ISA-L, several times zlib's speed. crc32(b, m, crc32(a, n)) is the CRC-32
/// of a followed by b.
CKPTW_EXPORT std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace ckptw
