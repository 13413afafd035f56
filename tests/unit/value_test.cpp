// Value, the planner's input model: identity, OrderedDict attributes and
// int keys survive a write and a read_value; what IValue cannot say is an
// error naming the key path, not a silent change.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "checksum/crc32.hpp"
#include "ckptw/ckptw.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

Value::Ptr str(const char* s) { return Value::string(s); }

// An optimizer-shaped checkpoint: int-keyed state, two param groups sharing
// one betas tuple, a model OrderedDict with its _metadata.
Value::Ptr training_checkpoint(const Value::Ptr& betas) {
  Value::Ptr weight = Value::tensor(at::arange(4, at::kFloat));
  Value::Ptr metadata = Value::ordered_dict({{str(""), Value::dict({{str("version"), Value::integer(1)}})}});
  Value::Ptr model = Value::ordered_dict({{str("w"), weight}}, Value::dict({{str("_metadata"), metadata}}));
  Value::Ptr state = Value::dict({{Value::integer(0), Value::dict({{str("step"), Value::tensor(at::scalar_tensor(3.0))},
                                                                   {str("exp_avg"), weight}})}});
  auto group = [&](std::int64_t param) {
    return Value::dict({{str("lr"), Value::floating(1e-3)}, {str("betas"), betas},
                        {str("params"), Value::list({Value::integer(param)})}});
  };
  Value::Ptr optimizer = Value::dict({{str("state"), state}, {str("param_groups"), Value::list({group(0), group(1)})}});
  return Value::dict({{str("model"), model}, {str("optimizer"), optimizer}});
}

TEST(Value, IdentityOrderedDictAttributesAndIntKeysSurviveAWriteAndReadValue) {
  testing::TempDir tmp;
  const Value::Ptr betas = Value::tuple({Value::floating(0.9), Value::floating(0.95)});
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(tmp / "c", training_checkpoint(betas));

  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  const Value::Ptr model = back->get("model");
  ASSERT_TRUE(model->is(Value::Kind::kOrderedDict));
  ASSERT_TRUE(model->attributes());
  EXPECT_TRUE(model->attributes()->get("_metadata")->is(Value::Kind::kOrderedDict));
  const auto& groups = back->get("optimizer")->get("param_groups")->items();
  EXPECT_EQ(groups[0]->get("betas").get(), groups[1]->get("betas").get()) << "one tuple, pickled once";
  const auto& state = back->get("optimizer")->get("state")->entries();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].first->as_int(), 0);
  // The tensor saved twice is one object in the file too (one storage, one memo entry).
  EXPECT_EQ(state[0].second->get("exp_avg").get(), model->get("w").get());

  // Rewritten, it is the same file.
  (void)writer.write(tmp / "again", back);
  EXPECT_TRUE(testing::read_file(tmp / "again/checkpoint_0.pt") == testing::read_file(tmp / "c/checkpoint_0.pt"));
}

TEST(Value, EqualButDistinctTuplesStayDistinct) {
  testing::TempDir tmp;
  auto pair = [] { return Value::tuple({Value::floating(0.9), Value::floating(0.95)}); };
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1})
      .write(tmp / "c", Value::dict({{str("a"), pair()}, {str("b"), pair()}}));
  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  EXPECT_NE(back->get("a").get(), back->get("b").get());
}

