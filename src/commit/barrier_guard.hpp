// State every ckptw barrier shares: the call sequence number (ranks call in
// lockstep, so equal numbers meet) and the "broken" flag set by a failure,
// after which the barrier refuses use instead of desynchronizing later calls.
#pragma once

#include <cstdint>
#include <string>

#include "ckptw/barrier.hpp"
#include "ckptw/error.hpp"

namespace ckptw::detail {

class BarrierGuard {
 public:
  explicit BarrierGuard(std::string name) : name_(std::move(name)) {}

  /// Throws ckptw::UsageError when an earlier call failed.
  void check_usable() const {
    if (!broken_.empty()) {
      throw UsageError(name_ + " is unusable after an earlier failure (" + broken_ +
                       "); ranks may be out of step: create a new barrier");
    }
  }
  void mark_broken(const std::string& why) {
    if (broken_.empty()) broken_ = why;
  }
  /// The number of this call; increments on every call.
  std::uint64_t next_sequence() { return sequence_++; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string broken_;
  std::uint64_t sequence_ = 0;
};

/// Validates an all_gather message's size (Barrier::kMaxMessageBytes).
void check_message_size(const std::string& message, const std::string& barrier_name);

/// "ranks [1, 3]"
std::string describe_ranks(const std::vector<int>& ranks);

/// Throws ckptw::UsageError when `barrier` (may be null) runs collectives on
/// the trainer's own process group (Barrier::shares_callers_collectives):
/// from a background thread (write_async) they would meet the training
/// thread's collectives out of order.
void require_own_collectives(const Barrier* barrier, const std::string& path);

}  // namespace ckptw::detail
