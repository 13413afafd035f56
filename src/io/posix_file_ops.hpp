// The synchronous system calls both backends share (open, fsync, rename, ...).
#pragma once

#include "io/io_backend.hpp"

namespace ckptw::detail {

class PosixFileOps : public IoBackend {
 public:
  int create_exclusive(const std::string& path, bool direct, int* fd, bool* direct_used) override;
  int preallocate(int fd, std::uint64_t size) override;
  int truncate(int fd, std::uint64_t size) override;
  int write_at(int fd, const void* data, std::size_t size, std::uint64_t offset) override;
  int fsync(int fd) override;
  int close(int fd) override;
  int rename(const std::string& from, const std::string& to) override;
  int unlink(const std::string& path) override;
  int fsync_directory(const std::string& path) override;
  int make_directory(const std::string& path) override;
  int remove_directory(const std::string& path) override;
  int list_directory(const std::string& path, std::vector<std::string>* names) override;
  int open_for_read(const std::string& path, bool direct, int* fd, bool* direct_used) override;
  long read_at(int fd, void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) override;

  /// write_at() for a descriptor whose O_DIRECT-ness the caller knows.
  int write_all(int fd, const void* data, std::size_t size, std::uint64_t offset, bool direct);
};

}  // namespace ckptw::detail