// CPython's pickler memoizes strings by identity: two equal str objects are
// pickled twice (argparse values), one object twice is fetched from the
// memo; the literals torch writes itself ("cpu") are interned, so a caller's
// equal literal is shared with them.
TEST(Value, StringsAreOneObjectPerValueExceptTorchsInternedLiterals) {
  testing::TempDir tmp;
  const Value::Ptr same = str("adamw");
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(tmp / "c", Value::dict({{str("a"), str("sgd")}, {str("b"), str("sgd")}, {str("c"), same},
                                             {str("d"), same}, {str("e"), str("cpu")},
                                             {str("w"), Value::tensor(at::ones({2}))}}));
  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  EXPECT_NE(back->get("a").get(), back->get("b").get());
  EXPECT_EQ(back->get("c").get(), back->get("d").get());
  const std::string pickle = testing::read_file(tmp / "c/checkpoint_0.pt");
  auto count = [&](const std::string& text) {
    std::size_t n = 0;
    for (std::size_t at = pickle.find(text); at != std::string::npos; at = pickle.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("sgd"), 2u);
  EXPECT_EQ(count("adamw"), 1u);
  EXPECT_EQ(count(std::string("X\x03\0\0\0cpu", 8)), 1u) << "the caller's \"cpu\" and the tensor's location are one string";
  // A StateDict's equal strings are one Value (C++ strings have no identity).
  StateDict sd = make_state_dict();
  sd.insert("a", std::string("sgd"));
  sd.insert("b", std::string("sgd"));
  const Value::Ptr converted = to_value(sd);
  EXPECT_EQ(converted->get("a").get(), converted->get("b").get());
}

// torch.save(value, file): the file at exactly that path, named archive
// folder, no manifest, no temporary file left; a missing directory is an
// IoError naming it, with nothing created.
TEST(Value, SaveWritesOneFileAtItsPathAsTorchSaveDoes) {
  testing::TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  const WriteResult result = writer.save(tmp / "model.pt", Value::dict({{str("w"), Value::tensor(at::ones({3}))}}));
  EXPECT_EQ(result.file, tmp / "model.pt");
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"model.pt"});
  const std::string file = testing::read_file(tmp / "model.pt");
  EXPECT_NE(file.find("model/data.pkl"), std::string::npos);
  EXPECT_EQ(result.bytes_written, file.size());
  EXPECT_TRUE(at::equal(CheckpointReader(RankInfo{0, 1}).read_file(tmp / "model.pt").state_dict.at("w").toTensor(),
                        at::ones({3})));
  try {
    (void)writer.save(tmp / "missing/model.pt", Value::dict({}));
    FAIL() << "expected an IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
    EXPECT_NE(e.path().find("missing"), std::string::npos);
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "missing"));
}

// A torch.distributed.checkpoint data file: raw segments and whole archives
// back to back, each archive the bytes save() writes for a file whose
// archive folder is "archive" (torch.save's into a stream), each segment's
// offset, length and CRC-32 those of its bytes in the file; through the ring
// both into a buffered file and with O_DIRECT, payloads large enough to be
// written in place included.
TEST(Value, SaveSegmentsWritesArchivesAsSaveDoesBackToBack) {
  for (const bool direct_io : {false, true}) {
    testing::TempDir tmp;
    CheckpointWriterConfig config;
    config.direct_io = direct_io;
    config.write_buffer_bytes = 1 << 20;
    CheckpointWriter writer(config, RankInfo{0, 1});
    const std::vector<Value::Ptr> archives = {
        Value::tensor(at::arange(1000, at::kFloat)),
        Value::dict({{str("w"), Value::tensor(at::ones({3}))}, {str("n"), Value::integer(7)}}),
        Value::tensor(at::arange(3 << 18, at::kFloat)),  // 3 MiB: three ring buffers, or one in-place write
    };
    std::vector<FileSegment> segments(6);
    segments[0].bytes = "a bytes item";
    segments[1].archive = archives[0];
    segments[2].bytes = "";
    segments[3].archive = archives[1];
    segments[4].archive = archives[2];
    segments[5].bytes = std::string(5000, 'x');
    const SegmentsWriteResult result = writer.save_segments(tmp / "__0_0.distcp", segments);

    const std::string file = testing::read_file(tmp / "__0_0.distcp");
    EXPECT_EQ(result.write.bytes_written, file.size());
    EXPECT_EQ(result.write.tensor_count, 3u);
    ASSERT_EQ(result.segments.size(), segments.size());
    std::uint64_t offset = 0;
    std::size_t archive = 0;
    std::filesystem::create_directory(tmp / "alone");
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const SegmentWritten& landed = result.segments[i];
      EXPECT_EQ(landed.offset, offset) << i;
      const std::string bytes = file.substr(landed.offset, landed.length);
      std::string expected = segments[i].bytes;
      if (segments[i].archive) {
        (void)writer.save(tmp / "alone/archive.pt", archives[archive++]);
        expected = testing::read_file(tmp / "alone/archive.pt");
      }
      EXPECT_EQ(bytes, expected) << "segment " << i << (direct_io ? " (O_DIRECT)" : "");
      EXPECT_EQ(landed.crc32, detail::crc32_update(0, bytes.data(), bytes.size())) << i;
      offset += landed.length;
    }
    EXPECT_EQ(offset, file.size());
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) names.push_back(entry.path().filename());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"__0_0.distcp", "alone"}));
  }
}

