// Basic vocabulary types shared by the writer, hooks and barriers.
#pragma once

#include <string>
#include <string_view>

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

#include "ckptw/export.hpp"

namespace ckptw {

/// Where this process sits in a distributed job.
struct CKPTW_EXPORT RankInfo {
  RankInfo() = default;
  RankInfo(int rank, int world_size) : global_rank(rank), global_world_size(world_size) {}

  int global_rank = 0;        ///< this process's rank, in [0, global_world_size)
  int global_world_size = 1;  ///< number of ranks writing the checkpoint together
  int local_rank = 0;         ///< rank on this node (LOCAL_RANK): the CUDA device by default
  std::string master_address; ///< MASTER_ADDR, empty when unset
  int master_port = 0;        ///< MASTER_PORT, 0 when unset

  /// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT as
  /// torchrun sets them; an unset variable takes the default above. Throws
  /// ckptw::UsageError when a value is not an integer or the rank lies
  /// outside [0, world size).
  static RankInfo from_env();
};

/// A state dict: string keys in insertion order, mapped to tensors, nested
/// string-keyed dicts, lists, tuples, int, double, bool, string or None.
using StateDict = c10::Dict<std::string, c10::IValue>;

/// Keyword arguments passed through to WriterHook callbacks (the seed's **kwargs).
using HookArgs = c10::Dict<std::string, c10::IValue>;

/// The file rank `rank` writes in a checkpoint directory, as the seed names
/// it: "checkpoint_{rank}.pt". Writer, reader, verify and the bench use it.
CKPTW_EXPORT std::string rank_file_name(int rank);
/// The rank whose file `name` is ("checkpoint_3.pt" -> 3), or -1 when `name`
/// is not a rank file's name.
CKPTW_EXPORT int rank_of_file_name(std::string_view name);
/// The commit manifest rank 0 writes into a checkpoint directory once every
/// rank voted yes; its presence is the commit point (docs/commit.md).
inline constexpr const char* kManifestFileName = "checkpoint_manifest.json";

/// An empty StateDict (or HookArgs). c10::Dict<std::string, c10::IValue> has
/// no usable default constructor (LibTorch only allows typed construction for
/// IValue values), so start every state dict from this one.
CKPTW_EXPORT StateDict make_state_dict();

}  // namespace ckptw
