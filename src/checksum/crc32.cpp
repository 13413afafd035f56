#include "checksum/crc32.hpp"

#include <isa-l/crc.h>

namespace ckptw::detail {

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  // crc32_gzip_refl takes and returns the finalized value, like zlib's crc32().
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), size);
}

namespace {

std::uint32_t times(const Crc32Shift& matrix, std::uint32_t vector) {
  std::uint32_t sum = 0;
  for (int i = 0; vector != 0; ++i, vector >>= 1) {
    if (vector & 1) sum ^= matrix[i];
  }
  return sum;
}

Crc32Shift square(const Crc32Shift& matrix) {
  Crc32Shift out{};
  for (int i = 0; i < 32; ++i) out[i] = times(matrix, matrix[i]);
  return out;
}

}  // namespace

Crc32Shift crc32_shift(std::uint64_t length) {
  // The operator for one zero bit, squared up to one byte, then combined per
  // set bit of the length (zlib's crc32_combine, as a reusable operator).
  Crc32Shift odd{};
  odd[0] = 0xEDB88320u;  // the reflected polynomial
  for (int i = 1; i < 32; ++i) odd[i] = 1u << (i - 1);
  Crc32Shift even = square(odd);  // 2 zero bits
  odd = square(even);             // 4 zero bits
  Crc32Shift result{};
  for (int i = 0; i < 32; ++i) result[i] = 1u << i;  // identity
  // Squares of `odd` walk 1, 2, 4, ... bytes.
  Crc32Shift step = square(odd);  // 8 bits: one byte
  while (length != 0) {
    if (length & 1) {
      Crc32Shift next{};
      for (int i = 0; i < 32; ++i) next[i] = times(step, result[i]);
      result = next;
    }
    length >>= 1;
    if (length != 0) step = square(step);
  }
  return result;
}

std::uint32_t crc32_apply(const Crc32Shift& shift, std::uint32_t crc) { return times(shift, crc); }

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b) {
  return crc32_apply(crc32_shift(length_b), crc_a) ^ crc_b;
}

}  // namespace ckptw::detail
