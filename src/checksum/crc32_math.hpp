// The arithmetic of zip's CRC-32 (reflected IEEE polynomial, finalized values
// as zlib.crc32 returns them) shared by the host and the GPU kernel
// (cuda/cuda_device_runtime.cu): the byte-at-a-time table loop, zlib's GF(2)
// arithmetic that moves a CRC past a run of bytes, and how the kernel splits a
// storage into slices (one block each) and sub-slices (one thread each).
// Header-only and callable from device code, so the kernel's own arithmetic
// and indexing (its coalesced staging of a slice in shared memory included)
// are checked against ISA-L in CI, where no GPU runs them
// (tests/unit/crc32_test.cpp, and the emulated device).
#pragma once

#include <cstdint>

#include "util/host_device.hpp"

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

/// The product of the polynomials `a` and `b` modulo the CRC's polynomial,
/// both in the CRC's reflected bit order (x^0 is bit 31): 32 shift-and-XOR
/// steps.
CKPTW_HOST_DEVICE inline std::uint32_t multiply_mod(std::uint32_t a, std::uint32_t b) {
  std::uint32_t product = 0;
  for (std::uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? kReflectedPolynomial ^ (b >> 1) : b >> 1;  // b × x
  }
  return product;
}

/// x^(8 × length) modulo the CRC's polynomial: what moving a CRC past
/// `length` bytes multiplies it by (zlib's crc32_combine arithmetic). Square
/// and multiply over the bits of `length`: at most 2 × 64 products, where
/// the GF(2) matrices this replaced cost a 32 × 32 matrix squaring per bit,
/// which made each record of a many-tensor file cost tens of microseconds.
CKPTW_HOST_DEVICE inline std::uint32_t byte_shift_factor(std::uint64_t length) {
  std::uint32_t factor = 1u << 31;       // x^0
  std::uint32_t power = 1u << (31 - 8);  // x^8: one byte, then squared: 2, 4, 8, ... bytes
  while (length != 0) {
    if (length & 1) factor = multiply_mod(power, factor);
    length >>= 1;
    if (length != 0) power = multiply_mod(power, power);
  }
  return factor;
}

/// The operator that moves a CRC past `length` more bytes as 32 columns,
/// kept for reuse: applying it with times() costs 32 conditional XORs.
/// Column i is the image of bit i, so times(out, crc) equals
/// multiply_mod(byte_shift_factor(length), crc) by linearity.
CKPTW_HOST_DEVICE inline void shift_operator(std::uint64_t length, std::uint32_t* out) {
  const std::uint32_t factor = byte_shift_factor(length);
  for (int i = 0; i < 32; ++i) out[i] = multiply_mod(factor, 1u << i);
}

/// CRC-32 of A followed by B, from crc(A), crc(B) and B's length.
CKPTW_HOST_DEVICE inline std::uint32_t combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b) {
  return multiply_mod(byte_shift_factor(length_b), crc_a) ^ crc_b;
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

// ---- The GPU's slices ------------------------------------------------------

/// One block checksums one slice; each of its threads one sub-slice.
inline constexpr std::uint64_t kSliceBytes = 16384;
inline constexpr std::uint64_t kSubSliceBytes = 128;
inline constexpr unsigned kThreadsPerSlice = kSliceBytes / kSubSliceBytes;

CKPTW_HOST_DEVICE inline std::uint64_t slice_length(std::uint64_t bytes, std::uint64_t slice) {
  const std::uint64_t rest = bytes - slice * kSliceBytes;
  return rest < kSliceBytes ? rest : kSliceBytes;
}

/// The block's shared copy of its slice: sub-slice t at t * kStagedSubSliceBytes,
/// 4 bytes of padding after each, so that the threads of a warp, each reading
/// its own sub-slice, hit 32 different shared-memory banks (an unpadded
/// 128-byte stride would put all 32 on one).
inline constexpr std::uint64_t kStagedSubSliceBytes = kSubSliceBytes + 4;
inline constexpr std::uint64_t kStagedSliceBytes = kThreadsPerSlice * kStagedSubSliceBytes;

/// Where byte `k` of a slice sits in its staged copy.
CKPTW_HOST_DEVICE inline std::uint64_t staged_offset(std::uint64_t k) { return k + k / kSubSliceBytes * 4; }

/// What thread `thread` of the `threads` of block `slice` copies of its
/// slice of [data, data + bytes) into the block's staged copy `staged`
/// (kStagedSliceBytes, 4-byte aligned): consecutive threads load consecutive
/// 16-byte words of device memory (coalesced), or consecutive bytes when
/// `data` is not 16-byte aligned; the block synchronises before reading it.
CKPTW_HOST_DEVICE inline void stage_slice_part(const unsigned char* data, std::uint64_t bytes, std::uint64_t slice,
                                               unsigned char* staged, unsigned thread, unsigned threads) {
  const unsigned char* src = data + slice * kSliceBytes;
  const std::uint64_t length = slice_length(bytes, slice);
  std::uint64_t words = 0;
  if ((reinterpret_cast<unsigned long long>(src) & 15) == 0) {
    struct alignas(16) Word {
      std::uint32_t v[4];
    };
    words = length / 16;
    for (std::uint64_t k = thread; k < words; k += threads) {
      const Word w = reinterpret_cast<const Word*>(src)[k];
      // A 16-byte word never straddles a sub-slice (128 = 8 words): its four
      // 4-byte parts stay together, 4-byte aligned, after the padding.
      std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(staged + staged_offset(16 * k));
      for (int j = 0; j < 4; ++j) dst[j] = w.v[j];
    }
  }
  for (std::uint64_t k = words * 16 + thread; k < length; k += threads) staged[staged_offset(k)] = src[k];
}

/// What thread `sub` of block `slice` computes once the slice is staged: the
/// CRC of sub-slice `sub` of slice `slice` of a storage of `bytes` bytes, from
/// the block's staged copy.
CKPTW_HOST_DEVICE inline std::uint32_t staged_sub_slice_crc(const unsigned char* staged, std::uint64_t bytes,
                                                            std::uint64_t slice, std::uint64_t sub,
                                                            const std::uint32_t* table) {
  const std::uint64_t begin = sub * kSubSliceBytes;
  const std::uint64_t rest = slice_length(bytes, slice) - begin;
  return update_bytes(table, 0, staged + sub * kStagedSubSliceBytes, rest < kSubSliceBytes ? rest : kSubSliceBytes);
}

/// Sub-slices of slice `slice`: the threads of its block that have work.
CKPTW_HOST_DEVICE inline std::uint64_t sub_slice_count(std::uint64_t bytes, std::uint64_t slice) {
  return part_count(slice_length(bytes, slice), kSubSliceBytes);
}

/// What thread 0 of block `slice` computes from its block's sub-slice CRCs:
/// the slice's CRC. `shift_sub_slice` = shift_operator(kSubSliceBytes).
CKPTW_HOST_DEVICE inline std::uint32_t join_sub_slices(const std::uint32_t* sub_crcs, std::uint64_t bytes,
                                                       std::uint64_t slice, const std::uint32_t* shift_sub_slice) {
  return join_parts(sub_crcs, slice_length(bytes, slice), kSubSliceBytes, shift_sub_slice);
}

}  // namespace ckptw::detail::crc32_math
