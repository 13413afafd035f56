// NcclBarrier: the deadline logic is polled_all_gather(); this file holds the
// NCCL transport (compiled when ckptw is built with CUDA and NCCL) and the
// unique-id exchange through a c10d store.
#include <cstring>
#include <thread>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "ckptw/barriers.hpp"
#include "commit/polled_collective.hpp"
#include "commit/store_connect.hpp"

#if CKPTW_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace ckptw {

#if CKPTW_HAVE_NCCL
namespace {

constexpr std::size_t kSlot = Barrier::kMaxMessageBytes + 1;  // [length, bytes...]

std::string cuda_text(cudaError_t rc) { return std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc); }

void cuda_check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw Error(std::string("NcclBarrier: ") + what + " failed (" + cuda_text(rc) + ")");
}

// One all-gather of kSlot bytes per rank on the barrier's own stream and
// communicator. Host staging is pinned so the copies are truly asynchronous.
class NcclTransport final : public detail::CollectiveTransport {
 public:
  NcclTransport(int device, int rank, int world, const ncclUniqueId& id, std::chrono::milliseconds init_timeout)
      : world_(world) {
    try {
      set_up(device, rank, id, init_timeout);
    } catch (...) {
      release();  // a trainer may construct the barrier again
      throw;
    }
  }

  ~NcclTransport() override { release(); }

  void start(const std::string& message) override {
    auto* send = static_cast<unsigned char*>(host_send_);
    std::memset(send, 0, kSlot);
    send[0] = static_cast<unsigned char>(message.size());
    std::memcpy(send + 1, message.data(), message.size());
    cuda_check(cudaMemcpyAsync(device_send_, host_send_, kSlot, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
    ncclResult_t rc = ncclAllGather(device_send_, device_recv_, kSlot, ncclUint8, comm_, stream_);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      throw Error(std::string("ncclAllGather failed: ") + ncclGetErrorString(rc));
    }
    cuda_check(cudaMemcpyAsync(host_recv_, device_recv_, kSlot * world_, cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync");
    cuda_check(cudaEventRecord(done_, stream_), "cudaEventRecord");
  }

  Progress poll(std::string* error) override {
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      *error = std::string("NCCL async error: ") + ncclGetErrorString(state);
      return Progress::kFailed;
    }
    cudaError_t rc = cudaEventQuery(done_);
    if (rc == cudaSuccess) return Progress::kDone;
    if (rc == cudaErrorNotReady) return Progress::kPending;
    *error = "cudaEventQuery: " + cuda_text(rc);
    return Progress::kFailed;
  }

  std::vector<std::string> result() override {
    std::vector<std::string> messages;
    const auto* recv = static_cast<const unsigned char*>(host_recv_);
    for (int r = 0; r < world_; ++r) {
      const unsigned char* slot = recv + kSlot * r;
      messages.emplace_back(reinterpret_cast<const char*>(slot + 1),
                            std::min<std::size_t>(slot[0], Barrier::kMaxMessageBytes));
    }
    return messages;
  }

  void abort() noexcept override {
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);  // never ncclCommDestroy: it may wait on ranks that are gone
      comm_ = nullptr;
    }
  }

 private:
  // Throws with whatever it made still held; the constructor releases it
  // (abort() included: a communicator still setting up is aborted).
  void set_up(int device, int rank, const ncclUniqueId& id, std::chrono::milliseconds init_timeout) {
    cuda_check(cudaSetDevice(device), "cudaSetDevice");
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
    ncclResult_t state = ncclInProgress;
    while (true) {
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclInProgress) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw TimeoutError("NcclBarrier: communicator set-up timed out after " +
                           std::to_string(init_timeout.count()) + " ms (not every rank joined)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (state != ncclSuccess) {
      throw Error(std::string("NcclBarrier: communicator set-up failed: ") + ncclGetErrorString(state));
    }
  }

  void release() noexcept {
    abort();
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
    cudaFree(device_send_);
    cudaFree(device_recv_);
    cudaFreeHost(host_send_);
    cudaFreeHost(host_recv_);
    done_ = nullptr;
    stream_ = nullptr;
    device_send_ = device_recv_ = host_send_ = host_recv_ = nullptr;
  }

  int world_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
  void* device_send_ = nullptr;
  void* device_recv_ = nullptr;
  void* host_send_ = nullptr;
  void* host_recv_ = nullptr;
};

}  // namespace
#endif

class NcclBarrier::Impl {
 public:
  Impl(const RankInfo& rank_info, Options options, c10::intrusive_ptr<c10d::Store> store)
      : options_(std::move(options)), guard_("NcclBarrier '" + options_.store.prefix + "'") {
#if CKPTW_HAVE_NCCL
    options_.store = detail::resolve_store_options(rank_info, options_.store);
    if (!store) store = detail::connect_tcp_store(rank_info, options_.store);
    const std::string key = options_.store.prefix + "/nccl_unique_id";
    ncclUniqueId id;
    try {
      if (rank_info.global_rank == 0) {
        ncclResult_t rc = ncclGetUniqueId(&id);
        if (rc != ncclSuccess) throw Error(std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(rc));
        const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
        store->set(key, std::vector<uint8_t>(bytes, bytes + sizeof id));
      } else {
        store->wait({key}, std::chrono::seconds(options_.timeout_secs));
        std::vector<uint8_t> bytes = store->get(key);
        if (bytes.size() != sizeof id) throw Error("NcclBarrier: malformed unique id in the store");
        std::memcpy(&id, bytes.data(), sizeof id);
      }
    } catch (const c10::Error& e) {
      throw Error(std::string("NcclBarrier: unique-id exchange failed: ") + e.what_without_backtrace());
    }
    const int device = options_.device >= 0 ? options_.device : rank_info.local_rank;
    transport_ = std::make_unique<NcclTransport>(device, rank_info.global_rank, rank_info.global_world_size, id,
                                                 std::chrono::seconds(options_.timeout_secs));
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
