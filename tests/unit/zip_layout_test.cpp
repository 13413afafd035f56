// The zip container matches miniz/torch byte arithmetic, including zip64.
#include <gtest/gtest.h>

#include "format/zip_layout.hpp"
#include "plan/file_plan.hpp"
#include "util/byte_order.hpp"

namespace ckptw::detail {
namespace {

std::uint64_t u(const std::string& s, std::size_t at, int width) {
  return get_le(reinterpret_cast<const unsigned char*>(s.data()) + at, width);
}

TEST(ZipLayout, FirstRecordPayloadAt64LikeTorch) {
  // torch 1.13 a.pt: LFH for "a/data.pkl" has xlen 24 (FB + 20 'Z'), payload at 64.
  std::string header = local_file_header("a/data.pkl", 716, 0, 64);
  EXPECT_EQ(header.size(), 64u);
  EXPECT_EQ(u(header, 0, 4), 0x04034b50u);
  EXPECT_EQ(u(header, 6, 2), 0x0808u);
  EXPECT_EQ(u(header, 26, 2), 10u);
  EXPECT_EQ(u(header, 28, 2), 24u);
  EXPECT_EQ(header.substr(30, 10), "a/data.pkl");
  EXPECT_EQ(u(header, 40, 2), 0x4246u);
  EXPECT_EQ(u(header, 42, 2), 20u);
  EXPECT_EQ(header.substr(44), std::string(20, 'Z'));
}

TEST(ZipLayout, EmptyRecordHasNoDescriptorAndUtf8FlagOnly) {
  std::string header = local_file_header("a/data/7", 0, 1000, 64);
  EXPECT_EQ(u(header, 6, 2), 0x0800u);
  EXPECT_EQ(data_descriptor_size(0, 1000), 0u);
  EXPECT_TRUE(data_descriptor(0, 0, 1000).empty());
}

TEST(ZipLayout, PayloadsAlignedForEveryNameLengthAndAlignment) {
  for (std::uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    for (std::uint64_t offset : {0ull, 1ull, 63ull, 100000ull, 0xFFFFFFFFull, 0x100000005ull}) {
      for (std::size_t name_len = 1; name_len < 80; name_len += 7) {
        std::string name(name_len, 'n');
        std::uint64_t payload = payload_offset(offset, name_len, 100, alignment);
        EXPECT_EQ(payload % alignment, 0u);
        EXPECT_EQ(local_file_header(name, 100, offset, alignment).size(), payload - offset);
      }
    }
  }
}

// torch 1.13's 4.3 GB file (shared spec §3.7): data/0 is 0x100000064 bytes at
// LFH 335; data/1 (8 bytes) has its LFH beyond 4 GiB.
TEST(ZipLayout, Zip64ExtrasMatchTorchFile) {
  const std::uint64_t big = 0x100000064ull;
  std::string h0 = local_file_header("z64/data/0", big, 335, 64);
  EXPECT_EQ(u(h0, 28, 2), 73u);
  EXPECT_EQ(335 + h0.size(), 448u);
  EXPECT_EQ(u(h0, 40, 2), 0x0001u);
  EXPECT_EQ(u(h0, 42, 2), 16u);
  EXPECT_EQ(u(h0, 44, 8), big);
  EXPECT_EQ(u(h0, 52, 8), 0u);
  EXPECT_EQ(data_descriptor_size(big, 335), 24u);

  const std::uint64_t far = 4294967868ull;
  std::string h1 = local_file_header("z64/data/1", 8, far, 64);
  EXPECT_EQ(u(h1, 28, 2), 28u);
  EXPECT_EQ(far + h1.size(), 4294967936ull);
  EXPECT_EQ(u(h1, 42, 2), 8u);
  EXPECT_EQ(u(h1, 44, 8), far);
  EXPECT_EQ(data_descriptor_size(8, far), 24u);  // small record, but zip64 because of its offset
  std::string dd = data_descriptor(0x1234, 8, far);
  EXPECT_EQ(dd.size(), 24u);
  EXPECT_EQ(u(dd, 8, 8), 8u);

  std::vector<ZipEntry> entries = {{"z64/data/0", big, 335, 1}, {"z64/data/1", 8, far, 2}};
  std::string cd = central_directory_and_end(entries, 4294968000ull);
  EXPECT_EQ(cd.size(), central_directory_and_end_size(entries));
  EXPECT_EQ(u(cd, 20, 4), 0xFFFFFFFFu);  // sizes saturated
  EXPECT_EQ(u(cd, 42, 4), 335u);         // offset fits
  EXPECT_EQ(u(cd, 46 + 10 + 4, 8), big);
  const std::size_t second = 46 + 10 + 20;
  EXPECT_EQ(u(cd, second + 20, 4), 8u);
  EXPECT_EQ(u(cd, second + 42, 4), 0xFFFFFFFFu);
  EXPECT_EQ(u(cd, second + 46 + 10 + 4, 8), far);
  // Classic EOCD: real entry count, saturated CD offset.
  const std::size_t eocd = cd.size() - 22;
  EXPECT_EQ(u(cd, eocd, 4), 0x06054b50u);
  EXPECT_EQ(u(cd, eocd + 10, 2), 2u);
  EXPECT_EQ(u(cd, eocd + 16, 4), 0xFFFFFFFFu);
  // Zip64 locator right before it points at the zip64 end record.
  EXPECT_EQ(u(cd, eocd - 20, 4), 0x07064b50u);
  EXPECT_EQ(u(cd, eocd - 20 + 8, 8), 4294968000ull + (second + 46 + 10 + 12));
}

TEST(ZipLayout, Zip64ThresholdIsInclusive) {
  EXPECT_FALSE(record_needs_zip64(0xFFFFFFFEull, 0));
  EXPECT_TRUE(record_needs_zip64(0xFFFFFFFFull, 0));
  EXPECT_TRUE(record_needs_zip64(1, 0xFFFFFFFFull));
}

TEST(FilePlan, ArchiveFolderFollowsTorch) {
  EXPECT_EQ(archive_folder_for("/ckpt/step_10/checkpoint_3.pt"), "checkpoint_3");
  EXPECT_EQ(archive_folder_for("model.tar.gz"), "model.tar");
  EXPECT_EQ(archive_folder_for("noext"), "noext");
  EXPECT_EQ(archive_folder_for("/x/.pt"), "archive");
  EXPECT_EQ(archive_folder_for("/x/mod\xc3\xa8le.pt"), "archive");
}

TEST(FilePlan, LayOutIsContiguousAndAligned) {
  FilePlan plan;
  plan.folder = "archive";
  plan.add_owned_record("data.pkl", std::string(700, 'p'));
  plan.add_owned_record("data/0", std::string(12, 'x'));
  plan.add_owned_record("data/1", "");
  plan.add_owned_record("version", "3\n");
  lay_out(plan);
  std::uint64_t expected_header = 0;
  for (const auto& r : plan.records) {
    EXPECT_EQ(r.header_offset, expected_header) << r.name;
    EXPECT_EQ(r.payload_offset % 64, 0u) << r.name;
    expected_header = r.payload_offset + r.size + data_descriptor_size(r.size, r.header_offset);
  }
  EXPECT_EQ(plan.central_directory_offset, expected_header);
  EXPECT_GT(plan.file_size, plan.central_directory_offset);
}

}  // namespace
}  // namespace ckptw::detail
