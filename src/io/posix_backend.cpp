#include <cerrno>
#include <climits>
#include <cstdio>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_backend.hpp"

namespace ckptw::detail {
namespace {

class PosixBackend final : public IoBackend {
 public:
  const char* name() const override { return "posix"; }

  int create_exclusive(const std::string& path, int* fd) override {
    int result;
    do {
      result = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    } while (result < 0 && errno == EINTR);
    if (result < 0) return -errno;
    *fd = result;
    return 0;
  }

  int write_at(int fd, const void* data, std::size_t size, std::uint64_t offset) override {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      // pwrite moves at most ~2 GiB per call on Linux; ask for no more than that.
      std::size_t chunk = size < static_cast<std::size_t>(INT_MAX) ? size : INT_MAX & ~4095;
      ssize_t n = ::pwrite(fd, p, chunk, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      if (n == 0) return -EIO;  // no progress on a regular file: treat as an I/O error
      p += n;
      size -= static_cast<std::size_t>(n);
      offset += static_cast<std::uint64_t>(n);
    }
    return 0;
  }

  int fsync(int fd) override { return ::fsync(fd) < 0 ? -errno : 0; }

  int close(int fd) override {
    // close() is not retried on EINTR: on Linux the descriptor is gone either way.
    return ::close(fd) < 0 ? -errno : 0;
  }

  int rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) < 0 ? -errno : 0;
  }

  int unlink(const std::string& path) override {
    return ::unlink(path.c_str()) < 0 ? -errno : 0;
  }

  int fsync_directory(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int result = ::fsync(fd) < 0 ? -errno : 0;
    ::close(fd);
    return result;
  }

  int make_directory(const std::string& path) override {
    return ::mkdir(path.c_str(), 0777) < 0 ? -errno : 0;
  }

  int remove_directory(const std::string& path) override {
    return ::rmdir(path.c_str()) < 0 ? -errno : 0;
  }
};

}  // namespace

std::unique_ptr<IoBackend> make_posix_backend() { return std::make_unique<PosixBackend>(); }

}  // namespace ckptw::detail
