// CheckpointReader: the seed's read semantics (full, partial, in place,
// missing and unexpected keys, strict) and the commit checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <unistd.h>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

using c10::impl::GenericDict;
using c10::impl::GenericList;

StateDict saved_state() {
  StateDict sd = make_state_dict();
  GenericDict model(c10::StringType::get(), c10::AnyType::get());
  model.insert("weight", at::arange(6, at::kFloat).reshape({2, 3}));
  model.insert("bias", at::ones({3}, at::kDouble));
  sd.insert("model", model);
  GenericList layers(c10::AnyType::get());
  layers.push_back(at::arange(4, at::kLong));
  layers.push_back(at::arange(2, at::kLong));
  sd.insert("layers", layers);
  sd.insert("step", int64_t{1000});
  sd.insert("name", std::string("gpt"));
  return sd;
}

std::string write(const testing::TempDir& tmp) {
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(tmp / "ckpt", saved_state());
  return tmp / "ckpt";
}

TEST(CheckpointReader, FullReadRestoresValuesAndTypes) {
  testing::TempDir tmp;
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(write(tmp));
  EXPECT_TRUE(r.missing_keys.empty());
  auto model = r.state_dict.at("model").toGenericDict();
  EXPECT_TRUE(at::equal(model.at("weight").toTensor(), at::arange(6, at::kFloat).reshape({2, 3})));
  EXPECT_EQ(model.at("bias").toTensor().scalar_type(), at::kDouble);
  EXPECT_EQ(r.state_dict.at("layers").toListRef().size(), 2u);
  EXPECT_EQ(r.state_dict.at("step").toInt(), 1000);
  EXPECT_EQ(r.state_dict.at("name").toStringRef(), "gpt");
}

// What a LibTorch trainer resumes from: the newest directory whose manifest
// exists and whose rank files are the ones committed.
TEST(CheckpointReader, LatestCommittedSkipsTornAndUncommittedSteps) {
  testing::TempDir tmp;
  EXPECT_EQ(latest_committed(tmp / "absent"), "");
  EXPECT_EQ(latest_committed(tmp.path()), "");
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(tmp / "step_1", saved_state());
  (void)writer.write(tmp / "step_2", saved_state());
  EXPECT_EQ(latest_committed(tmp.path()), tmp / "step_2");
  EXPECT_EQ(uncommitted_reason(tmp / "step_2"), "");

  // step_3 committed last, then its rank file torn: skipped, with the reason.
  (void)writer.write(tmp / "step_3", saved_state());
  const std::string torn = tmp / ("step_3/" + rank_file_name(0));
  ASSERT_EQ(::truncate(torn.c_str(), 100), 0);
  EXPECT_NE(uncommitted_reason(tmp / "step_3"), "");
  EXPECT_EQ(latest_committed(tmp.path()), tmp / "step_2");
  // A directory without a manifest is never a candidate.
  ASSERT_EQ(std::remove((tmp / "step_2/" + std::string(kManifestFileName)).c_str()), 0);
  EXPECT_NE(uncommitted_reason(tmp / "step_2").find(kManifestFileName), std::string::npos);
  EXPECT_EQ(latest_committed(tmp.path()), tmp / "step_1");
}

TEST(CheckpointReader, RankFileNamesHaveOneSpelling) {
  EXPECT_EQ(rank_file_name(12), "checkpoint_12.pt");
  EXPECT_EQ(rank_of_file_name("checkpoint_12.pt"), 12);
  EXPECT_EQ(rank_of_file_name(rank_file_name(0)), 0);
  for (const char* other : {"checkpoint_.pt", "checkpoint_01.pt", "checkpoint_x.pt", "checkpoint_1.pt.tmp",
                            "checkpoint_manifest.json", "model.pt"}) {
    EXPECT_EQ(rank_of_file_name(other), -1) << other;
  }
}

