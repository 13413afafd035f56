// Writes the interop fixtures with CheckpointWriter: OUTDIR/<name>/checkpoint_0.pt.
// tests/interop/fixtures.py builds the same objects in Python; keep the two in step.
#include <cstdio>
#include <string>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"

namespace {

using ckptw::StateDict;
using c10::impl::GenericDict;
using c10::impl::GenericList;

GenericDict generic_dict() { return GenericDict(c10::StringType::get(), c10::AnyType::get()); }
GenericList generic_list() { return GenericList(c10::AnyType::get()); }

at::Tensor arange(int64_t n, at::ScalarType dtype) { return at::arange(n, at::kLong).to(dtype); }

StateDict dtypes() {
  StateDict sd = ckptw::make_state_dict();
  sd.insert("float64", arange(6, at::kDouble));
  sd.insert("float32", arange(6, at::kFloat));
  sd.insert("float16", arange(6, at::kHalf));
  sd.insert("bfloat16", arange(6, at::kBFloat16));
  sd.insert("int64", arange(6, at::kLong));
  sd.insert("int32", arange(6, at::kInt));
  sd.insert("int16", arange(6, at::kShort));
  sd.insert("int8", arange(6, at::kChar) - 3);
  sd.insert("uint8", arange(6, at::kByte));
  sd.insert("bool", arange(6, at::kLong).remainder(2).eq(0));
  sd.insert("complex128", arange(6, at::kComplexDouble));
  sd.insert("complex64", arange(6, at::kComplexFloat));
  return sd;
}

StateDict new_dtypes() {
  StateDict sd = ckptw::make_state_dict();
  sd.insert("float8_e4m3fn", arange(6, at::kFloat).to(at::kFloat8_e4m3fn));
  sd.insert("float8_e5m2", arange(6, at::kFloat).to(at::kFloat8_e5m2));
  sd.insert("uint16", arange(6, at::kUInt16));
  sd.insert("uint32", arange(6, at::kUInt32));
  sd.insert("uint64", arange(6, at::kUInt64));
  sd.insert("float32", arange(6, at::kFloat));
  return sd;
}

StateDict views() {
  StateDict sd = ckptw::make_state_dict();
  at::Tensor base = arange(12, at::kFloat).reshape({3, 4});
  sd.insert("base", base);
  sd.insert("transposed", base.t());
  sd.insert("rows", base.slice(0, 1));
  sd.insert("column", base.select(1, 1));
  sd.insert("scalar", at::scalar_tensor(7.0, at::kFloat));
  sd.insert("empty", at::zeros({0, 3}, at::kFloat));
  sd.insert("expanded", arange(3, at::kFloat).expand({4, 3}));
  at::Tensor shared = arange(6, at::kLong);
  sd.insert("share_a", shared.slice(0, 0, 3));
  sd.insert("share_b", shared.slice(0, 2));
  sd.insert("requires_grad", arange(4, at::kFloat).requires_grad_(true));
  // Bytes that open like a zip data descriptor: torch's serialization id
  // counts the CRC field of such a payload too.
  sd.insert("descriptor_lookalike",
            at::tensor({0x50, 0x4b, 0x07, 0x08, 0x11, 0x22, 0x33, 0x44, 9, 9, 9, 9}, at::kByte));
  return sd;
}

StateDict many() {
  StateDict sd = ckptw::make_state_dict();
  for (int i = 0; i < 300; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "t%03d", i);
    sd.insert(key, arange(i % 7 + 1, at::kFloat) + i);
  }
  return sd;
}

// Everything but floats, which torch 1.13's weights_only unpickler rejects.
StateDict containers(bool with_floats) {
  StateDict sd = ckptw::make_state_dict();
  GenericDict model = generic_dict();
  model.insert("weight", arange(4, at::kFloat));
  GenericList layers = generic_list();
  layers.push_back(arange(2, at::kLong));
  layers.push_back(arange(3, at::kLong));
  model.insert("layers", layers);
  sd.insert("model", model);
  sd.insert("epoch", int64_t{5});
  sd.insert("step", int64_t{1000});
  sd.insert("big", int64_t{1} << 40);
  sd.insert("negative", int64_t{-3});
  sd.insert("name", std::string("gpt"));
  sd.insert("flag", true);
  sd.insert("nothing", c10::IValue());
  GenericList nested = generic_list();
  nested.push_back(int64_t{1});
  GenericList inner = generic_list();
  inner.push_back(int64_t{2});
  inner.push_back(std::string("gpt"));
  nested.push_back(inner);
  nested.push_back(c10::ivalue::Tuple::create({c10::IValue(int64_t{3}), c10::IValue(false)}));
  sd.insert("nested", nested);
  sd.insert("empty_list", generic_list());
  sd.insert("empty_dict", generic_dict());
  sd.insert("empty_tuple", c10::ivalue::Tuple::create({}));
  sd.insert("tuple4", c10::ivalue::Tuple::create({c10::IValue(int64_t{1}), c10::IValue(int64_t{2}),
                                                   c10::IValue(int64_t{3}), c10::IValue(int64_t{4})}));
  if (with_floats) {
    sd.insert("lr", 0.001);
    sd.insert("betas", c10::ivalue::Tuple::create({c10::IValue(0.9), c10::IValue(0.999)}));
  }
  return sd;
}

