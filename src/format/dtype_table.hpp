// The dtypes the .pt format can hold, and how the pickle names them.
// One table for the writer (by c10 ScalarType name) and the reader (by
// storage class or dtype global). Torch-free.
#pragma once

#include <cstddef>
#include <string_view>

namespace ckptw::detail {

struct DtypeInfo {
  std::string_view c10_name;       ///< c10::toString(ScalarType): "Float", "UInt16"
  std::string_view torch_name;     ///< Python name: "float32", "uint16"
  std::string_view legacy_storage; ///< _rebuild_tensor_v2 storage class, empty for v3-only dtypes
  std::size_t element_size;
};

/// nullptr when the dtype cannot be written to a .pt file.
const DtypeInfo* dtype_by_c10_name(std::string_view name);
/// By legacy storage class ("FloatStorage").
const DtypeInfo* dtype_by_legacy_storage(std::string_view name);
/// By the `torch.<name>` global _rebuild_tensor_v3 uses ("float8_e4m3fn").
const DtypeInfo* dtype_by_torch_name(std::string_view name);

}  // namespace ckptw::detail
