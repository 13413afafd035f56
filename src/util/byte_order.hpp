// Little-endian integer encoding into byte strings (zip and pickle are both LE).
#pragma once

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

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "ckptw copies tensor bytes verbatim and writes byteorder=little");

}  // namespace ckptw::detail
