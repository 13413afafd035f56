// Key paths name a value inside a state dict in errors and in missing or
// unexpected keys: `model.layers[3].weight` (dict keys joined with '.',
// list and tuple positions in brackets). One spelling for writer and reader.
#pragma once

#include <cstddef>
#include <string>

#include "ckptw/value.hpp"

namespace ckptw::detail {

inline std::string child_key_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

inline std::string item_key_path(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

/// How a dict key appears in a key path: a string as itself, an int in
/// decimal, True/False/None as Python spells them, others as <type>.
inline std::string key_text(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kString: return key.as_string();
    case Value::Kind::kInt: return std::to_string(key.as_int());
    case Value::Kind::kBool: return key.as_bool() ? "True" : "False";
    case Value::Kind::kNone: return "None";
    default: return std::string("<") + key.type_name() + ">";
  }
}

}  // namespace ckptw::detail
