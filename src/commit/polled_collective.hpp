// The deadline and abort logic of NcclBarrier, behind a small transport seam
// so that it runs (and is tested) on machines without a GPU.
//
// A transport runs one all-gather at a time: start() enqueues it without
// blocking, poll() reports progress without blocking, abort() tears the
// communicator down so nothing is left waiting on a rank that never comes.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "commit/barrier_guard.hpp"

namespace ckptw::detail {

class CollectiveTransport {
 public:
  enum class Progress { kPending, kDone, kFailed };

  virtual ~CollectiveTransport() = default;
  virtual void start(const std::string& message) = 0;
  /// Non-blocking; on kFailed, *error says why.
  virtual Progress poll(std::string* error) = 0;
  /// The gathered messages, in rank order, once poll() said kDone.
  virtual std::vector<std::string> result() = 0;
  /// Abandons the collective for good (e.g. ncclCommAbort). Never throws.
  virtual void abort() noexcept = 0;
};

/// Runs one all-gather through `transport` under `timeout`: polls with a
/// backoff from 20 us to 5 ms (never a blocking wait), and on timeout or
/// failure aborts the transport, marks `guard` broken and throws
/// ckptw::TimeoutError or ckptw::Error.
std::vector<std::string> polled_all_gather(CollectiveTransport& transport, BarrierGuard& guard,
                                           const std::string& message, std::chrono::milliseconds timeout);

}  // namespace ckptw::detail
