// IoBackend: the one seam through which ckptw talks to the kernel.
//
// Every method returns 0 (or a byte count) on success and -errno on failure,
// never throwing and never touching the global errno contract of the caller:
// the writer turns a -errno into one ckptw::IoError at the stage boundary,
// where it knows the path. Tests wrap a backend to inject faults.
//
// Thread safety: a backend object may be used from several threads as long as
// calls on the same fd do not overlap in file range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ckptw::detail {

class IoBackend {
 public:
  virtual ~IoBackend() = default;

  virtual const char* name() const = 0;

  /// Creates `path` (which must not exist) for writing; *fd receives the descriptor.
  virtual int create_exclusive(const std::string& path, int* fd) = 0;
  /// Writes all `size` bytes at `offset`, retrying short writes and EINTR.
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
};

/// pwrite/fsync on plain file descriptors, buffered I/O.
std::unique_ptr<IoBackend> make_posix_backend();

}  // namespace ckptw::detail
