// The synchronisation point between ranks before post_commit hooks run.
#pragma once

#include "ckptw/export.hpp"

namespace ckptw {

/// Blocks until every rank of the job reached the same barrier call.
///
/// Ranks must call execute_barrier() in lockstep (the n-th call on one rank
/// meets the n-th call on every other). Implementations throw ckptw::Error on
/// failure (ckptw::TimeoutError when their deadline passes).
class CKPTW_EXPORT Barrier {
 public:
  virtual ~Barrier() = default;
  virtual void execute_barrier() = 0;
};

}  // namespace ckptw
