// The synchronisation point between ranks, and the vote CheckpointWriter
// carries over it so that all ranks commit a checkpoint or none does.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "ckptw/export.hpp"

namespace ckptw {

/// Blocks until every rank of the job reached the same barrier call.
///
/// Ranks must call a barrier in lockstep (the n-th call on one rank meets the
/// n-th call on every other). Implementations throw ckptw::Error on failure
/// (ckptw::TimeoutError when their deadline passes) and, after any failure,
/// refuse every later call with ckptw::UsageError instead of desynchronizing
/// later checkpoints.
class CKPTW_EXPORT Barrier {
 public:
  static constexpr std::size_t kMaxMessageBytes = 64;

  virtual ~Barrier() = default;

  /// The seed's barrier: returns once every rank has called it.
  virtual void execute_barrier() = 0;

  /// Whether all_gather() is implemented. CheckpointWriter runs its vote
  /// protocol (all ranks commit or none, commit manifest) only over barriers
  /// that support it; with others it calls execute_barrier() once per write,
  /// as the seed does.
  virtual bool supports_all_gather() const { return false; }

  /// Every rank contributes `message` (at most kMaxMessageBytes bytes) and
  /// receives all ranks' messages in rank order, within `timeout`. Throws
  /// ckptw::TimeoutError naming the ranks that did not arrive. The default
  /// implementation throws ckptw::UsageError.
  virtual std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout);

  /// Whether this barrier's collectives go over a communicator the trainer
  /// also issues collectives on (its own process group). Collectives on one
  /// group are matched by issue order, so such a barrier must be called on
  /// the thread that issues the trainer's collectives: write_async, which
  /// votes on ckptw's background thread, refuses it with ckptw::UsageError.
  virtual bool shares_callers_collectives() const { return false; }
};

}  // namespace ckptw
