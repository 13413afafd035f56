// How deep a Value may nest. The conversions into a Value (C++ and Python)
// and the planner over one refuse deeper containers, as the reader refuses
// deeper pickles (read/pickle_reader.hpp's kMaxPickleDepth), so that no walk
// over a value can exhaust the stack.
#pragma once

#include <cstddef>

namespace ckptw::detail {

inline constexpr std::size_t kMaxValueDepth = 1000;

}  // namespace ckptw::detail
