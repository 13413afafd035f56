// The protocol-2 emitter produces CPython's bytes for the values it encodes.
// (Whole state dicts are compared with torch.save byte for byte in tests/interop.)
#include <gtest/gtest.h>

#include <algorithm>

#include "format/pickle_writer.hpp"

namespace ckptw::detail {
namespace {

// A byte string from a literal, embedded NULs included.
template <std::size_t N>
std::string B(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

std::string pickled_int(std::int64_t v) {
  PickleWriter p;
  p.integer(v);
  std::string out = p.finish();
  return out.substr(2, out.size() - 3);  // drop PROTO 2 and STOP
}

TEST(PickleWriter, IntegersUseCPythonEncodings) {
  EXPECT_EQ(pickled_int(0), B("K\x00"));
  EXPECT_EQ(pickled_int(255), "K\xff");
  EXPECT_EQ(pickled_int(256), B("M\x00\x01"));
  EXPECT_EQ(pickled_int(65536), B("J\x00\x00\x01\x00"));
  EXPECT_EQ(pickled_int(-1), "J\xff\xff\xff\xff");
  EXPECT_EQ(pickled_int(2147483647), "J\xff\xff\xff\x7f");
  // Beyond int32: LONG1 with the minimal two's-complement length.
  EXPECT_EQ(pickled_int(2147483648LL), B("\x8a\x05\x00\x00\x00\x80\x00"));
  EXPECT_EQ(pickled_int(-2147483649LL), B("\x8a\x05\xff\xff\xff\x7f\xff"));
  EXPECT_EQ(pickled_int(4294967396LL), B("\x8a\x05\x64\x00\x00\x00\x01"));
  EXPECT_EQ(pickled_int(INT64_MAX), B("\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f"));
  EXPECT_EQ(pickled_int(INT64_MIN), B("\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80"));
}

TEST(PickleWriter, FloatIsBigEndianBinFloat) {
  PickleWriter p;
  p.floating(1.0);
  EXPECT_EQ(p.finish(), B("\x80\x02G\x3f\xf0\x00\x00\x00\x00\x00\x00."));
}

TEST(PickleWriter, RepeatedStringsAreMemoHits) {
  PickleWriter p;
  p.list(2, [&](std::size_t) { p.string("x"); });
  // ] q0 ( X "x" q1 h1 e .
  EXPECT_EQ(p.finish(), B("\x80\x02]q\x00(X\x01\x00\x00\x00xq\x01h\x01" "e."));
}

TEST(PickleWriter, MemoIdsPast255UseLongForms) {
  PickleWriter p;
  p.list(300, [&](std::size_t i) { p.string("s" + std::to_string(i)); });
  p.list(1, [&](std::size_t) { p.string("s299"); });
  std::string out = p.finish();
  EXPECT_NE(out.find(B("r\x00\x01\x00\x00")), std::string::npos);  // LONG_BINPUT 256
  EXPECT_NE(out.find(B("j\x2c\x01\x00\x00")), std::string::npos);  // LONG_BINGET 300
}

int count(const std::string& s, char c) { return static_cast<int>(std::count(s.begin(), s.end(), c)); }

TEST(PickleWriter, DictBatchesEndWithAnEmptyBatchOnAMultipleOf1000) {
  // CPython's batch_dict_exact loops until a batch comes out short.
  for (std::size_t n : {1u, 2u, 999u, 1000u, 1001u, 2000u}) {
    PickleWriter p;
    p.dict(n, [&](std::size_t) { p.none(); p.none(); });
    std::string out = p.finish();
    if (n == 1) {
      EXPECT_EQ(count(out, 's'), 1);
      EXPECT_EQ(count(out, 'u'), 0);
    } else {
      EXPECT_EQ(count(out, 'u'), static_cast<int>(n / 1000 + 1)) << n;
    }
  }
}

TEST(PickleWriter, ListBatchesStopWhenDone) {
  // CPython's batch_list_exact stops as soon as every item is written.
  for (std::size_t n : {2u, 1000u, 1001u, 2000u}) {
    PickleWriter p;
    p.list(n, [&](std::size_t) { p.none(); });
    std::string out = p.finish();
    EXPECT_EQ(count(out, 'e'), static_cast<int>((n + 999) / 1000)) << n;
  }
}

TEST(PickleWriter, TuplesOfUpToThreeUseShortOpcodes) {
  PickleWriter p;
  p.tuple(0, [&](std::size_t) {});
  p.tuple(2, [&](std::size_t i) { p.integer(static_cast<std::int64_t>(i)); });
  p.tuple(4, [&](std::size_t i) { p.integer(static_cast<std::int64_t>(i)); });
  EXPECT_EQ(p.finish(),
            B("\x80\x02)K\x00K\x01\x86q\x00(K\x00K\x01K\x02K\x03tq\x01."));
}

TEST(PickleWriter, TensorMatchesTorchSaveFirstEntry) {
  // torch.save({'f32': tensor([1, 2.5, -3.75])}) data.pkl from shared spec §6.4
  // (SETITEM since there is a single entry).
  PickleWriter p;
  p.dict(1, [&](std::size_t) {
    p.string("f32");
    TensorPickle t;
    t.legacy_storage_class = "FloatStorage";
    t.storage_index = 0;
    t.location = "cpu";
    t.storage_numel = 3;
    t.sizes = {3};
    t.strides = {1};
    p.tensor(t);
  });
  const std::string expected =
      B("\x80\x02}q\x00X\x03\x00\x00\x00" "f32q\x01" "ctorch._utils\n_rebuild_tensor_v2\nq\x02") +
      B("((X\x07\x00\x00\x00storageq\x03" "ctorch\nFloatStorage\nq\x04" "X\x01\x00\x00\x00" "0q\x05"
                  "X\x03\x00\x00\x00" "cpuq\x06K\x03tq\x07QK\x00K\x03\x85q\x08K\x01\x85q\x09\x89"
                  "ccollections\nOrderedDict\nq\x0a)Rq\x0btq\x0cRq\x0ds.");
  EXPECT_EQ(p.finish(), expected);
}

}  // namespace
}  // namespace ckptw::detail
