#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "checksum/crc32.hpp"

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

}  // namespace
}  // namespace ckptw::detail
