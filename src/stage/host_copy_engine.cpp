#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "ckptw/error.hpp"
#include "stage/copy_engine.hpp"

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
  bool pin(void*, std::size_t, int) override { return true; }  // host copies need no pinning
  void unpin(void*, int) noexcept override {}
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

}  // namespace ckptw::detail
