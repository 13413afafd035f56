// Key paths name a value inside a state dict in errors and in missing or
// unexpected keys: `model.layers[3].weight` (dict keys joined with '.',
// list and tuple positions in brackets). One spelling for writer and reader.
#pragma once

#include <cstddef>
#include <string>

#include "ckptw/value.hpp"

namespace ckptw {

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

/// Where a value sits, spelled out as a key path only when an error needs it.
/// Each level lives on the stack of the walk that descends through it, so a
/// trail costs nothing per entry: building every entry's path string up
/// front was a third of converting, and of planning, a state dict of many
/// small tensors.
struct KeyPathTrail {
  const KeyPathTrail* parent = nullptr;
  const Value* key = nullptr;  // a dict entry's key, or null for item `index`
  std::size_t index = 0;

  std::string key_path() const {
    if (parent == nullptr) return "";
    const std::string above = parent->key_path();
    return key ? child_key_path(above, key_text(*key)) : item_key_path(above, index);
  }
};

}  // namespace ckptw
