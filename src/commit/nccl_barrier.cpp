// NcclBarrier: the deadline logic is polled_all_gather(), the id exchange and
// the gather's ordering are in nccl_protocol.cpp (plain C++, tested without a
// GPU); this file holds the NCCL and CUDA calls behind them (compiled when
// ckptw is built with CUDA and NCCL).
#include <cstdlib>
#include <cstring>
#include <thread>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "ckptw/barriers.hpp"
#include "commit/nccl_protocol.hpp"
#include "commit/polled_collective.hpp"
#include "commit/store_connect.hpp"

#if CKPTW_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "cuda_device_runtime.cuh"
#endif

namespace ckptw {

#if CKPTW_HAVE_NCCL
namespace {

constexpr std::size_t kSlot = Barrier::kMaxMessageBytes + 1;  // [length, bytes...]

std::string cuda_text(cudaError_t rc) { return std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc); }

detail::NcclCalls::Status from_cuda(cudaError_t rc, const char* what) {
  if (rc == cudaSuccess) return {};
  (void)cudaGetLastError();  // one failed call must not fail the trainer's next launch check
  return {detail::NcclCalls::State::kFailed, std::string(what) + " failed (" + cuda_text(rc) + ")"};
}

detail::NcclCalls::Status from_nccl(ncclResult_t rc) {
  if (rc == ncclSuccess) return {};
  if (rc == ncclInProgress) return {detail::NcclCalls::State::kInProgress, {}};
  return {detail::NcclCalls::State::kFailed, ncclGetErrorString(rc)};
}

void cuda_check(cudaError_t rc, const char* what) {
  if (detail::NcclCalls::Status s = from_cuda(rc, what); s.state == detail::NcclCalls::State::kFailed) {
    throw Error("NcclBarrier: " + s.error);
  }
}

// The barrier's own communicator (non-blocking), stream, completion event and
// buffers on one device; every call makes that device current first.
class CudaNcclCalls final : public detail::NcclCalls {
 public:
  CudaNcclCalls(int device, int rank, int world, const ncclUniqueId& id, std::chrono::milliseconds init_timeout)
      : device_(device), world_(world) {
    try {
      set_up(rank, id, init_timeout);
    } catch (...) {
      release();  // a trainer may construct the barrier again
      throw;
    }
  }
  ~CudaNcclCalls() override { release(); }

  unsigned char* host_send() override { return static_cast<unsigned char*>(host_send_); }
  const unsigned char* host_recv() override { return static_cast<const unsigned char*>(host_recv_); }

  Status upload_send() override {
    detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
    if (std::string why = unusable(on); !why.empty()) return {State::kFailed, why};
    return from_cuda(cudaMemcpyAsync(device_send_, host_send_, kSlot, cudaMemcpyHostToDevice, stream_),
                     "cudaMemcpyAsync");
  }
  Status all_gather() override {
    detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
    if (std::string why = unusable(on); !why.empty()) return {State::kFailed, why};
    return from_nccl(ncclAllGather(device_send_, device_recv_, kSlot, ncclUint8, comm_, stream_));
  }
  Status comm_state() override {
    ncclResult_t state = ncclSuccess;
    if (ncclResult_t rc = ncclCommGetAsyncError(comm_, &state); rc != ncclSuccess) return from_nccl(rc);
    return from_nccl(state);
  }
  Status download_and_record() override {
    detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
    if (std::string why = unusable(on); !why.empty()) return {State::kFailed, why};
    Status s = from_cuda(cudaMemcpyAsync(host_recv_, device_recv_, kSlot * world_, cudaMemcpyDeviceToHost, stream_),
                         "cudaMemcpyAsync");
    if (s.state == State::kSuccess) s = from_cuda(cudaEventRecord(done_, stream_), "cudaEventRecord");
    return s;
  }
  Status query_done() override {
    detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
    if (std::string why = unusable(on); !why.empty()) return {State::kFailed, why};
    const cudaError_t rc = cudaEventQuery(done_);
    if (rc == cudaErrorNotReady) {
      (void)cudaGetLastError();  // not ready is no error: leave none behind for the trainer (torch does the same)
      return {State::kInProgress, {}};
    }
    return from_cuda(rc, "cudaEventQuery");
  }
  void abort() noexcept override {
    if (comm_ != nullptr) {
      detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
      ncclCommAbort(comm_);  // never ncclCommDestroy: it may wait on ranks that are gone
      comm_ = nullptr;
    }
  }

 private:
  // Empty when `on` made the communicator's device current, else why not.
  std::string unusable(const detail::ScopedDevice& on) const {
    return on.error().empty() ? std::string() : "cannot use cuda:" + std::to_string(device_) + ": " + on.error();
  }

