#include "checksum/crc32.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <isa-l/crc.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "checksum/crc32_math.hpp"
#include "ckptw/crc32.hpp"

namespace ckptw {

std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc) {
  return detail::crc32_update(crc, data, size);
}

}  // namespace ckptw

namespace ckptw::detail {

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  // crc32_gzip_refl takes and returns the finalized value, like zlib's crc32().
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), size);
}

namespace {

#if defined(__SSE2__)
// Non-temporal 16-byte stores from an unaligned source; `dst` 16-aligned,
// `size` a multiple of 64 (whole cache lines, so no line is left half
// written in a write-combining buffer). Not fenced. Each line's load is
// paired with a prefetch of the line `prefetch_ahead` bytes further on
// (0: none), into L2, so that the next piece comes from DRAM while this one
// streams out and its CRC reads it from cache: the CRC of each piece then
// no longer waits on DRAM between the copies.
void stream_copy(unsigned char* dst, const unsigned char* src, std::size_t size, std::size_t prefetch_ahead) {
  for (std::size_t i = 0; i < size; i += 64) {
    if (prefetch_ahead) _mm_prefetch(reinterpret_cast<const char*>(src + i + prefetch_ahead), _MM_HINT_T1);
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
  }
}
#endif

}  // namespace

std::uint32_t crc32_copy(void* dst, const void* src, std::size_t size, std::uint32_t crc) {
  auto* out = static_cast<unsigned char*>(dst);
  const auto* in = static_cast<const unsigned char*>(src);
#if defined(__SSE2__)
  // Below this the destination is likely read again soon (headers, small
  // tensors), and a cached copy is as cheap.
  constexpr std::size_t kStreamMinBytes = 64 * 1024;
  // Small enough that a piece checksummed from DRAM is still in the 256 KiB+
  // L2 of current x86 cores when it is copied.
  constexpr std::size_t kPieceBytes = 64 * 1024;
  if (size >= kStreamMinBytes) {
    const std::size_t head = (16 - reinterpret_cast<std::uintptr_t>(out) % 16) % 16;
    crc = crc32_update(crc, in, head);
    std::memcpy(out, in, head);
    std::size_t done = head;
    while (size - done >= 64) {
      const std::size_t n = std::min(kPieceBytes, (size - done) / 64 * 64);
      crc = crc32_update(crc, in + done, n);
      // Only where a whole next piece follows: past the source's end a prefetch is wasted.
      stream_copy(out + done, in + done, n, size - done - n >= n ? n : 0);
      done += n;
    }
    _mm_sfence();
    crc = crc32_update(crc, in + done, size - done);
    std::memcpy(out + done, in + done, size - done);
    return crc;
  }
#endif
  std::memcpy(out, in, size);
  return crc32_update(crc, out, size);  // the copy is still in cache
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
