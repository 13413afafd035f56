#include "checksum/crc32.hpp"

#include <isa-l/crc.h>

#include "checksum/crc32_math.hpp"

namespace ckptw::detail {

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  // crc32_gzip_refl takes and returns the finalized value, like zlib's crc32().
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), size);
}

Crc32Shift crc32_shift(std::uint64_t length) {
  Crc32Shift shift{};
  crc32_math::shift_operator(length, shift.data());
  return shift;
}

std::uint32_t crc32_apply(const Crc32Shift& shift, std::uint32_t crc) { return crc32_math::times(shift.data(), crc); }

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b) {
  return crc32_math::combine(crc_a, crc_b, length_b);
}

}  // namespace ckptw::detail
