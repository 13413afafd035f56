// Access to CheckpointWriter internals that are not public API: the fault
// tests build writers over an injected (fault-injecting) I/O backend.
#pragma once

#include <memory>

#include "ckptw/checkpoint_writer.hpp"
#include "io/io_backend.hpp"

namespace ckptw::detail {

struct WriterInternals {
  /// A CheckpointWriter whose every system call goes through `io`.
  static CheckpointWriter make(CheckpointWriterConfig config, RankInfo rank_info, std::shared_ptr<Barrier> barrier,
                               std::shared_ptr<WriterHook> hook, std::unique_ptr<IoBackend> io);
};

}  // namespace ckptw::detail
