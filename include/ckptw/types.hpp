// Basic vocabulary types shared by the writer, hooks and barriers.
#pragma once

#include <string>

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

#include "ckptw/export.hpp"

namespace ckptw {

/// Where this process sits in a distributed job.
struct CKPTW_EXPORT RankInfo {
  int global_rank = 0;        ///< this process's rank, in [0, global_world_size)
  int global_world_size = 1;  ///< number of ranks writing the checkpoint together

  /// Reads RANK and WORLD_SIZE as torchrun sets them; an unset variable takes
  /// the default (0 and 1). Throws ckptw::UsageError when a value is not an
  /// integer or the rank lies outside [0, world size).
  static RankInfo from_env();
};

/// A state dict: string keys in insertion order, mapped to tensors, nested
/// string-keyed dicts, lists, tuples, int, double, bool, string or None.
using StateDict = c10::Dict<std::string, c10::IValue>;

/// Keyword arguments passed through to WriterHook callbacks (the seed's **kwargs).
using HookArgs = c10::Dict<std::string, c10::IValue>;

/// An empty StateDict (or HookArgs). c10::Dict<std::string, c10::IValue> has
/// no usable default constructor (LibTorch only allows typed construction for
/// IValue values), so start every state dict from this one.
CKPTW_EXPORT StateDict make_state_dict();

}  // namespace ckptw
