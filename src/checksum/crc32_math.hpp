// The arithmetic of zip's CRC-32 (reflected IEEE polynomial, finalized values
// as zlib.crc32 returns them) shared by the host and the GPU kernel
// (cuda/crc32.cu): the byte-at-a-time table loop and zlib's GF(2) operators
// that move a CRC past a run of bytes. Header-only and callable from device
// code, so the kernel's own arithmetic is checked against ISA-L in CI, where
// no GPU runs it (tests/unit/crc32_test.cpp).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CKPTW_HOST_DEVICE __host__ __device__
#else
#define CKPTW_HOST_DEVICE
#endif

namespace ckptw::detail::crc32_math {

inline constexpr std::uint32_t kReflectedPolynomial = 0xEDB88320u;

/// Entry `index` (0..255) of the byte-at-a-time table.
CKPTW_HOST_DEVICE inline std::uint32_t table_entry(std::uint32_t index) {
  std::uint32_t c = index;
  for (int k = 0; k < 8; ++k) c = (c & 1) ? kReflectedPolynomial ^ (c >> 1) : c >> 1;
  return c;
}

/// Extends the finalized `crc` (0 for nothing yet) over `size` bytes, one
/// table lookup per byte (`table`: the 256 table_entry values).
CKPTW_HOST_DEVICE inline std::uint32_t update_bytes(const std::uint32_t* table, std::uint32_t crc,
                                                    const unsigned char* data, std::uint64_t size) {
  std::uint32_t c = ~crc;
  for (std::uint64_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

/// A GF(2) 32×32 matrix as 32 columns applied to `vector`.
CKPTW_HOST_DEVICE inline std::uint32_t times(const std::uint32_t* matrix, std::uint32_t vector) {
  std::uint32_t sum = 0;
  for (int i = 0; vector != 0; ++i, vector >>= 1) {
    if (vector & 1) sum ^= matrix[i];
  }
  return sum;
}

CKPTW_HOST_DEVICE inline void square(const std::uint32_t* in, std::uint32_t* out) {
  for (int i = 0; i < 32; ++i) out[i] = times(in, in[i]);
}

/// The operator that moves a CRC past `length` more bytes (zlib's
/// crc32_combine matrices, kept as a reusable operator): applying it costs 32
/// conditional XORs, computing it log2(length) squarings.
CKPTW_HOST_DEVICE inline void shift_operator(std::uint64_t length, std::uint32_t* out) {
  std::uint32_t step[32], scratch[32];
  step[0] = kReflectedPolynomial;  // one zero bit
  for (int i = 1; i < 32; ++i) step[i] = 1u << (i - 1);
  for (int bits = 1; bits < 8; bits *= 2) {  // 1 → 2 → 4 → 8 zero bits: one byte
    square(step, scratch);
    for (int i = 0; i < 32; ++i) step[i] = scratch[i];
  }
  for (int i = 0; i < 32; ++i) out[i] = 1u << i;  // identity
  while (length != 0) {  // squares of `step` walk 1, 2, 4, ... bytes
    if (length & 1) {
      for (int i = 0; i < 32; ++i) scratch[i] = times(step, out[i]);
      for (int i = 0; i < 32; ++i) out[i] = scratch[i];
    }
    length >>= 1;
    if (length != 0) {
      square(step, scratch);
      for (int i = 0; i < 32; ++i) step[i] = scratch[i];
    }
  }
}

/// CRC-32 of A followed by B, from crc(A), crc(B) and B's length.
CKPTW_HOST_DEVICE inline std::uint32_t combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b) {
  std::uint32_t shift[32];
  shift_operator(length_b, shift);
  return times(shift, crc_a) ^ crc_b;
}

/// Parts of `part_bytes` each but the last, which holds the rest of `bytes`.
CKPTW_HOST_DEVICE inline std::uint64_t part_count(std::uint64_t bytes, std::uint64_t part_bytes) {
  return (bytes + part_bytes - 1) / part_bytes;
}

/// The CRC of `bytes` bytes from the CRCs of its consecutive parts
/// (part_count(bytes, part_bytes) of them); `part_shift` is
/// shift_operator(part_bytes), so only a short last part costs a new operator.
CKPTW_HOST_DEVICE inline std::uint32_t join_parts(const std::uint32_t* part_crcs, std::uint64_t bytes,
                                                  std::uint64_t part_bytes, const std::uint32_t* part_shift) {
  std::uint32_t crc = 0;
  for (std::uint64_t i = 0, at = 0; at < bytes; ++i, at += part_bytes) {
    const std::uint64_t length = bytes - at < part_bytes ? bytes - at : part_bytes;
    crc = length == part_bytes ? times(part_shift, crc) ^ part_crcs[i] : combine(crc, part_crcs[i], length);
  }
  return crc;
}

}  // namespace ckptw::detail::crc32_math