// A PayloadSource over a real tensor's storage, noting every piece asked for.
class StorageBytes final : public PayloadSource {
 public:
  explicit StorageBytes(at::Tensor tensor, std::uint64_t fail_at = UINT64_MAX)
      : tensor_(std::move(tensor)), fail_at_(fail_at) {}
  void read(std::uint64_t offset, void* out, std::size_t size) override {
    pieces.emplace_back(offset, size);
    if (offset + size > fail_at_) throw std::runtime_error("the shard went away");
    std::memcpy(out, static_cast<const char*>(tensor_.storage().data()) + offset, size);
  }
  std::vector<std::pair<std::uint64_t, std::size_t>> pieces;

 private:
  at::Tensor tensor_;
  std::uint64_t fail_at_;
};

Value::Ptr streamed(const at::Tensor& t, std::shared_ptr<StorageBytes> source) {
  return Value::streamed_tensor(at::empty_strided(t.sizes(), t.strides(), t.options().device(at::kMeta)),
                                std::move(source));
}

TEST(Value, AStreamedTensorIsWrittenAsTheTensorHoldingItsBytes) {
  const at::Tensor big = at::arange(3 << 18, at::kFloat);  // 3 MiB: several ring buffers
  const at::Tensor rows = at::randn({300, 70}).to(at::kBFloat16);
  const at::Tensor tiny = at::arange(3, at::kShort);        // fewer bytes than the serialization id reads
  const at::Tensor transposed = at::randn({40, 30}).t();    // a layout other than contiguous
  // Starts with a zip data descriptor's signature, which torch's serialization id reads the
  // payload's first 8 bytes for: the streamed bytes must reach it.
  const at::Tensor signature = at::tensor({0x08074b50, 12345, 7}, at::kInt);
  for (const bool direct_io : {false, true}) {
    testing::TempDir tmp;
    CheckpointWriterConfig config;
    config.direct_io = direct_io;
    config.write_buffer_bytes = 64 << 10;
    CheckpointWriter writer(config, RankInfo{0, 1});
    std::vector<std::shared_ptr<StorageBytes>> sources;
    const std::vector<at::Tensor> tensors{big, rows, tiny, transposed, signature};
    for (const at::Tensor& t : tensors) sources.push_back(std::make_shared<StorageBytes>(t));
    const Value::Ptr shared = streamed(rows, sources[1]);
    const Value::Ptr with_sources = Value::dict({{str("big"), streamed(big, sources[0])},
                                                 {str("rows"), shared},
                                                 {str("again"), shared},
                                                 {str("n"), Value::integer(7)},
                                                 {str("tiny"), streamed(tiny, sources[2])},
                                                 {str("t"), streamed(transposed, sources[3])},
                                                 {str("signature"), streamed(signature, sources[4])}});
    const Value::Ptr shared_tensor = Value::tensor(rows);
    const Value::Ptr holding = Value::dict({{str("big"), Value::tensor(big)},
                                            {str("rows"), shared_tensor},
                                            {str("again"), shared_tensor},
                                            {str("n"), Value::integer(7)},
                                            {str("tiny"), Value::tensor(tiny)},
                                            {str("t"), Value::tensor(transposed)},
                                            {str("signature"), Value::tensor(signature)}});
    std::filesystem::create_directory(tmp / "streamed");
    std::filesystem::create_directory(tmp / "held");
    const WriteResult result = writer.save(tmp / "streamed/model.pt", with_sources);
    (void)writer.save(tmp / "held/model.pt", holding);
    EXPECT_EQ(testing::read_file(tmp / "streamed/model.pt"), testing::read_file(tmp / "held/model.pt"))
        << (direct_io ? "O_DIRECT" : "buffered");
    EXPECT_EQ(result.storage_count, 5u);
    for (std::size_t i = 0; i < sources.size(); ++i) {
      // Each byte asked for once, in order, in pieces of at most one ring buffer.
      std::uint64_t next = 0;
      for (const auto& [offset, size] : sources[i]->pieces) {
        EXPECT_EQ(offset, next) << i;
        EXPECT_LE(size, config.write_buffer_bytes) << i;
        next += size;
      }
      EXPECT_EQ(next, tensors[i].storage().nbytes()) << i;
    }
    EXPECT_GT(sources[0]->pieces.size(), 40u);
  }
}

