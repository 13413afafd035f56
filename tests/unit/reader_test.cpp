// The reader treats files as untrusted: every truncation and every single-byte
// flip of a small checkpoint gives a clean ckptw::Error or a consistent result.
#include <gtest/gtest.h>

#include <fstream>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "read/pt_inspect.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

std::string write_small(const testing::TempDir& tmp) {
  StateDict sd = make_state_dict();
  sd.insert("w", at::arange(6, at::kFloat).reshape({2, 3}));
  sd.insert("view", sd.at("w").toTensor().t());
  c10::impl::GenericList list(c10::AnyType::get());
  list.push_back(at::ones({2}, at::kLong));
  list.push_back(int64_t{7});
  sd.insert("list", list);
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  return writer.write(tmp.path(), sd).file;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(Reader, ListsTensorsWithKeyPathsAndSharedStorage) {
  testing::TempDir tmp;
  detail::InspectedFile file = detail::inspect_pt(write_small(tmp));
  ASSERT_EQ(file.tensors.size(), 3u);
  EXPECT_EQ(file.tensors[1].key_path, "view");
  EXPECT_EQ(file.tensors[1].tensor.storage_key, file.tensors[0].tensor.storage_key);
  EXPECT_EQ(file.tensors[1].tensor.strides, (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(file.tensors[2].key_path, "list[0]");
  EXPECT_EQ(file.tensors[2].tensor.dtype, "int64");
}

TEST(Reader, EveryTruncationIsACleanError) {
  testing::TempDir tmp;
  const std::string good = testing::read_file(write_small(tmp));
  const std::string path = tmp / "cut.pt";
  for (std::size_t n = 0; n < good.size(); ++n) {
    write_bytes(path, good.substr(0, n));
    EXPECT_THROW(detail::inspect_pt(path), Error) << "prefix of " << n << " bytes";
  }
}

TEST(Reader, EverySingleByteFlipIsAnErrorOrAConsistentRead) {
  testing::TempDir tmp;
  const std::string good = testing::read_file(write_small(tmp));
  const std::string path = tmp / "flip.pt";
  int errors = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    write_bytes(path, bad);
    try {
      detail::InspectedFile file = detail::inspect_pt(path);
      // A flip the structure does not notice (payload bytes, padding) is
      // caught by the CRC check, unless it hit bytes no CRC covers.
      try {
        detail::verify_record_crcs(path, file.index);
      } catch (const FormatError&) {
        ++errors;
      }
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, static_cast<int>(good.size() / 4));
}

TEST(Reader, MissingFileNamesIt) {
  try {
    detail::inspect_pt("/nonexistent/checkpoint_0.pt");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
    EXPECT_EQ(e.path(), "/nonexistent/checkpoint_0.pt");
  }
}

}  // namespace
}  // namespace ckptw