  // Throws with whatever it made still held; the constructor releases it
  // (abort() included: a communicator still setting up is aborted).
  void set_up(int rank, const ncclUniqueId& id, std::chrono::milliseconds init_timeout) {
    detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
    if (std::string why = unusable(on); !why.empty()) throw Error("NcclBarrier: " + why);
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaMalloc(&device_send_, kSlot), "cudaMalloc");
    cuda_check(cudaMalloc(&device_recv_, kSlot * world_), "cudaMalloc");
    cuda_check(cudaMallocHost(&host_send_, kSlot), "cudaMallocHost");
    cuda_check(cudaMallocHost(&host_recv_, kSlot * world_), "cudaMallocHost");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // every NCCL call returns at once; progress is polled
    ncclResult_t rc = ncclCommInitRankConfig(&comm_, world_, id, rank, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      throw Error(std::string("NcclBarrier: ncclCommInitRankConfig failed: ") + ncclGetErrorString(rc));
    }
    const auto deadline = std::chrono::steady_clock::now() + init_timeout;
    Status state = comm_state();
    while (state.state == State::kInProgress) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw TimeoutError("NcclBarrier: communicator set-up timed out after " +
                           std::to_string(init_timeout.count()) + " ms (not every rank joined)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      state = comm_state();
    }
    if (state.state == State::kFailed) throw Error("NcclBarrier: communicator set-up failed: " + state.error);
  }

  void release() noexcept {
    abort();
    detail::ScopedDevice on(detail::cuda::device_runtime(), device_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
    cudaFree(device_send_);
    cudaFree(device_recv_);
    cudaFreeHost(host_send_);
    cudaFreeHost(host_recv_);
    (void)cudaGetLastError();
    done_ = nullptr;
    stream_ = nullptr;
    device_send_ = device_recv_ = host_send_ = host_recv_ = nullptr;
  }

  int device_;
  int world_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
  void* device_send_ = nullptr;
  void* device_recv_ = nullptr;
  void* host_send_ = nullptr;
  void* host_recv_ = nullptr;
};


// NCCL_COMM_BLOCKING in the environment overrides a communicator's
// `blocking` config (NCCL's envConfigOverride): at 1, set-up and every call
// would block in NCCL with no deadline, and the barrier could not enforce
// its timeout. Refused before anything is created.
void refuse_blocking_override(const std::string& name) {
  const char* blocking = std::getenv("NCCL_COMM_BLOCKING");
  if (blocking != nullptr && std::string(blocking) != "0" && *blocking != '\0') {
    throw UsageError(name + ": NCCL_COMM_BLOCKING=" + blocking +
                     " in the environment would make ckptw's own communicator blocking, and its deadline "
                     "unenforceable; unset it (or set it to 0) for this process, or use TcpStoreBarrier or "
                     "ProcessGroupBarrier");
  }
}

}  // namespace
#endif

class NcclBarrier::Impl {
 public:
  Impl(const RankInfo& rank_info, Options options, c10::intrusive_ptr<c10d::Store> store)
      : options_(std::move(options)), guard_("NcclBarrier '" + options_.store.prefix + "'") {
#if CKPTW_HAVE_NCCL
    refuse_blocking_override(guard_.name());
    options_.store = detail::resolve_store_options(rank_info, options_.store);
    if (!store) store = detail::connect_tcp_store(rank_info, options_.store);
    const auto timeout = std::chrono::milliseconds(std::chrono::seconds(options_.timeout_secs));
    ncclUniqueId id;
    std::vector<std::uint8_t> bytes;
    try {
      bytes = detail::exchange_unique_id(*store, options_.store.prefix, rank_info.global_rank,
                                         rank_info.global_world_size, timeout, [] {
                                           ncclUniqueId fresh;
                                           ncclResult_t rc = ncclGetUniqueId(&fresh);
                                           if (rc != ncclSuccess) {
                                             throw Error(std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(rc));
                                           }
                                           const auto* p = reinterpret_cast<const std::uint8_t*>(&fresh);
                                           return std::vector<std::uint8_t>(p, p + sizeof fresh);
                                         });
    } catch (const c10::Error& e) {
      throw Error(std::string("NcclBarrier: unique-id exchange failed: ") + e.what_without_backtrace());
    }
    if (bytes.size() != sizeof id) throw Error("NcclBarrier: malformed unique id in the store");
    std::memcpy(&id, bytes.data(), sizeof id);
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess) {
      (void)cudaGetLastError();
      visible = 0;
    }
    const int device = detail::nccl_device(options_.device, rank_info.local_rank, visible);
    calls_ = std::make_unique<CudaNcclCalls>(device, rank_info.global_rank, rank_info.global_world_size, id, timeout);
    transport_ = std::make_unique<detail::NcclGatherTransport>(*calls_, rank_info.global_world_size, kSlot);
    store_ = std::move(store);
#else
    (void)rank_info;
    (void)store;
    throw UsageError("NcclBarrier: this build of ckptw has no CUDA/NCCL support");
#endif
  }

  Options options_;
  detail::BarrierGuard guard_;
  c10::intrusive_ptr<c10d::Store> store_;
#if CKPTW_HAVE_NCCL
  std::unique_ptr<CudaNcclCalls> calls_;  // before transport_, which uses it
#endif
  std::unique_ptr<detail::CollectiveTransport> transport_;
};

NcclBarrier::NcclBarrier(const RankInfo& rank_info, Options options, c10::intrusive_ptr<c10d::Store> store)
    : impl_(std::make_unique<Impl>(rank_info, std::move(options), std::move(store))) {}

NcclBarrier::~NcclBarrier() = default;

void NcclBarrier::execute_barrier() { (void)all_gather("", std::chrono::seconds(impl_->options_.timeout_secs)); }

std::vector<std::string> NcclBarrier::all_gather(const std::string& message, std::chrono::milliseconds timeout) {
  return detail::polled_all_gather(*impl_->transport_, impl_->guard_, message, timeout);
}

}  // namespace ckptw