TEST(Value, AFailingPayloadSourceFailsTheSaveAndLeavesThePreviousFile) {
  testing::TempDir tmp;
  CheckpointWriterConfig config;
  config.write_buffer_bytes = 64 << 10;
  CheckpointWriter writer(config, RankInfo{0, 1});
  const at::Tensor big = at::arange(1 << 18, at::kFloat);
  (void)writer.save(tmp / "model.pt", Value::dict({{str("w"), Value::tensor(big)}}));
  const std::string before = testing::read_file(tmp / "model.pt");
  auto failing = std::make_shared<StorageBytes>(big, 500000);
  try {
    (void)writer.save(tmp / "model.pt", Value::dict({{str("w"), streamed(big, failing)}}));
    FAIL() << "the save succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "the shard went away");
  }
  EXPECT_EQ(testing::list_dir(tmp.path()), std::vector<std::string>{"model.pt"});
  EXPECT_EQ(testing::read_file(tmp / "model.pt"), before);
  // write_async must capture its bytes at the call: a streamed tensor has none yet. (A capture
  // error fails the write through its future, after the vote, so that no rank is left waiting.)
  EXPECT_THROW((void)writer.write_async(tmp / "async", Value::dict({{str("w"), streamed(big, failing)}})).get(),
               UsageError);
  // A streamed tensor's layout is a meta tensor.
  EXPECT_THROW((void)Value::streamed_tensor(big, failing), UsageError);
}

TEST(Value, LocateTensorsGivesWhereEachTensorsBytesLie) {
  testing::TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig(), RankInfo{0, 1});
  const at::Tensor a = at::randn({5, 7});
  const at::Tensor b = at::arange(100, at::kLong);
  (void)writer.save(tmp / "inner.pt", Value::dict({{str("a"), Value::tensor(a)}, {str("b"), Value::tensor(b.narrow(0, 10, 20))}}));
  // The archive inside a bigger file, as a DCP data file holds it.
  const std::string archive = testing::read_file(tmp / "inner.pt");
  {
    std::ofstream out(tmp / "outer", std::ios::binary);
    out << std::string(1000, 'x') << archive << std::string(50, 'y');
  }
  const std::vector<StoredTensor> located = locate_tensors(tmp / "outer", 1000, archive.size());
  ASSERT_EQ(located.size(), 2u);
  const std::string outer = testing::read_file(tmp / "outer");
  EXPECT_EQ(located[0].key_path, "a");
  EXPECT_EQ(located[0].dtype, "float32");
  EXPECT_EQ(located[0].sizes, (std::vector<std::int64_t>{5, 7}));
  EXPECT_EQ(located[0].storage_bytes, 140u);
  EXPECT_EQ(outer.substr(located[0].payload_offset, 140), std::string(static_cast<const char*>(a.data_ptr()), 140));
  EXPECT_EQ(located[1].key_path, "b");
  EXPECT_EQ(located[1].storage_offset, 10);
  EXPECT_EQ(located[1].sizes, (std::vector<std::int64_t>{20}));
  EXPECT_EQ(outer.substr(located[1].payload_offset, 800), std::string(static_cast<const char*>(b.data_ptr()), 800));
  EXPECT_EQ(locate_tensors(tmp / "inner.pt").size(), 2u);  // a whole file
  EXPECT_THROW((void)locate_tensors(tmp / "outer", 1000, archive.size() + 100), FormatError);
  EXPECT_THROW((void)locate_tensors(tmp / "outer", 999, archive.size()), FormatError);
}

TEST(Value, AStateDictsDevicesBecomeTorchDevices) {
  StateDict sd = make_state_dict();
  sd.insert("where", c10::IValue(c10::Device("cuda:1")));
  sd.insert("host", c10::IValue(c10::Device("cpu")));
  const Value::Ptr v = to_value(sd);
  ASSERT_TRUE(v->get("where")->is(Value::Kind::kDevice));
  EXPECT_EQ(v->get("where")->device_type(), "cuda");
  EXPECT_EQ(v->get("where")->device_index(), 1);
  EXPECT_EQ(v->get("host")->device_type(), "cpu");
  EXPECT_EQ(v->get("host")->device_index(), -1);
  EXPECT_EQ(to_ivalue(v->get("where")).toDevice(), c10::Device("cuda:1"));
}

