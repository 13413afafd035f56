// io_uring backend: one ring per writer, the write ring's buffers and the
// writer's staging memory registered once (IORING_REGISTER_BUFFERS) and
// written with WRITE_FIXED, at most `depth` writes in the kernel at once and
// the rest held back until one completes. Follows the kernel's
// contract: results are -errno in cqe->res
// (errno is never set), a short write is requeued for its remainder, -EAGAIN
// and -EINTR are resubmitted, and no SQE asks for more than INT_MAX bytes
// (ring buffers are at most 1 GiB).
#include <algorithm>
#include <cerrno>
#include <climits>
#include <deque>
#include <vector>

#include <liburing.h>
#include <sys/uio.h>

#include "io/posix_file_ops.hpp"
#include "io/buffer_ring.hpp"

namespace ckptw::detail {
namespace {

class UringBackend;

class UringWriteQueue final : public WriteQueue {
 public:
  UringWriteQueue(UringBackend& backend, int fd, BufferRing& ring, unsigned depth);
  ~UringWriteQueue() override;

  void submit(std::size_t buffer, std::size_t size, std::uint64_t offset) override;
  void submit_external(const void* data, std::size_t size, std::uint64_t offset) override;
  std::size_t wait_any() override;
  std::size_t in_flight() const override { return in_flight_; }
  int error() const override { return error_; }

 private:
  struct Request {
    std::size_t buffer = 0;  // ring buffer, or kExternal
    const unsigned char* external = nullptr;
    std::size_t done = 0;   // bytes of the buffer already written
    std::size_t size = 0;   // bytes to write from the buffer
    std::uint64_t offset = 0;
    int stalled = 0;        // consecutive completions without progress
  };
  void queue_sqe(std::size_t slot);
  // Hands `slot` to the kernel, or holds it back while `depth_` writes are there.
  void start(std::size_t slot);
  // The oldest held-back slot, no longer held.
  std::size_t take_held();
  // Ends `slot`'s write for the caller (no longer in flight); its buffer, or kExternal.
  std::size_t give_back(std::size_t slot);

  UringBackend& backend_;
  const int fd_;
  const bool direct_;
  BufferRing& ring_;
  std::vector<Request> requests_;  // user_data = slot; ring buffer i uses slot i, external writes the slots after
  std::vector<bool> busy_;         // slot has a write submitted and not yet returned by wait_any
  // Why a limit below the ring's buffers: a disk may complete every queued
  // write at once (this machine's virtio disk does). With every buffer in the
  // kernel the device then idles while the writer refills one; with a buffer
  // held back, filled, the next write starts the moment the batch completes,
  // as with the POSIX queue's `depth` threads (measured: docs/performance.md).
  const std::size_t depth_;
  std::size_t in_kernel_ = 0;
  std::deque<std::size_t> held_;   // slots submitted but not yet handed to the kernel, oldest first
  std::size_t in_flight_ = 0;
  int error_ = 0;
};

class UringBackend final : public PosixFileOps {
 public:
  explicit UringBackend(io_uring ring) : uring_(ring) {}
  ~UringBackend() override { io_uring_queue_exit(&uring_); }

  IoBackendKind kind() const override { return IoBackendKind::kUring; }

  std::unique_ptr<WriteQueue> open_queue(int fd, BufferRing& ring, unsigned depth) override {
    register_once(ring);
    return std::make_unique<UringWriteQueue>(*this, fd, ring, depth);
  }

  long read_at(int fd, void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) override;

  void set_staging_memory(std::vector<MemoryRegion> regions) override { staging_ = std::move(regions); }
  std::uint64_t registered_writes() const override { return registered_writes_; }

  io_uring* uring() { return &uring_; }
  bool fixed_buffers() const { return registered_ != 0; }
  long filter(long result, std::size_t requested) const { return filtered(result, requested); }
  void count_registered_write() { ++registered_writes_; }

  // The registered buffer holding [data, data + size) whole, or -1.
  int staging_buffer_index(const unsigned char* data, std::size_t size) const {
    for (const Registered& r : staging_registered_) {
      if (data >= r.begin && data + size <= r.end) return r.index;
    }
    return -1;
  }

 private:
  // The kernel takes at most 1 GiB per registered buffer.
  static constexpr std::size_t kMaxRegisteredBytes = std::size_t{1} << 30;

  struct Registered {
    const unsigned char* begin;
    const unsigned char* end;
    int index;  // in the registered buffer table
  };