TEST(CheckpointReader, TemplateDrivesThePartialLoadAndFillsTensorsInPlace) {
  testing::TempDir tmp;
  const std::string path = write(tmp);
  at::Tensor weight = at::zeros({2, 3}, at::kFloat);
  StateDict tmpl = make_state_dict();
  GenericDict model(c10::StringType::get(), c10::AnyType::get());
  model.insert("weight", weight);
  model.insert("absent", at::zeros({1}));
  tmpl.insert("model", model);
  tmpl.insert("layers", c10::IValue());  // None: the whole subtree
  GenericList more(c10::AnyType::get());
  for (int i = 0; i < 3; ++i) more.push_back(c10::IValue());
  tmpl.insert("missing_top", int64_t{1});

  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(path, tmpl);
  EXPECT_TRUE(at::equal(weight, at::arange(6, at::kFloat).reshape({2, 3})));  // filled in place
  EXPECT_TRUE(r.state_dict.at("model").toGenericDict().at("weight").toTensor().is_same(weight));
  EXPECT_EQ(r.state_dict.at("layers").toListRef().size(), 2u);
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"model.absent", "missing_top"}));
  std::vector<std::string> unexpected = r.unexpected_keys;
  std::sort(unexpected.begin(), unexpected.end());
  EXPECT_EQ(unexpected, (std::vector<std::string>{"model.bias", "name", "step"}));
}

TEST(CheckpointReader, MissingListItemsAreNamedWithIndexes) {
  testing::TempDir tmp;
  StateDict tmpl = make_state_dict();
  GenericList layers(c10::AnyType::get());
  for (int i = 0; i < 3; ++i) layers.push_back(c10::IValue());
  tmpl.insert("layers", layers);
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(write(tmp), tmpl);
  EXPECT_EQ(r.missing_keys, std::vector<std::string>{"layers[2]"});
}

TEST(CheckpointReader, StrictTurnsMissingKeysIntoAnError) {
  testing::TempDir tmp;
  StateDict tmpl = make_state_dict();
  tmpl.insert("nope", c10::IValue());
  ReadOptions options;
  options.strict = true;
  try {
    (void)CheckpointReader(RankInfo{0, 1}).read(write(tmp), tmpl, options);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("missing keys: [nope]"), std::string::npos) << e.what();
  }
}

TEST(CheckpointReader, ShapeOrDtypeMismatchNamesTheKey) {
  testing::TempDir tmp;
  StateDict tmpl = make_state_dict();
  GenericDict model(c10::StringType::get(), c10::AnyType::get());
  model.insert("weight", at::zeros({3, 2}, at::kFloat));
  tmpl.insert("model", model);
  try {
    (void)CheckpointReader(RankInfo{0, 1}).read(write(tmp), tmpl);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_EQ(e.key_path(), "model.weight");
  }
}

// Both I/O backends, a storage over several read chunks and an odd tail.
TEST(CheckpointReader, BothIoBackendsReadTheSameTensors) {
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  sd.insert("big", at::arange((9 << 20) / 4 + 5, at::kFloat));
  sd.insert("small", at::arange(3, at::kShort));
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "c", sd);
  for (IoBackendKind kind : {IoBackendKind::kPosix, IoBackendKind::kUring, IoBackendKind::kAuto}) {
    ReadOptions options;
    options.io_backend = kind;
    ReadResult r;
    try {
      r = CheckpointReader(RankInfo{0, 1}).read(tmp / "c", std::nullopt, options);
    } catch (const IoError& e) {
      if (kind != IoBackendKind::kUring) throw;
      std::printf("io_uring unavailable here, uring read skipped: %s\n", e.what());
      continue;
    }
    EXPECT_TRUE(at::equal(r.state_dict.at("big").toTensor(), sd.at("big").toTensor())) << to_string(kind);
    EXPECT_TRUE(at::equal(r.state_dict.at("small").toTensor(), sd.at("small").toTensor())) << to_string(kind);
  }
}

TEST(CheckpointReader, MissingFileIsENOENTNamingIt) {
  testing::TempDir tmp;
  const std::string path = write(tmp);
  try {
    (void)CheckpointReader(RankInfo{1, 2}).read(path);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
    EXPECT_EQ(e.path(), path + "/checkpoint_1.pt");
  }
}

