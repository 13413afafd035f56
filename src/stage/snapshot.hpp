// A point-in-time copy of a state dict: every distinct storage copied once
// (to host memory), tensors rebuilt on the copies with their offsets and
// strides, so views and shared storages stay shared. Containers are copied;
// scalars and strings are values already.
#pragma once

#include "ckptw/types.hpp"

namespace ckptw::detail {

/// Throws ckptw::FormatError naming the key path for values the writer could
/// not encode either (so an async save fails at once, not later).
StateDict snapshot_state_dict(const StateDict& state_dict);

}  // namespace ckptw::detail