  // Registration pins the pages once; every later WRITE_FIXED skips the
  // per-I/O page lookup. The ring's buffers take indexes 0..count-1, the
  // staging memory the ones after, cut into 1 GiB pieces. Redone only when
  // the ring or the staging set changes. Where it is refused (RLIMIT_MEMLOCK:
  // -ENOMEM, unsupported memory: -EOPNOTSUPP, EFAULT) the ring alone is
  // tried, then nothing: plain WRITE works with the same memory.
  void register_once(BufferRing& ring) {
    if (attempted_ == ring.id() && attempted_staging_ == staging_) return;
    if (registered_ != 0) {
      io_uring_unregister_buffers(&uring_);
      registered_ = 0;
      staging_registered_.clear();
    }
    attempted_ = ring.id();
    attempted_staging_ = staging_;
    std::vector<iovec> iovecs(ring.count());
    for (std::size_t i = 0; i < ring.count(); ++i) iovecs[i] = iovec{ring.data(i), ring.buffer_bytes()};
    std::vector<Registered> staging;
    for (const MemoryRegion& region : staging_) {
      const auto* data = static_cast<const unsigned char*>(region.data);
      for (std::size_t offset = 0; offset < region.bytes; offset += kMaxRegisteredBytes) {
        const std::size_t n = std::min(kMaxRegisteredBytes, region.bytes - offset);
        staging.push_back(Registered{data + offset, data + offset + n, static_cast<int>(iovecs.size())});
        iovecs.push_back(iovec{const_cast<unsigned char*>(data + offset), n});
      }
    }
    if (io_uring_register_buffers(&uring_, iovecs.data(), static_cast<unsigned>(iovecs.size())) == 0) {
      registered_ = ring.id();
      staging_registered_ = std::move(staging);
    } else if (!staging.empty() &&
               io_uring_register_buffers(&uring_, iovecs.data(), static_cast<unsigned>(ring.count())) == 0) {
      registered_ = ring.id();
    }
  }