TEST(CheckpointReader, UncommittedOrMismatchedDirectoriesAreRefused) {
  testing::TempDir tmp;
  const std::string path = write(tmp);
  // A file that is not the committed one (same size, different bytes in the directory).
  std::string bytes = testing::read_file(path + "/checkpoint_0.pt");
  std::string manifest = testing::read_file(path + "/checkpoint_manifest.json");
  bytes[bytes.size() - 98 - 3] ^= 1;  // a name character of the last central directory entry
  std::ofstream(path + "/checkpoint_0.pt", std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THROW((void)CheckpointReader(RankInfo{0, 1}).read(path), FormatError);
  ::unlink((path + "/checkpoint_manifest.json").c_str());
  try {
    (void)CheckpointReader(RankInfo{0, 1}).read(path);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not committed"), std::string::npos) << e.what();
  }
}

TEST(CheckpointReader, CorruptPayloadIsACrcErrorUnlessCheckingIsOff) {
  testing::TempDir tmp;
  const std::string path = write(tmp);
  std::string bytes = testing::read_file(path + "/checkpoint_0.pt");
  const std::size_t at = bytes.find("checkpoint_0/data/0") + 64;  // somewhere in the payload region
  const std::size_t payload = (at + 63) / 64 * 64;
  bytes[payload] ^= 0x40;
  std::ofstream(tmp / "bad.pt", std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THROW((void)CheckpointReader(RankInfo{0, 1}).read_file(tmp / "bad.pt"), FormatError);
  ReadOptions no_crc;
  no_crc.verify_crc = false;
  EXPECT_NO_THROW((void)CheckpointReader(RankInfo{0, 1}).read_file(tmp / "bad.pt", std::nullopt, no_crc));
}

// Overwrites with 0 the CRC-32 that record `name`'s local header and central
// directory entry hold, as torch.save does when it computes none.
std::string without_crc(std::string bytes, const std::string& name) {
  for (std::size_t p = bytes.find(name); p != std::string::npos; p = bytes.find(name, p + 1)) {
    if (p >= 30 && bytes.compare(p - 30, 4, "PK\x03\x04") == 0) bytes.replace(p - 30 + 14, 4, 4, '\0');
    if (p >= 46 && bytes.compare(p - 46, 4, "PK\x01\x02") == 0) bytes.replace(p - 46 + 16, 4, 4, '\0');
  }
  return bytes;
}

TEST(VerifyRecords, ChecksEveryRecordAndListsTheOnesWithoutACrcOnlyWhenAllowed) {
  testing::TempDir tmp;
  const std::string file = write(tmp) + "/checkpoint_0.pt";
  const RecordCheck good = verify_records(file);
  EXPECT_GE(good.records, 7u);
  EXPECT_TRUE(good.without_crc.empty());

  std::ofstream(tmp / "nocrc.pt", std::ios::binary | std::ios::trunc)
      << without_crc(testing::read_file(file), "checkpoint_0/data/0");
  try {
    (void)verify_records(tmp / "nocrc.pt");
    FAIL() << "a record without a CRC-32 passed unnoticed";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("records no CRC-32"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)CheckpointReader(RankInfo{0, 1}).read_file(tmp / "nocrc.pt"), FormatError);
  EXPECT_EQ(verify_records(tmp / "nocrc.pt", true).without_crc, (std::vector<std::string>{"data/0"}));

  std::string damaged = testing::read_file(file);
  const std::size_t at = damaged.find("checkpoint_0/data/0") + 64;
  damaged[(at + 63) / 64 * 64] ^= 0x40;  // the first payload byte past the header (64-byte aligned)
  std::ofstream(tmp / "bad.pt", std::ios::binary | std::ios::trunc) << damaged;
  EXPECT_THROW((void)verify_records(tmp / "bad.pt", true), FormatError);
  EXPECT_THROW((void)verify_records(tmp / "missing.pt"), IoError);
}

}  // namespace
}  // namespace ckptw
