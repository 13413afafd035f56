// The LibTorch ScalarType of a dtype the .pt format names ("float32"), for
// the reader and for Value's dtypes. Separate from dtype_table.hpp, which
// stays free of LibTorch.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

#include <c10/core/ScalarType.h>

#include "format/dtype_table.hpp"

namespace ckptw::detail {

/// std::nullopt when the name is no .pt dtype or this LibTorch lacks it.
inline std::optional<c10::ScalarType> scalar_type_for(std::string_view torch_name) {
  const DtypeInfo* info = dtype_by_torch_name(torch_name);
  if (info == nullptr) return std::nullopt;
  for (int i = 0; i < static_cast<int>(c10::ScalarType::NumOptions); ++i) {
    const auto type = static_cast<c10::ScalarType>(i);
    if (info->c10_name == c10::toString(type)) return type;
  }
  return std::nullopt;
}

/// The .pt dtype of a ScalarType, nullptr when the format cannot hold it: a
/// table indexed by ScalarType, made once, so the writer's per-tensor lookup
/// compares no names.
inline const DtypeInfo* dtype_for(c10::ScalarType type) {
  static const auto table = [] {
    std::array<const DtypeInfo*, static_cast<std::size_t>(c10::ScalarType::NumOptions)> t{};
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = dtype_by_c10_name(c10::toString(static_cast<c10::ScalarType>(i)));
    return t;
  }();
  const auto index = static_cast<std::size_t>(type);
  return index < table.size() ? table[index] : nullptr;
}

}  // namespace ckptw::detail
