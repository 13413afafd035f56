// IoBackend: the one seam through which ckptw talks to the kernel.
//
// Every method returns 0 (or a count) on success and -errno on failure and
// never throws: inside the engine errors stay -errno, exactly as io_uring
// reports them, and the writer turns them into one ckptw::IoError at the stage
// boundary, after in-flight writes have drained, where it knows the path.
//
// Bulk file data goes through a WriteQueue: asynchronous writes of whole ring
// buffers. Metadata operations (create, fsync, rename, ...) are synchronous.
//
// Thread safety: a backend and its queues are used from one thread (the
// writer's); the POSIX queue's worker threads are internal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ckptw/config.hpp"

namespace ckptw::detail {

class BufferRing;

/// A range of host memory.
struct MemoryRegion {
  const void* data = nullptr;
  std::size_t bytes = 0;
  bool operator==(const MemoryRegion& other) const { return data == other.data && bytes == other.bytes; }
};

/// Test seam: sees each raw write result (bytes written, or -errno) and the
/// requested size before the queue acts on it, and may replace it, e.g. with
/// a short count or -EAGAIN. The queue must then behave as if the kernel had
/// returned that value. Called from the queue's worker threads, possibly
/// several at once (POSIX queue), so it must be thread-safe.
using WriteResultFilter = std::function<long(long result, std::size_t requested)>;

/// Asynchronous writes of ring buffers to one open file.
class WriteQueue {
 public:
  /// What wait_any() returns for a finished submit_external() write.
  static constexpr std::size_t kExternal = static_cast<std::size_t>(-1);

  virtual ~WriteQueue() = default;
  /// Queues a write of `size` bytes from ring buffer `buffer` (its first
  /// `size` bytes) at file `offset`. Never blocks for completion.
  virtual void submit(std::size_t buffer, std::size_t size, std::uint64_t offset) = 0;
  /// Queues a write of `size` bytes straight from the caller's memory at
  /// `data` (no copy into the ring). On an O_DIRECT file `data` and `offset`
  /// must be 4096-aligned and `size` a multiple of 4096. The memory must stay
  /// valid and unchanged until wait_any() has returned kExternal for this
  /// write.
  virtual void submit_external(const void* data, std::size_t size, std::uint64_t offset) = 0;
  /// Blocks until a queued write finished (successfully or not) and returns
  /// its ring buffer, free for reuse, or kExternal. Requires a write in flight.
  virtual std::size_t wait_any() = 0;
  /// Writes still in flight.
  virtual std::size_t in_flight() const = 0;
  /// The first error any write ended with (-errno), or 0. Short writes and
  /// -EAGAIN/-EINTR are retried inside the queue and are not errors.
  virtual int error() const = 0;
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;

  virtual IoBackendKind kind() const = 0;
  const char* name() const { return to_string(kind()); }

  /// Creates `path` (which must not exist) for writing. With `direct`, tries
  /// O_DIRECT first and falls back to buffered I/O where the filesystem
  /// refuses it; *direct_used says which one the descriptor got.
  virtual int create_exclusive(const std::string& path, bool direct, int* fd, bool* direct_used) = 0;
  /// Reserves `size` bytes for the file (fallocate); -EOPNOTSUPP where unsupported.
  virtual int preallocate(int fd, std::uint64_t size) = 0;
  virtual int truncate(int fd, std::uint64_t size) = 0;
  /// Writes all `size` bytes at `offset` synchronously, retrying short writes and EINTR.
  virtual int write_at(int fd, const void* data, std::size_t size, std::uint64_t offset) = 0;
  virtual int fsync(int fd) = 0;
  virtual int close(int fd) = 0;
  virtual int rename(const std::string& from, const std::string& to) = 0;
  virtual int unlink(const std::string& path) = 0;
  /// fsync of a directory, making entries created or renamed in it durable.
  virtual int fsync_directory(const std::string& path) = 0;
  /// mkdir of one directory level; -EEXIST when it already exists.
  virtual int make_directory(const std::string& path) = 0;
  virtual int remove_directory(const std::string& path) = 0;
  /// Names of the entries of directory `path`, without "." and "..".
  virtual int list_directory(const std::string& path, std::vector<std::string>* names) = 0;

  /// Opens `path` for reading, with O_DIRECT first when `direct` (falling
  /// back to buffered where the filesystem refuses it).
  virtual int open_for_read(const std::string& path, bool direct, int* fd, bool* direct_used) = 0;
  /// Reads [offset, offset + size) into `data`, with several chunks in flight
  /// where the backend can, continuing short reads. May stop early only at
  /// the end of the file, and only after at least `min_size` bytes (else
  /// -EIO). Returns the bytes read, or -errno. On an O_DIRECT descriptor,
  /// `data`, `offset` and `size` must be multiples of 4096.
  virtual long read_at(int fd, void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) = 0;

  /// A queue writing `ring`'s buffers to `fd`, at most `depth` at a time.
  /// The ring must outlive the queue and stay the same across calls (io_uring
  /// registers its buffers once).
  virtual std::unique_ptr<WriteQueue> open_queue(int fd, BufferRing& ring, unsigned depth) = 0;

  /// Host memory that later queues' submit_external() writes come from (the
  /// writer's staging memory): io_uring registers it next to the ring's
  /// buffers at the next open_queue(), and again only when the set changes,
  /// so those writes skip the per-I/O page pinning. Best effort (refused
  /// registrations fall back to plain writes). Contract: when a queue is
  /// opened, the set must describe memory mapped now (a registered range is
  /// served from the pages it had when registered, so a stale range reused
  /// by another mapping would write the wrong bytes); unmapping memory while
  /// it is registered is safe, the kernel keeps the old pages until the next
  /// registration.
  virtual void set_staging_memory(std::vector<MemoryRegion> regions) { (void)regions; }
  /// Writes issued from registered memory so far (io_uring fixed buffers),
  /// for tests and logs.
  virtual std::uint64_t registered_writes() const { return 0; }

  void set_write_result_filter(WriteResultFilter filter) { filter_ = std::move(filter); }

 protected:
  long filtered(long result, std::size_t requested) const { return filter_ ? filter_(result, requested) : result; }

 private:
  WriteResultFilter filter_;
};

/// Where a write resumes after the kernel wrote only `done` bytes of it. On an
/// O_DIRECT descriptor the rest must start on a block boundary, so the resume
/// point is rounded down and up to 4095 written bytes are written again
/// (harmless: same bytes, same offsets); buffered writes resume exactly.
inline std::size_t resume_point(std::size_t done, bool direct) {
  return direct ? done & ~std::size_t{4095} : done;
}

/// Attempts without progress after which a write counts as failed (-EIO):
/// a regular file that keeps accepting nothing is broken.
inline constexpr int kMaxStalledWrites = 16;

/// Whether `fd` was opened with O_DIRECT.
bool is_direct(int fd);

/// pwrite from worker threads; the fallback that works everywhere.
std::unique_ptr<IoBackend> make_posix_backend();

/// io_uring; nullptr and *setup_error (-errno) when io_uring cannot be set up
/// here (old kernel, seccomp, kernel.io_uring_disabled, memlock limits).
std::unique_ptr<IoBackend> make_uring_backend(unsigned queue_depth, int* setup_error);

/// The backend for `kind`. kAuto falls back from io_uring to POSIX with one
/// line on stderr; kUring throws ckptw::IoError when io_uring is unavailable.
std::unique_ptr<IoBackend> make_backend(IoBackendKind kind, unsigned queue_depth);

}  // namespace ckptw::detail
