// Callbacks around the commit of a checkpoint.
#pragma once

#include <string>

#include "ckptw/export.hpp"
#include "ckptw/types.hpp"

namespace ckptw {

/// User actions before and after a checkpoint is committed.
///
/// Called on the thread that runs CheckpointWriter::write. `path` is the
/// checkpoint directory passed to write(); `kwargs` are the HookArgs passed to it.
class CKPTW_EXPORT WriterHook {
 public:
  virtual ~WriterHook() = default;

  /// Runs after this rank's file is durable under its final name and before the
  /// barrier. An exception propagates out of write().
  virtual void pre_commit(const std::string& path, const HookArgs& kwargs) = 0;

  /// Runs after every rank passed the barrier. An exception propagates out of
  /// write(); the files stay committed.
  virtual void post_commit(const std::string& path, const HookArgs& kwargs) = 0;
};

}  // namespace ckptw
