// ProcessGroupBarrier: an all-gather of fixed-size byte tensors ([length,
// message bytes...]) over the trainer's c10d backend. Completion is polled
// against the deadline (Work::isCompleted), so a rank that never joins cannot
// block the caller past its timeout.
#include <algorithm>
#include <cstring>
#include <thread>

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include "ckptw/barriers.hpp"
#include "commit/barrier_guard.hpp"

namespace ckptw {

namespace {

// The GPU an NCCL group's vote tensors go on (ProcessGroupBarrier::Options::device).
c10::Device vote_device(const c10d::Backend& backend, const std::optional<c10::Device>& requested,
                        const std::string& name) {
  if (backend.getBackendName() != "nccl") return c10::Device(c10::kCPU);
  if (requested) {
    if (!requested->is_cuda() || !requested->has_index()) {
      throw UsageError(name + ": device must be a CUDA device with an index, got " + requested->str());
    }
    return *requested;
  }
  if (std::optional<at::Device> bound = backend.getBoundDeviceId()) return *bound;
  try {
    return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getDevice();
  } catch (const c10::Error& e) {
    throw UsageError(name + ": cannot tell which GPU the votes go on (the group has no bound device and the "
                     "current CUDA device is unknown: " + e.what_without_backtrace() + "); pass Options::device");
  }
}

}  // namespace

class ProcessGroupBarrier::Impl {
 public:
  Impl(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Backend> backend, const Options& options)
      : rank_info_(rank_info), backend_(std::move(backend)), default_timeout_(options.timeout),
        dedicated_group_(options.dedicated_group),
        guard_("ProcessGroupBarrier(" + backend_->getBackendName() + ")"),
        device_(vote_device(*backend_, options.device, guard_.name())) {
    if (backend_->getSize() != rank_info.global_world_size || backend_->getRank() != rank_info.global_rank) {
      throw UsageError(guard_.name() + ": process group has rank " + std::to_string(backend_->getRank()) + " of " +
                       std::to_string(backend_->getSize()) + ", RankInfo says rank " +
                       std::to_string(rank_info.global_rank) + " of " + std::to_string(rank_info.global_world_size));
    }
  }

  std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout) {
    guard_.check_usable();
    detail::check_message_size(message, guard_.name());
    const std::uint64_t sequence = guard_.next_sequence();
    constexpr std::int64_t kSlot = Barrier::kMaxMessageBytes + 1;
    const at::TensorOptions options = at::TensorOptions().dtype(at::kByte).device(device_);
    at::Tensor mine = at::zeros({kSlot}, at::kByte);
    mine[0] = static_cast<std::int64_t>(message.size());
    std::memcpy(mine.data_ptr<std::uint8_t>() + 1, message.data(), message.size());
    std::vector<at::Tensor> input{mine.to(options)};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < rank_info_.global_world_size; ++r) output[0].push_back(at::empty({kSlot}, options));

    const std::string where = guard_.name() + " call #" + std::to_string(sequence);
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = backend_->allgather(output, input);
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      auto pause = std::chrono::microseconds(50);
      while (!work->isCompleted()) {
        if (std::chrono::steady_clock::now() >= deadline) {
          // The collective stays queued: aborting it would abort the group's
          // communicator (WorkNCCL::abort), which is the trainer's. The
          // barrier refuses further use instead.
          guard_.mark_broken("timed out");
          throw TimeoutError(where + " timed out after " + std::to_string(timeout.count()) +
                             " ms: not every rank joined the all-gather");
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(std::chrono::milliseconds(10)));
      }
      work->wait();  // rethrows the collective's error, if any
    } catch (const c10::Error& e) {
      guard_.mark_broken("failed");
      throw Error(where + " failed: " + e.what_without_backtrace());
    }
    std::vector<std::string> messages;
    for (const at::Tensor& slot : output[0]) {
      at::Tensor host = slot.cpu();
      const std::uint8_t* p = host.data_ptr<std::uint8_t>();
      messages.emplace_back(reinterpret_cast<const char*>(p + 1), std::min<std::size_t>(p[0], Barrier::kMaxMessageBytes));
    }
    return messages;
  }

  RankInfo rank_info_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  std::chrono::milliseconds default_timeout_;
  bool dedicated_group_;
  detail::BarrierGuard guard_;
  c10::Device device_;
};

ProcessGroupBarrier::ProcessGroupBarrier(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Backend> backend,
                                         std::chrono::milliseconds default_timeout)
    : ProcessGroupBarrier(rank_info, std::move(backend), Options{default_timeout, false, std::nullopt}) {}

ProcessGroupBarrier::ProcessGroupBarrier(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Backend> backend,
                                         Options options)
    : impl_(std::make_unique<Impl>(rank_info, std::move(backend), options)) {}

bool ProcessGroupBarrier::shares_callers_collectives() const { return !impl_->dedicated_group_; }

c10::Device ProcessGroupBarrier::device() const { return impl_->device_; }

ProcessGroupBarrier::~ProcessGroupBarrier() = default;

void ProcessGroupBarrier::execute_barrier() { (void)all_gather("", impl_->default_timeout_); }

std::vector<std::string> ProcessGroupBarrier::all_gather(const std::string& message,
                                                         std::chrono::milliseconds timeout) {
  return impl_->all_gather(message, timeout);
}

}  // namespace ckptw