  io_uring uring_;
  std::uint64_t attempted_ = 0;   // BufferRing::id() registration was last tried for
  std::uint64_t registered_ = 0;  // BufferRing::id() whose buffers are registered, 0 for none
  std::vector<MemoryRegion> staging_;            // declared by set_staging_memory
  std::vector<MemoryRegion> attempted_staging_;  // the set registration was last tried for
  std::vector<Registered> staging_registered_;   // staging pieces in the table now
  std::uint64_t registered_writes_ = 0;
};

UringWriteQueue::UringWriteQueue(UringBackend& backend, int fd, BufferRing& ring, unsigned depth)
    : backend_(backend),
      fd_(fd),
      direct_(is_direct(fd)),
      ring_(ring),
      requests_(ring.count()),
      busy_(ring.count(), false),
      depth_(std::max(1u, depth)) {}

UringWriteQueue::~UringWriteQueue() {
  // Buffers must not be reused while the kernel may still read them.
  while (in_flight_ > 0) (void)wait_any();
}

void UringWriteQueue::queue_sqe(std::size_t slot) {
  io_uring* uring = backend_.uring();
  io_uring_sqe* sqe = io_uring_get_sqe(uring);
  if (sqe == nullptr) {  // SQ full: hand what is queued to the kernel and retry
    io_uring_submit(uring);
    sqe = io_uring_get_sqe(uring);
  }
  const Request& r = requests_[slot];
  const unsigned char* data = (r.external ? r.external : ring_.data(r.buffer)) + r.done;
  const auto size = static_cast<unsigned>(r.size - r.done);
  const int staging_index = r.external == nullptr ? -1 : backend_.staging_buffer_index(data, size);
  if (r.external == nullptr && backend_.fixed_buffers()) {
    io_uring_prep_write_fixed(sqe, fd_, data, size, r.offset + r.done, static_cast<int>(r.buffer));
    backend_.count_registered_write();
  } else if (staging_index >= 0) {
    io_uring_prep_write_fixed(sqe, fd_, data, size, r.offset + r.done, staging_index);
    backend_.count_registered_write();
  } else {
    io_uring_prep_write(sqe, fd_, data, size, r.offset + r.done);
  }
  io_uring_sqe_set_data64(sqe, slot);
  io_uring_submit(uring);
}

void UringWriteQueue::submit_external(const void* data, std::size_t size, std::uint64_t offset) {
  std::size_t slot = ring_.count();
  while (slot < busy_.size() && busy_[slot]) ++slot;
  if (slot == busy_.size()) {
    requests_.emplace_back();
    busy_.push_back(false);
  }
  requests_[slot] = Request{kExternal, static_cast<const unsigned char*>(data), 0, size, offset};
  busy_[slot] = true;
  ++in_flight_;
  start(slot);
}

void UringWriteQueue::submit(std::size_t buffer, std::size_t size, std::uint64_t offset) {
  requests_[buffer] = Request{buffer, nullptr, 0, size, offset};
  busy_[buffer] = true;
  ++in_flight_;
  start(buffer);
}

void UringWriteQueue::start(std::size_t slot) {
  if (in_kernel_ < depth_) {
    ++in_kernel_;
    queue_sqe(slot);
  } else {
    held_.push_back(slot);
  }
}

std::size_t UringWriteQueue::take_held() {
  const std::size_t slot = held_.front();
  held_.pop_front();
  return slot;
}

std::size_t UringWriteQueue::give_back(std::size_t slot) {
  busy_[slot] = false;
  --in_flight_;
  return requests_[slot].buffer;
}

std::size_t UringWriteQueue::wait_any() {
  io_uring* uring = backend_.uring();
  // After a failure held-back writes are given back unwritten.
  if (in_kernel_ == 0 && !held_.empty()) return give_back(take_held());
  while (true) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(uring, &cqe);
    if (rc == -EINTR || rc == -EAGAIN) continue;
    if (rc < 0) {
      // The ring itself failed (never seen in practice): report it and give
      // back some in-flight buffer, held-back ones first, so that the caller
      // can drain and stop.
      if (error_ == 0) error_ = rc;
      if (!held_.empty()) return give_back(take_held());
      std::size_t slot = 0;
      while (slot < busy_.size() && !busy_[slot]) ++slot;
      if (slot == busy_.size()) return 0;
      --in_kernel_;
      return give_back(slot);
    }
    const std::size_t slot = io_uring_cqe_get_data64(cqe);
    long res = cqe->res;
    io_uring_cqe_seen(uring, cqe);
    Request& r = requests_[slot];
    res = backend_.filter(res, r.size - r.done);
    if (res == -EAGAIN || res == -EINTR) {
      queue_sqe(slot);
      continue;
    }
    if (res >= 0 && r.done + static_cast<std::size_t>(res) < r.size) {
      // Short write: requeue the rest, from a block boundary under O_DIRECT.
      const std::size_t next = resume_point(r.done + static_cast<std::size_t>(res), direct_);
      if (next > r.done) {
        r.done = next;
        r.stalled = 0;
        queue_sqe(slot);
        continue;
      }
      if (++r.stalled < kMaxStalledWrites) {
        queue_sqe(slot);
        continue;
      }
      res = -EIO;  // no progress on a regular file
    }
    if (res < 0 && error_ == 0) error_ = static_cast<int>(res);
    --in_kernel_;
    if (!held_.empty() && error_ == 0) start(take_held());
    return give_back(slot);
  }
}

// Reads in chunks with several in flight (the disk sees a queue, not one
// request at a time). A chunk that comes back short is continued; a zero
// result is the end of the file, after which later chunks read nothing.
long UringBackend::read_at(int fd, void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) {
  constexpr std::size_t kChunk = std::size_t{4} << 20;
  const unsigned depth = std::max(1u, uring_.sq.ring_entries / 2);
  struct Piece {
    std::size_t begin, end, done;
    bool eof;
  };
  std::vector<Piece> pieces;
  for (std::size_t b = 0; b < size; b += kChunk) pieces.push_back(Piece{b, std::min(size, b + kChunk), 0, false});
  auto* out = static_cast<unsigned char*>(data);
  // Under O_DIRECT a short read only happens at the end of the file, whose
  // unaligned offset could not be read from again.
  const bool direct = is_direct(fd);
  auto queue = [&](std::size_t i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&uring_);
    if (sqe == nullptr) {
      io_uring_submit(&uring_);
      sqe = io_uring_get_sqe(&uring_);
    }
    const Piece& p = pieces[i];
    const std::size_t at = p.begin + p.done;
    io_uring_prep_read(sqe, fd, out + at, static_cast<unsigned>(p.end - at), offset + at);
    io_uring_sqe_set_data64(sqe, i);
    io_uring_submit(&uring_);
  };
  std::size_t next = 0;
  unsigned in_flight = 0;
  int error = 0;
  while (next < pieces.size() && in_flight < depth) {
    queue(next++);
    ++in_flight;
  }
  while (in_flight > 0) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&uring_, &cqe);
    if (rc == -EINTR || rc == -EAGAIN) continue;
    if (rc < 0) return rc;  // the ring itself failed: nothing sensible to drain
    const std::size_t i = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    io_uring_cqe_seen(&uring_, cqe);
    Piece& p = pieces[i];
    if (res == -EAGAIN || res == -EINTR) {
      queue(i);
      continue;
    }
    --in_flight;
    if (res < 0) {
      if (error == 0) error = res;
    } else if (res == 0) {
      p.eof = true;
    } else {
      p.done += static_cast<std::size_t>(res);
      if (p.begin + p.done < p.end && !direct) {
        queue(i);  // short read: the rest (a zero next time means end of file)
        ++in_flight;
        continue;
      }
    }
    if (error == 0 && next < pieces.size()) {
      queue(next++);
      ++in_flight;
    }
  }
  if (error < 0) return error;
  std::size_t got = 0;
  for (const Piece& p : pieces) {
    got = p.begin + p.done;
    if (p.begin + p.done < p.end) break;
  }
  return got < min_size ? -EIO : static_cast<long>(got);
}

}  // namespace

std::unique_ptr<IoBackend> make_uring_backend(unsigned queue_depth, int* setup_error) {
  io_uring ring;
  io_uring_params params{};
  const unsigned entries = std::max(4u, queue_depth * 2);
  int rc = io_uring_queue_init_params(entries, &ring, &params);
  if (rc < 0) {
    *setup_error = rc;
    return nullptr;
  }
  *setup_error = 0;
  return std::make_unique<UringBackend>(ring);
}

}  // namespace ckptw::detail
