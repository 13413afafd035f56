// The NCCL barrier's protocol as plain C++, so that it runs in CI where there
// is no GPU: the unique-id exchange through a c10d store, and the all-gather
// over the few NCCL and CUDA calls it makes (NcclCalls), tested against a
// fake that behaves as a non-blocking NCCL communicator does.
// nccl_barrier.cpp implements NcclCalls with NCCL and the CUDA runtime.
//
// The rules (docs/commit.md, "NCCL barrier"):
// - On a non-blocking communicator a collective may return "in progress":
//   NCCL is still enqueueing it on its own thread, and its kernel reaches the
//   stream later. Nothing that depends on it (the copy of the result back,
//   the completion event) is queued until the communicator's state has left
//   "in progress"; only success counts as enqueued.
// - A not-ready event query is no error (NcclCalls clears CUDA's last error
//   after it, so the trainer's next launch check does not see it).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "commit/polled_collective.hpp"

namespace ckptw::detail {

/// Hands rank 0's NCCL unique id (`make_id()`, called on rank 0 only) to
/// every rank through `store`, one generation per barrier built with
/// `prefix`: rank 0 numbers the generation (the store's add), publishes the id
/// under `{prefix}/nccl_unique_id/{generation}` and then the generation under
/// `{prefix}/nccl_unique_id/latest`; the other ranks read the id of the
/// latest generation, and the last of them to read it deletes it. A rank that
/// finds the latest generation's id already deleted (its readers were
/// complete: it is the previous generation) waits for the next. Rank 0
/// deletes a previous generation's id that not every rank read (a timed-out
/// set-up) before it publishes. Throws ckptw::TimeoutError at the deadline.
std::vector<std::uint8_t> exchange_unique_id(c10d::Store& store, const std::string& prefix, int rank, int world,
                                             std::chrono::milliseconds timeout,
                                             const std::function<std::vector<std::uint8_t>()>& make_id);

/// The CUDA device of a rank's NCCL barrier: `requested` when it is >= 0,
/// else LOCAL_RANK modulo the devices this process sees (one per process
/// under CUDA_VISIBLE_DEVICES or Slurm's --gpus-per-task: device 0; all of
/// them: the local rank's). Throws ckptw::Error when no device is visible.
int nccl_device(int requested, int local_rank, int visible_devices);

class NcclCalls {
 public:
  enum class State { kSuccess, kInProgress, kFailed };
  struct Status {
    State state = State::kSuccess;
    std::string error;  ///< why, when kFailed
  };

  virtual ~NcclCalls() = default;
  /// Pinned host buffers of slot_bytes (send) and slot_bytes * world (receive).
  virtual unsigned char* host_send() = 0;
  virtual const unsigned char* host_recv() = 0;
  /// Queues the upload of host_send() to the device's send buffer.
  virtual Status upload_send() = 0;
  /// ncclAllGather of the send buffer into the receive buffer, on the barrier's stream.
  virtual Status all_gather() = 0;
  /// ncclCommGetAsyncError.
  virtual Status comm_state() = 0;
  /// Queues the download of the receive buffer into host_recv(), then the completion event.
  virtual Status download_and_record() = 0;
  /// cudaEventQuery of the completion event: kInProgress while not ready.
  virtual Status query_done() = 0;
  /// ncclCommAbort. Never throws.
  virtual void abort() noexcept = 0;
};

class NcclGatherTransport final : public CollectiveTransport {
 public:
  /// `slot_bytes` per rank: [length, bytes...] of at most slot_bytes - 1 bytes.
  NcclGatherTransport(NcclCalls& calls, int world, std::size_t slot_bytes);

  void start(const std::string& message) override;
  Progress poll(std::string* error) override;
  std::vector<std::string> result() override;
  void abort() noexcept override;

 private:
  enum class Phase { kIdle, kEnqueueing, kQueued };
  NcclCalls& calls_;
  int world_;
  std::size_t slot_bytes_;
  Phase phase_ = Phase::kIdle;
};

}  // namespace ckptw::detail