TEST(Value, ParametersStayParametersAndOneSharedParameterIsPickledOnce) {
  testing::TempDir tmp;
  const Value::Ptr embed = Value::parameter(at::ones({4, 2}), true);
  const Value::Ptr frozen = Value::parameter(at::zeros({2}), false);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1})
      .write(tmp / "c", Value::dict({{str("embed"), embed}, {str("head"), embed}, {str("frozen"), frozen}}));
  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  ASSERT_TRUE(back->get("embed")->is(Value::Kind::kParameter));
  EXPECT_TRUE(back->get("embed")->as_tensor().requires_grad());
  EXPECT_FALSE(back->get("frozen")->as_tensor().requires_grad());
  EXPECT_EQ(back->get("embed").get(), back->get("head").get());
  EXPECT_TRUE(at::equal(back->get("embed")->as_tensor(), at::ones({4, 2})));
}

// A tensor's Python attributes and its lazy conjugate/negative bits are kept
// through a write and a read_value (torch.save keeps both), and the file
// written again from what was read is the same file.
TEST(Value, TensorAttributesAndLazyBitsSurviveAWriteAndReadValue) {
  testing::TempDir tmp;
  const at::Tensor values = at::complex(at::arange(4, at::kFloat), at::ones({4}));
  // Each Python object has a __dict__ of its own, so each tensor here too.
  auto note = [] { return Value::dict({{str("note"), str("x")}, {str("scale"), Value::integer(3)}}); };
  const Value::Ptr root = Value::dict({{str("t"), Value::tensor(at::arange(3, at::kFloat), note())},
                                       {str("p"), Value::parameter(at::ones({2}), true, note())},
                                       {str("c"), Value::tensor(values.conj())},
                                       {str("n"), Value::tensor(at::_neg_view(at::ones({2})))}});
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(tmp / "c", root);
  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  ASSERT_TRUE(back->get("t")->attributes());
  EXPECT_EQ(back->get("t")->attributes()->get("note")->as_string(), "x");
  EXPECT_EQ(back->get("p")->attributes()->get("scale")->as_int(), 3);
  EXPECT_TRUE(back->get("c")->as_tensor().is_conj());
  EXPECT_TRUE(at::equal(back->get("c")->as_tensor().resolve_conj(), values.conj().resolve_conj()));
  EXPECT_TRUE(back->get("n")->as_tensor().is_neg());
  EXPECT_TRUE(at::equal(back->get("n")->as_tensor().resolve_neg(), -at::ones({2})));
  (void)writer.write(tmp / "again", back);
  EXPECT_TRUE(testing::read_file(tmp / "again/checkpoint_0.pt") == testing::read_file(tmp / "c/checkpoint_0.pt"));

  EXPECT_THROW((void)Value::tensor(at::ones({1}), Value::list({})), UsageError) << "attributes are a dict";
  EXPECT_THROW((void)Value::tensor(at::ones({1}), Value::dict({{Value::integer(1), Value::none()}})), UsageError)
      << "attribute names are str";
}

// torch.initial_seed() is a uint64: above INT64_MAX it is a LONG1 of 9 bytes.
TEST(Value, IntsBeyondInt64RoundTripAndHaveNoIValue) {
  const Value::Ptr seed = Value::unsigned_integer(~std::uint64_t{0});
  ASSERT_TRUE(seed->is(Value::Kind::kBigInt));
  EXPECT_EQ(seed->big_integer_bytes(), std::string("\xff\xff\xff\xff\xff\xff\xff\xff\x00", 9));
  EXPECT_TRUE(Value::unsigned_integer(5)->is(Value::Kind::kInt));
  EXPECT_EQ(Value::big_integer(std::string("\xfe\xff\xff", 3))->as_int(), -2) << "redundant sign bytes dropped";
  testing::TempDir tmp;
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "c", Value::dict({{str("seed"), seed}}));
  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  EXPECT_EQ(back->get("seed")->big_integer_bytes(), seed->big_integer_bytes());
  try {
    (void)CheckpointReader(RankInfo{0, 1}).read(tmp / "c");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.key_path(), "seed");
    EXPECT_NE(std::string(e.what()).find("wider than 64 bits"), std::string::npos) << e.what();
  }
}

