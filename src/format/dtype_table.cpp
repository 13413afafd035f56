#include "format/dtype_table.hpp"

#include <iterator>

namespace ckptw::detail {
namespace {

// Legacy names: torch/storage.py _dtype_to_storage_type_map (frozen since 1.x).
// v3-only dtypes: torch/storage.py _new_dtypes; torch.save writes them with
// _rebuild_tensor_v3 and an UntypedStorage whose numel counts bytes.
constexpr DtypeInfo kDtypes[] = {
    {"Double", "float64", "DoubleStorage", 8},
    {"Float", "float32", "FloatStorage", 4},
    {"Half", "float16", "HalfStorage", 2},
    {"BFloat16", "bfloat16", "BFloat16Storage", 2},
    {"Long", "int64", "LongStorage", 8},
    {"Int", "int32", "IntStorage", 4},
    {"Short", "int16", "ShortStorage", 2},
    {"Char", "int8", "CharStorage", 1},
    {"Byte", "uint8", "ByteStorage", 1},
    {"Bool", "bool", "BoolStorage", 1},
    {"ComplexDouble", "complex128", "ComplexDoubleStorage", 16},
    {"ComplexFloat", "complex64", "ComplexFloatStorage", 8},
    {"Float8_e5m2", "float8_e5m2", "", 1},
    {"Float8_e4m3fn", "float8_e4m3fn", "", 1},
    {"Float8_e5m2fnuz", "float8_e5m2fnuz", "", 1},
    {"Float8_e4m3fnuz", "float8_e4m3fnuz", "", 1},
    {"Float8_e8m0fnu", "float8_e8m0fnu", "", 1},
    {"Float4_e2m1fn_x2", "float4_e2m1fn_x2", "", 1},
    {"UInt16", "uint16", "", 2},
    {"UInt32", "uint32", "", 4},
    {"UInt64", "uint64", "", 8},
    {"ComplexHalf", "complex32", "", 4},
    {"Bits8", "bits8", "", 1},
    {"Bits16", "bits16", "", 2},
    {"Bits1x8", "bits1x8", "", 1},
    {"Bits2x4", "bits2x4", "", 1},
    {"Bits4x2", "bits4x2", "", 1},
};

template <typename Field>
const DtypeInfo* find_by(std::string_view name, Field field) {
  if (name.empty()) return nullptr;
  for (const auto& info : kDtypes) {
    if (info.*field == name) return &info;
  }
  return nullptr;
}

}  // namespace

const DtypeInfo* dtype_by_c10_name(std::string_view name) { return find_by(name, &DtypeInfo::c10_name); }
const DtypeInfo* dtype_by_legacy_storage(std::string_view name) { return find_by(name, &DtypeInfo::legacy_storage); }
const DtypeInfo* dtype_by_torch_name(std::string_view name) { return find_by(name, &DtypeInfo::torch_name); }

}  // namespace ckptw::detail
