#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "checksum/crc32.hpp"
#include "checksum/crc32_math.hpp"
#include "crc32.cuh"

namespace ckptw::detail {
namespace {

TEST(Crc32, StandardCheckValue) {
  EXPECT_EQ(crc32_update(0, "123456789", 9), 0xCBF43926u);  // zip/zlib CRC-32 check value
  EXPECT_EQ(crc32_update(0, "", 0), 0u);
}

TEST(Crc32, IncrementalEqualsOneShot) {
  std::vector<unsigned char> data(1 << 20);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  const std::uint32_t whole = crc32_update(0, data.data(), data.size());
  for (std::size_t split : {1u, 63u, 4096u, 777777u}) {
    std::uint32_t crc = crc32_update(0, data.data(), split);
    crc = crc32_update(crc, data.data() + split, data.size() - split);
    EXPECT_EQ(crc, whole) << split;
  }
}

// The combine the GPU checksum relies on, against ISA-L on random data.
TEST(Crc32, CombineOfPartsEqualsTheWhole) {
  std::vector<unsigned char> data((1 << 20) + 333);
  std::mt19937 rng(11);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
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

// The GPU kernel's arithmetic and indexing (cuda/crc32.cuh, the functions each
// thread and each block's thread 0 call) and the host's join of its slice
// CRCs, run here block by block and thread by thread, against ISA-L: CI has no
// GPU, and a wrong sub-slice bound or join would otherwise first show as a
// corrupt checkpoint on one.
std::uint32_t crc_as_the_gpu_computes(const std::vector<unsigned char>& data) {
  std::uint32_t table[256];
  for (std::uint32_t i = 0; i < 256; ++i) table[i] = crc32_math::table_entry(i);
  const Crc32Shift shift_sub_slice = crc32_shift(cuda::kCrcSubSliceBytes);
  std::vector<std::uint32_t> slice_crcs(cuda::crc32_slice_count(data.size()));
  for (std::uint64_t block = 0; block < slice_crcs.size(); ++block) {
    std::uint32_t sub_crc[cuda::kCrcSliceBytes / cuda::kCrcSubSliceBytes];
    const std::uint64_t threads = cuda::kCrcSliceBytes / cuda::kCrcSubSliceBytes;
    for (std::uint64_t thread = 0; thread < threads; ++thread) {
      if (thread < cuda::crc32_sub_slice_count(data.size(), block)) {
        sub_crc[thread] = cuda::crc32_sub_slice(data.data(), data.size(), block, thread, table);
      }
    }
    slice_crcs[block] = cuda::crc32_join_sub_slices(sub_crc, data.size(), block, shift_sub_slice.data());
  }
  const Crc32Shift shift_slice = crc32_shift(cuda::kCrcSliceBytes);
  return crc32_math::join_parts(slice_crcs.data(), data.size(), cuda::kCrcSliceBytes, shift_slice.data());
}

TEST(Crc32, TheGpuKernelsArithmeticMatchesIsaL) {
  std::mt19937 rng(11);
  const std::size_t slice = cuda::kCrcSliceBytes;
  const std::size_t sub = cuda::kCrcSubSliceBytes;
  for (std::size_t n : {std::size_t{1}, sub - 1, sub, sub + 1, 5 * sub + 77, slice - 1, slice, slice + 1,
                        slice + sub, 3 * slice + 77, 7 * slice + 3 * sub + 1, (std::size_t{1} << 20) + 3}) {
    std::vector<unsigned char> data(n);
    for (auto& b : data) b = static_cast<unsigned char>(rng());
    EXPECT_EQ(crc_as_the_gpu_computes(data), crc32_update(0, data.data(), data.size())) << n << " bytes";
  }
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

}  // namespace
}  // namespace ckptw::detail