// The rest of the weights-only set, through a write and read_value, and what
// to_ivalue makes of each.
TEST(Value, SizesDtypesDevicesSetsBytesComplexAndCountersRoundTrip) {
  testing::TempDir tmp;
  const Value::Ptr shape = Value::size({4, 8});
  const Value::Ptr meta = Value::dict({
      {str("shapes"), Value::list({shape, shape})},
      {str("dtype"), Value::dtype("bfloat16")},
      {str("device"), Value::device("cuda", 1)},
      {str("cpu"), Value::device("cpu")},
      {str("ids"), Value::set({Value::integer(3), Value::integer(1)})},
      {str("blob"), Value::bytes(std::string("\x00\xffPK", 4))},
      {str("mutable"), Value::bytearray("xy")},
      {str("phase"), Value::complex_number(1.5, -2.0)},
      {str("counts"), Value::counter({{str("the"), Value::integer(3)}})},
  });
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "c", meta);
  const Value::Ptr back = CheckpointReader(RankInfo{0, 1}).read_value(tmp / "c");
  const auto& shapes = back->get("shapes")->items();
  EXPECT_EQ(shapes[0]->as_size(), (std::vector<std::int64_t>{4, 8}));
  EXPECT_EQ(shapes[0].get(), shapes[1].get());
  EXPECT_EQ(back->get("dtype")->dtype_name(), "bfloat16");
  EXPECT_EQ(back->get("device")->device_type(), "cuda");
  EXPECT_EQ(back->get("device")->device_index(), 1);
  EXPECT_EQ(back->get("cpu")->device_index(), -1);
  EXPECT_EQ(back->get("ids")->items().size(), 2u);
  EXPECT_EQ(back->get("blob")->as_bytes(), std::string("\x00\xffPK", 4));
  EXPECT_TRUE(back->get("mutable")->is(Value::Kind::kByteArray));
  EXPECT_EQ(back->get("phase")->as_complex(), (std::pair<double, double>{1.5, -2.0}));
  EXPECT_EQ(back->get("counts")->entries()[0].second->as_int(), 3);

  const auto as_ivalue = to_ivalue(back).toGenericDict();
  EXPECT_EQ(as_ivalue.at("shapes").toList().get(0).toIntVector(), (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(as_ivalue.at("dtype").toScalarType(), at::kBFloat16);
  EXPECT_EQ(as_ivalue.at("device").toDevice(), c10::Device("cuda:1"));
  EXPECT_EQ(as_ivalue.at("blob").toStringRef(), std::string("\x00\xffPK", 4));
  EXPECT_EQ(as_ivalue.at("phase").toComplexDouble(), c10::complex<double>(1.5, -2.0));

  try {
    (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1})
        .write(tmp / "empty", Value::dict({{str("blob"), Value::bytes("")}}));
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.key_path(), "blob");
    EXPECT_NE(std::string(e.what()).find("weights_only"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(testing::exists(tmp / "empty"));
}

TEST(Value, StateDictsWithIntKeysAreWrittenAndReadBackAsIValues) {
  testing::TempDir tmp;
  c10::impl::GenericDict state(c10::IntType::get(), c10::AnyType::get());
  state.insert(7, at::ones({2}));
  StateDict sd = make_state_dict();
  sd.insert("state", state);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "c", sd);
  const StateDict back = CheckpointReader(RankInfo{0, 1}).read(tmp / "c").state_dict;
  EXPECT_TRUE(at::equal(back.at("state").toGenericDict().at(7).toTensor(), at::ones({2})));
}

TEST(Value, WhatIValueCannotSayIsAFormatErrorNamingTheKeyPath) {
  const Value::Ptr mixed = Value::dict({{str("outer"), Value::dict({{str("a"), Value::integer(1)},
                                                                    {Value::integer(2), Value::integer(2)}})}});
  try {
    (void)to_ivalue(mixed);
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.key_path(), "outer");
    EXPECT_NE(std::string(e.what()).find("str and int keys"), std::string::npos) << e.what();
  }
  testing::TempDir tmp;
  const Value::Ptr tensor_key = Value::dict({{str("m"), Value::dict({{Value::tensor(at::ones({1})), Value::none()}})}});
  try {
    (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "c", tensor_key);
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.key_path(), "m");
  }
  EXPECT_FALSE(testing::exists(tmp / "c"));
}

}  // namespace
}  // namespace ckptw
