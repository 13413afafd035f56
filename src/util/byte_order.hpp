// Little-endian integer encoding into byte strings (zip and pickle are both
// LE), and the byte swap that reads a big-endian checkpoint's storages.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ckptw::detail {

inline void put_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}
inline void put_u16(std::string& out, std::uint16_t v) { put_le(out, v, 2); }
inline void put_u32(std::string& out, std::uint32_t v) { put_le(out, v, 4); }
inline void put_u64(std::string& out, std::uint64_t v) { put_le(out, v, 8); }

inline std::uint64_t get_le(const unsigned char* p, int bytes) {
  std::uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

/// Reverses the bytes of each `unit`-byte element of [data, data + size)
/// (torch's UntypedStorage._byteswap); a trailing partial element is left.
inline void swap_byte_order(unsigned char* data, std::size_t size, std::size_t unit) {
  if (unit < 2) return;
  for (std::size_t at = 0; at + unit <= size; at += unit) std::reverse(data + at, data + at + unit);
}

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "ckptw copies tensor bytes verbatim and writes byteorder=little");

}  // namespace ckptw::detail