StateDict batches() {
  // CPython pickles dicts and lists in batches of 1000. Keys differ between
  // the two dicts: CPython memoizes strings by identity, so equal keys built
  // at run time are written twice there, while ckptw (which cannot see
  // identity) memoizes by value; see docs/format.md.
  StateDict sd = ckptw::make_state_dict();
  GenericDict d1000 = generic_dict();
  for (int i = 0; i < 1000; ++i) d1000.insert("k" + std::to_string(i), int64_t{i});
  sd.insert("dict1000", d1000);
  GenericDict d1001 = generic_dict();
  for (int i = 0; i < 1001; ++i) d1001.insert("j" + std::to_string(i), int64_t{i});
  sd.insert("dict1001", d1001);
  GenericList l1000 = generic_list();
  for (int i = 0; i < 1000; ++i) l1000.push_back(int64_t{i});
  sd.insert("list1000", l1000);
  GenericList l1001 = generic_list();
  for (int i = 0; i < 1001; ++i) l1001.push_back(int64_t{i});
  sd.insert("list1001", l1001);
  sd.insert("one", generic_list());
  sd.at("one").toList().push_back(int64_t{1});
  return sd;
}

// zip64: a storage over 4 GiB and a record whose header starts past 4 GiB.
StateDict zip64() {
  StateDict sd = ckptw::make_state_dict();
  const int64_t n = (int64_t{1} << 32) + 100;
  at::Tensor big = at::empty({n}, at::kByte);
  uint8_t* p = big.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i % 251);
  sd.insert("big", big);
  sd.insert("small", at::tensor({1.5f, -2.0f}));
  return sd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && (std::string(argv[1]) == "--roundtrip" || std::string(argv[1]) == "--roundtrip-value")) {
    // Reads a .pt file (torch.save's or ckptw's) with CheckpointReader and
    // writes what it read with CheckpointWriter: OUTDIR/checkpoint_0.pt;
    // as a StateDict (read_file), or as a Value (read_file_value).
    try {
      ckptw::CheckpointReader reader(ckptw::RankInfo{0, 1});
      ckptw::CheckpointWriter writer(ckptw::CheckpointWriterConfig{}, ckptw::RankInfo{0, 1});
      if (std::string(argv[1]) == "--roundtrip") {
        (void)writer.write(argv[3], reader.read_file(argv[2]).state_dict);
      } else {
        (void)writer.write(argv[3], reader.read_file_value(argv[2]));
      }
      return 0;
    } catch (const ckptw::Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 1;
    }
  }
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: ckptw_fixtures OUTDIR [auto|uring|posix|zip64]\n");
    return 2;
  }
  const std::string out = argv[1];
  try {
    ckptw::CheckpointWriterConfig config;
    if (argc == 3 && std::string(argv[2]) == "zip64") {
      ckptw::CheckpointWriter writer(config, ckptw::RankInfo{0, 1});
      (void)writer.write(out + "/zip64", zip64());
      return 0;
    }
    if (argc == 3) config.io_backend = ckptw::parse_io_backend_kind(argv[2]);
    ckptw::CheckpointWriter writer(config, ckptw::RankInfo{0, 1});
    (void)writer.write(out + "/dtypes", dtypes());
    (void)writer.write(out + "/new_dtypes", new_dtypes());
    (void)writer.write(out + "/views", views());
    (void)writer.write(out + "/many", many());
    (void)writer.write(out + "/containers", containers(true));
    (void)writer.write(out + "/containers_no_float", containers(false));
    (void)writer.write(out + "/batches", batches());
    ckptw::CheckpointWriterConfig aligned = config;
    aligned.storage_alignment = 4096;
    ckptw::CheckpointWriter aligned_writer(aligned, ckptw::RankInfo{0, 1});
    (void)aligned_writer.write(out + "/align4096", views());
  } catch (const ckptw::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
