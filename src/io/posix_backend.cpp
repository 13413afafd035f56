// POSIX backend: each queued buffer is written by one of `depth` worker
// threads with pwrite (through PosixFileOps::write_at, which retries short
// writes and EINTR), so several writes are in flight as with io_uring.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "io/posix_file_ops.hpp"
#include "io/buffer_ring.hpp"

namespace ckptw::detail {
namespace {

class PosixWriteQueue final : public WriteQueue {
 public:
  PosixWriteQueue(PosixFileOps& ops, int fd, BufferRing& ring, unsigned depth)
      : ops_(ops), fd_(fd), direct_(is_direct(fd)), ring_(ring) {
    for (unsigned i = 0; i < depth; ++i) workers_.emplace_back([this] { work(); });
  }

  ~PosixWriteQueue() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_workers_.notify_all();
    for (auto& t : workers_) t.join();  // workers finish queued writes first
  }

  void submit(std::size_t buffer, std::size_t size, std::uint64_t offset) override {
    queue(Task{buffer, nullptr, size, offset});
  }

  void submit_external(const void* data, std::size_t size, std::uint64_t offset) override {
    queue(Task{kExternal, data, size, offset});
  }

  std::size_t wait_any() override {
    std::unique_lock<std::mutex> lock(mutex_);
    done_changed_.wait(lock, [this] { return !done_.empty(); });
    std::size_t buffer = done_.front();
    done_.pop_front();
    --in_flight_;
    return buffer;
  }

  std::size_t in_flight() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_flight_;
  }

  int error() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }

 private:
  struct Task {
    std::size_t buffer;    // ring buffer, or kExternal
    const void* external;  // the caller's memory for kExternal
    std::size_t size;
    std::uint64_t offset;
  };

  void queue(const Task& task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back(task);
      ++in_flight_;
    }
    wake_workers_.notify_one();
  }

  void work() {
    while (true) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_workers_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        if (pending_.empty()) return;
        task = pending_.front();
        pending_.pop_front();
      }
      const void* data = task.external ? task.external : ring_.data(task.buffer);
      int rc = ops_.write_all(fd_, data, task.size, task.offset, direct_);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (rc < 0 && error_ == 0) error_ = rc;
        done_.push_back(task.buffer);
      }
      done_changed_.notify_one();
    }
  }

  PosixFileOps& ops_;
  const int fd_;
  const bool direct_;
  BufferRing& ring_;
  mutable std::mutex mutex_;
  std::condition_variable wake_workers_;
  std::condition_variable done_changed_;
  std::deque<Task> pending_;        // submitted, not yet picked up
  std::deque<std::size_t> done_;    // finished (buffer or kExternal), not yet returned by wait_any
  std::size_t in_flight_ = 0;       // submitted and not yet returned by wait_any
  int error_ = 0;                   // first failure, -errno
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

class PosixBackend final : public PosixFileOps {
 public:
  IoBackendKind kind() const override { return IoBackendKind::kPosix; }

  std::unique_ptr<WriteQueue> open_queue(int fd, BufferRing& ring, unsigned depth) override {
    return std::make_unique<PosixWriteQueue>(*this, fd, ring, depth);
  }
};

}  // namespace

std::unique_ptr<IoBackend> make_posix_backend() { return std::make_unique<PosixBackend>(); }

}  // namespace ckptw::detail
