#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "ckptw/error.hpp"
#include "stage/copy_engine.hpp"

#if CKPTW_HAVE_CUDA
#include "checksum/crc32.hpp"
#include "copy_engine.cuh"
#include "crc32.cuh"
#include "cuda_info.cuh"
#endif

namespace ckptw::detail {
namespace {

class HostCopyEngine final : public CopyEngine {
 public:
  explicit HostCopyEngine(std::chrono::microseconds delay) : delay_(delay), worker_([this] { run(); }) {}
  ~HostCopyEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }

  const char* name() const override { return "host"; }
  bool pin(void*, std::size_t) override { return true; }  // host copies need no pinning
  void unpin(void*) noexcept override {}
  void wait_for_producer(int, void*) override {}  // host producers finished before the call

  std::uint64_t copy_to_host(void* dst, const void* src, std::size_t bytes, int device) override {
    if (device >= 0) throw UsageError("the host copy engine cannot read device memory (cuda:" + std::to_string(device) + ")");
    std::uint64_t ticket;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ticket = ++issued_;
      pending_.push_back(Copy{dst, src, bytes});
    }
    changed_.notify_all();
    return ticket;
  }

  void wait(std::uint64_t ticket) override {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return completed_ >= ticket; });  // FIFO: copies land in ticket order
  }

  void finish() override {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return completed_ == issued_; });
  }

 private:
  struct Copy {
    void* dst;
    const void* src;
    std::size_t bytes;
  };

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      changed_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;
      Copy copy = pending_.front();
      pending_.pop_front();
      lock.unlock();
      if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
      std::memcpy(copy.dst, copy.src, copy.bytes);
      lock.lock();
      ++completed_;
      changed_.notify_all();
    }
  }

  const std::chrono::microseconds delay_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Copy> pending_;
  std::uint64_t issued_ = 0;     // tickets handed out
  std::uint64_t completed_ = 0;  // copies landed, in ticket order
  bool stopping_ = false;
  std::thread worker_;  // last: starts after the members it uses
};

}  // namespace

std::uint32_t CopyEngine::device_crc32_result(std::uint64_t ticket) {
  throw std::logic_error("ckptw: " + std::string(name()) + " copy engine has no device CRC-32 " + std::to_string(ticket));
}

std::unique_ptr<CopyEngine> make_host_copy_engine(std::chrono::microseconds delay_per_copy) {
  return std::make_unique<HostCopyEngine>(delay_per_copy);
}

#if CKPTW_HAVE_CUDA
namespace {

// Adapts the LibTorch-free CUDA stager (cuda/copy_engine.cuh) to the seam;
// host sources are copied on the caller's thread.
class CudaCopyEngine final : public CopyEngine {
 public:
  const char* name() const override { return "cuda"; }
  bool pin(void* data, std::size_t bytes) override { return cuda::host_register(data, bytes); }
  void unpin(void* data) noexcept override { cuda::host_unregister(data); }
  void wait_for_producer(int device, void* producer_event) override {
    check(stager_.wait_for_event(device, producer_event), device);
  }
  std::uint64_t copy_to_host(void* dst, const void* src, std::size_t bytes, int device) override {
    if (device < 0) {
      // A packed batch's transfer covers the padding up to its last copy:
      // send it before host bytes land next to it.
      check(stager_.break_batches(), -1);
      std::memcpy(dst, src, bytes);
      return stager_.host_ticket();
    }
    std::uint64_t ticket = 0;
    check(stager_.copy_to_host(dst, src, bytes, device, &ticket), device);
    return ticket;
  }
  void wait(std::uint64_t ticket) override {
    int failed_device = -1;
    std::string error = stager_.wait(ticket, &failed_device);
    check(error, failed_device);
  }
  void finish() override {
    int failed_device = -1;
    std::string error = stager_.finish(&failed_device);
    check(error, failed_device);
  }
  std::uint64_t queue_device_crc32(const void* src, std::size_t bytes, int device) override {
    std::uint64_t ticket = 0;
    check(stager_.queue_checksum(src, bytes, device, shift_sub_slice_.data(), &ticket), device);
    return ticket;
  }
  std::uint32_t device_crc32_result(std::uint64_t ticket) override {
    std::vector<std::uint32_t> slices;
    std::size_t bytes = 0;
    int failed_device = -1;
    std::string error = stager_.checksum_result(ticket, &slices, &bytes, &failed_device);
    check(error, failed_device);
    return crc32_math::join_parts(slices.data(), bytes, cuda::kCrcSliceBytes, shift_slice_.data());
  }

 private:
  const Crc32Shift shift_sub_slice_ = crc32_shift(cuda::kCrcSubSliceBytes);
  const Crc32Shift shift_slice_ = crc32_shift(cuda::kCrcSliceBytes);
  static void check(const std::string& error, int device) {
    if (!error.empty()) throw Error("device-to-host staging copy failed on cuda:" + std::to_string(device) + ": " + error);
  }
  cuda::Stager stager_;
};

}  // namespace
#endif

std::unique_ptr<CopyEngine> make_copy_engine() {
#if CKPTW_HAVE_CUDA
  if (cuda::device_count() > 0) return std::make_unique<CudaCopyEngine>();
#endif
  return make_host_copy_engine();
}

}  // namespace ckptw::detail
