#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "checksum/crc32.hpp"
#include "checksum/crc32_math.hpp"
#include "ckptw/crc32.hpp"

namespace ckptw::detail {
namespace {

std::vector<unsigned char> random_bytes(std::size_t n) {
  std::vector<unsigned char> data(n);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  return data;
}

TEST(Crc32, StandardCheckValue) {
  EXPECT_EQ(crc32_update(0, "123456789", 9), 0xCBF43926u);  // zip/zlib CRC-32 check value
  EXPECT_EQ(crc32_update(0, "", 0), 0u);
}

// The public spelling (ckptw.dcp's reader checks items with it) is the same checksum.
TEST(Crc32, ThePublicFunctionIsTheRecordsChecksum) {
  EXPECT_EQ(ckptw::crc32("123456789", 9), 0xCBF43926u);
  const std::vector<unsigned char> data = random_bytes(1 << 20);
  EXPECT_EQ(ckptw::crc32(data.data() + 1000, data.size() - 1000, ckptw::crc32(data.data(), 1000)),
            crc32_update(0, data.data(), data.size()));
}

TEST(Crc32, IncrementalEqualsOneShot) {
  const std::vector<unsigned char> data = random_bytes(1 << 20);
  const std::uint32_t whole = crc32_update(0, data.data(), data.size());
  for (std::size_t split : {1u, 63u, 4096u, 777777u}) {
    std::uint32_t crc = crc32_update(0, data.data(), split);
    crc = crc32_update(crc, data.data() + split, data.size() - split);
    EXPECT_EQ(crc, whole) << split;
  }
}

// The combine the GPU checksum relies on, against ISA-L on random data.
TEST(Crc32, CombineOfPartsEqualsTheWhole) {
  const std::vector<unsigned char> data = random_bytes((1 << 20) + 333);
  const std::uint32_t whole = crc32_update(0, data.data(), data.size());
  for (std::size_t split : {std::size_t{0}, std::size_t{1}, std::size_t{127}, std::size_t{16384}, std::size_t{777777},
                            data.size()}) {
    const std::uint32_t a = crc32_update(0, data.data(), split);
    const std::uint32_t b = crc32_update(0, data.data() + split, data.size() - split);
    EXPECT_EQ(crc32_combine(a, b, data.size() - split), whole) << split;
  }
  // Fixed-length slices combined with one precomputed operator, as the GPU path does.
  const std::size_t slice = 16384;
  const Crc32Shift shift = crc32_shift(slice);
  std::uint32_t crc = 0;
  std::size_t at = 0;
  for (; at + slice <= data.size(); at += slice) crc = crc32_apply(shift, crc) ^ crc32_update(0, data.data() + at, slice);
  crc = crc32_combine(crc, crc32_update(0, data.data() + at, data.size() - at), data.size() - at);
  EXPECT_EQ(crc, whole);
}

TEST(Crc32, ShiftOperatorsAgreeWithCombiningByteByByte) {
  // crc32_math::update_bytes (the kernel's byte loop) extends a CRC the way
  // the shift operator moves it past zeros: crc(A + zeros) = shift(crc(A)) ^ crc(zeros).
  std::uint32_t table[256];
  for (std::uint32_t i = 0; i < 256; ++i) table[i] = crc32_math::table_entry(i);
  const unsigned char a[] = "123456789";
  const std::uint32_t crc_a = crc32_math::update_bytes(table, 0, a, 9);
  EXPECT_EQ(crc_a, 0xCBF43926u);
  for (std::uint64_t zeros : {1u, 2u, 127u, 128u, 16384u}) {
    const std::vector<unsigned char> z(zeros, 0);
    EXPECT_EQ(crc32_math::update_bytes(table, crc_a, z.data(), zeros),
              crc32_combine(crc_a, crc32_update(0, z.data(), zeros), zeros))
        << zeros;
  }
}

// Lengths far past what a test can checksum byte by byte (files of terabytes):
// moving a CRC past L1 then L2 bytes is moving it past L1 + L2, whichever way
// it is computed (the 32-column operator or the polynomial product), and
// past nothing it stays.
TEST(Crc32, ShiftsComposeAtLengthsOfTerabytes) {
  namespace m = crc32_math;
  const std::uint32_t crc = crc32_update(0, "123456789", 9);
  EXPECT_EQ(crc32_combine(crc, 0, 0), crc);
  EXPECT_EQ(crc32_apply(crc32_shift(0), crc), crc);
  const std::uint64_t lengths[] = {1, 3, 4096, (std::uint64_t{1} << 31) + 5, (std::uint64_t{1} << 40) + 12345,
                                   (std::uint64_t{1} << 63) - 1};
  for (std::uint64_t a : lengths) {
    for (std::uint64_t b : lengths) {
      if (a > (std::uint64_t{1} << 62) || b > (std::uint64_t{1} << 62)) continue;
      const std::uint32_t both = crc32_apply(crc32_shift(b), crc32_apply(crc32_shift(a), crc));
      EXPECT_EQ(both, crc32_apply(crc32_shift(a + b), crc)) << a << " + " << b;
      EXPECT_EQ(both, crc32_combine(crc, 0, a + b)) << a << " + " << b;
      EXPECT_EQ(m::multiply_mod(m::byte_shift_factor(a), m::byte_shift_factor(b)), m::byte_shift_factor(a + b));
    }
  }
  EXPECT_NE(crc32_combine(crc, 0, lengths[5]), crc32_combine(crc, 0, lengths[5] - 1));
}

// The GPU kernel's arithmetic and indexing, its threads run one after the
// other: each stages its part of the slice into the padded shared copy
// (16-byte words when the source is aligned, bytes otherwise), each then
// checksums its sub-slice from there, and thread 0 joins them; the slices
// join into the storage's CRC. Every source alignment, sizes around the word,
// sub-slice and slice boundaries: ISA-L's CRC each time.
TEST(Crc32, KernelStagingAndSlicesMatchIsaLAtEveryAlignment) {
  namespace m = crc32_math;
  std::uint32_t table[256];
  for (std::uint32_t i = 0; i < 256; ++i) table[i] = m::table_entry(i);
  std::uint32_t shift_sub[32];
  std::uint32_t shift_slice[32];
  m::shift_operator(m::kSubSliceBytes, shift_sub);
  m::shift_operator(m::kSliceBytes, shift_slice);
  const std::vector<unsigned char> data = random_bytes(3 * m::kSliceBytes + 64);
  alignas(16) static unsigned char staged[m::kStagedSliceBytes];
  for (std::size_t align = 0; align < 17; ++align) {
    const unsigned char* p = data.data() + ((16 - reinterpret_cast<std::uintptr_t>(data.data()) % 16) % 16) + align;
    for (std::uint64_t n : {1u, 15u, 16u, 17u, 127u, 128u, 129u, 16383u, 16384u, 16385u, 2u * 16384 + 200}) {
      std::vector<std::uint32_t> slice_crcs;
      for (std::uint64_t slice = 0; slice < m::part_count(n, m::kSliceBytes); ++slice) {
        std::memset(staged, 0xEE, sizeof staged);
        for (unsigned t = 0; t < m::kThreadsPerSlice; ++t) m::stage_slice_part(p, n, slice, staged, t, m::kThreadsPerSlice);
        std::uint32_t sub_crcs[m::kThreadsPerSlice];
        for (std::uint64_t t = 0; t < m::sub_slice_count(n, slice); ++t) {
          sub_crcs[t] = m::staged_sub_slice_crc(staged, n, slice, t, table);
        }
        slice_crcs.push_back(m::join_sub_slices(sub_crcs, n, slice, shift_sub));
      }
      EXPECT_EQ(m::join_parts(slice_crcs.data(), n, m::kSliceBytes, shift_slice), crc32_update(0, p, n))
          << n << " bytes at alignment " << align;
    }
  }
}

TEST(Crc32, CopyMatchesMemcpyThenCrcAtEveryAlignmentAroundItsThresholds) {
  // crc32_copy streams from 64 KiB on, in 64 KiB pieces of whole cache lines
  // after aligning the destination to 16 bytes: sizes at and around each
  // boundary, the destination and source at every offset within a line.
  const std::vector<unsigned char> src = random_bytes(300 * 1024 + 256);
  std::vector<unsigned char> dst(src.size() + 64), expected(src.size() + 64);
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{65535}, std::size_t{65536},
                           std::size_t{65537}, std::size_t{65536 + 63}, std::size_t{131072 + 17},
                           std::size_t{300 * 1024 + 1}}) {
    for (std::size_t dst_offset : {0, 1, 15, 16, 33, 63}) {
      for (std::size_t src_offset : {0, 7, 32}) {
        std::fill(dst.begin(), dst.end(), 0xA5);
        std::fill(expected.begin(), expected.end(), 0xA5);
        std::memcpy(expected.data() + dst_offset, src.data() + src_offset, size);
        const std::uint32_t seed = 0x12345678;
        EXPECT_EQ(crc32_copy(dst.data() + dst_offset, src.data() + src_offset, size, seed),
                  crc32_update(seed, src.data() + src_offset, size))
            << size << " " << dst_offset << " " << src_offset;
        EXPECT_EQ(dst, expected) << "bytes outside or inside the copy differ: " << size << " " << dst_offset << " "
                                 << src_offset;
      }
    }
  }
}

}  // namespace
}  // namespace ckptw::detail
