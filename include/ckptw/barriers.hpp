// The barriers ckptw provides, and the seed's BarrierConfig factory.
//
// All of them implement Barrier::all_gather with an enforced deadline, name
// the ranks that did not arrive, and become unusable after a failure.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <c10/core/Device.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "ckptw/barrier.hpp"
#include "ckptw/export.hpp"
#include "ckptw/types.hpp"

namespace ckptw {

/// Barrier over a c10d TCPStore. Rank 0 hosts the store (or the caller passes
/// one in); each call writes this rank's message under
/// `{prefix}/{sequence}/{rank}` and waits for every rank's key, so a rank that
/// never arrives is named in the timeout error. Keys of the previous call are
/// removed.
class CKPTW_EXPORT TcpStoreBarrier final : public Barrier {
 public:
  struct Options {
    std::string prefix = "ckptw_barrier";  ///< key namespace; ranks must agree
    std::string master_address;            ///< default: RankInfo's MASTER_ADDR, else 127.0.0.1
    int master_port = 0;                   ///< default: RankInfo's MASTER_PORT, else 29500
    /// Connecting to (and, on rank 0, waiting for) the store; seed: timeout_barrier_init_secs.
    int init_timeout_secs = 300;
    /// Deadline of execute_barrier(); all_gather() takes its own. Seed: timeout_secs.
    int timeout_secs = 600;
  };

  /// Hosts (rank 0) or joins the TCPStore. Throws ckptw::Error when it cannot.
  TcpStoreBarrier(const RankInfo& rank_info, Options options);
  /// Uses an existing store (any c10d::Store: TCPStore, FileStore, PrefixStore).
  TcpStoreBarrier(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Store> store, Options options);
  ~TcpStoreBarrier() override;

  void execute_barrier() override;
  bool supports_all_gather() const override { return true; }
  std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout) override;

  /// The store, e.g. to share it with another barrier or component.
  c10::intrusive_ptr<c10d::Store> store() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// Barrier over a c10d backend (Gloo on CPU, NCCL on GPU): an all-gather of
/// the ranks' messages, polled against a deadline. After a timeout the
/// process group may hold an unfinished collective, so the barrier refuses
/// further use; the collective is never aborted (on NCCL that would abort
/// the communicator, the trainer's with it).
///
/// Over the trainer's own group (the default) it serves write() only, which
/// votes on the caller's thread: write_async() refuses it (see
/// Barrier::shares_callers_collectives). Give it a group of its own
/// (`dedicated_group`; Python: ProcessGroupBarrier(own_group=True)), or use
/// NcclBarrier or TcpStoreBarrier, for background writes.
class CKPTW_EXPORT ProcessGroupBarrier final : public Barrier {
 public:
  struct Options {
    std::chrono::milliseconds timeout = std::chrono::minutes(10);  ///< execute_barrier()'s deadline
    /// The group was made for this barrier and nothing else issues
    /// collectives on it, so it may vote from write_async's thread.
    bool dedicated_group = false;
    /// NCCL groups: the GPU of the vote tensors. Unset: the group's bound
    /// device (init_process_group(device_id=...)), else the constructing
    /// thread's current CUDA device, read once here (torch.cuda.set_device),
    /// never LOCAL_RANK, which is no valid ordinal under a per-rank
    /// CUDA_VISIBLE_DEVICES. Ignored for other backends (CPU tensors).
    std::optional<c10::Device> device;
  };
  ProcessGroupBarrier(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Backend> backend,
                      std::chrono::milliseconds default_timeout = std::chrono::minutes(10));
  ProcessGroupBarrier(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Backend> backend, Options options);
  ~ProcessGroupBarrier() override;

  void execute_barrier() override;
  bool supports_all_gather() const override { return true; }
  std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout) override;
  bool shares_callers_collectives() const override;
  /// The device the vote tensors live on (CPU for non-NCCL groups).
  c10::Device device() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// The design card's barrier: its own NCCL communicator (never the training
/// one), created non-blocking, whose unique id travels through a c10d store
/// (a TCPStore at MASTER_ADDR/MASTER_PORT unless one is passed). Each call is
/// an all-gather of the ranks' messages on the barrier's own CUDA stream,
/// polled (cudaEventQuery, ncclCommGetAsyncError) against the deadline, never
/// a blocking synchronize; on timeout or error the communicator is aborted
/// (ncclCommAbort) and the barrier is unusable. Throws ckptw::UsageError when
/// ckptw was built without CUDA and NCCL.
class CKPTW_EXPORT NcclBarrier final : public Barrier {
 public:
  struct Options {
    TcpStoreBarrier::Options store;  ///< where the unique id is exchanged (prefix, address, port)
    int device = -1;                 ///< CUDA device; -1: LOCAL_RANK modulo the visible devices (docs/commit.md)
    int timeout_secs = 600;          ///< communicator set-up and execute_barrier() deadline
  };
  NcclBarrier(const RankInfo& rank_info, Options options, c10::intrusive_ptr<c10d::Store> store = {});
  ~NcclBarrier() override;

  void execute_barrier() override;
  bool supports_all_gather() const override { return true; }
  std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout) override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

enum class BarrierType : std::uint8_t {
  kNone,          ///< no barrier: create_barrier_from_config returns nullptr
  kNccl,          ///< NcclBarrier
  kTcpStore,      ///< TcpStoreBarrier
  kProcessGroup,  ///< ProcessGroupBarrier over `process_group`
};

/// "none", "nccl", "tcp_store", "process_group".
CKPTW_EXPORT const char* to_string(BarrierType type);
/// Parses the names above; throws ckptw::UsageError otherwise.
CKPTW_EXPORT BarrierType parse_barrier_type(const std::string& text);

struct CKPTW_EXPORT BarrierConfig {
  BarrierType type = BarrierType::kNone;
  TcpStoreBarrier::Options tcp_store;               ///< kTcpStore, and the id exchange of kNccl
  int nccl_device = -1;                             ///< kNccl: CUDA device, -1: LOCAL_RANK modulo the visible devices
  c10::intrusive_ptr<c10d::Store> store;            ///< optional store for kTcpStore / kNccl
  c10::intrusive_ptr<c10d::Backend> process_group;  ///< required for kProcessGroup
  int timeout_secs = 600;                           ///< default deadline of execute_barrier()
};

/// Builds the configured barrier for this rank (rank info injected, as the
/// seed's docstring promises); nullptr for kNone.
CKPTW_EXPORT std::shared_ptr<Barrier> create_barrier_from_config(const BarrierConfig& config,
                                                                const RankInfo& rank_info);

}  // namespace ckptw
