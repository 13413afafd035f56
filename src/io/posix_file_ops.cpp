#include "io/posix_file_ops.hpp"

#include <cerrno>
#include <climits>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ckptw::detail {

int PosixFileOps::create_exclusive(const std::string& path, bool direct, int* fd, bool* direct_used) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  int result;
  *direct_used = false;
  if (direct) {
    do {
      result = ::open(path.c_str(), flags | O_DIRECT, 0666);
    } while (result < 0 && errno == EINTR);
    if (result >= 0) {
      *fd = result;
      *direct_used = true;
      return 0;
    }
    // Filesystems without O_DIRECT answer EINVAL; anything else is a real error.
    if (errno != EINVAL) return -errno;
  }
  do {
    result = ::open(path.c_str(), flags, 0666);
  } while (result < 0 && errno == EINTR);
  if (result < 0) return -errno;
  *fd = result;
  return 0;
}

int PosixFileOps::preallocate(int fd, std::uint64_t size) {
  if (size == 0) return 0;
  int rc;
  do {
    rc = ::fallocate(fd, 0, 0, static_cast<off_t>(size));
  } while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : 0;
}

int PosixFileOps::truncate(int fd, std::uint64_t size) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : 0;
}

int PosixFileOps::write_at(int fd, const void* data, std::size_t size, std::uint64_t offset) {
  return write_all(fd, data, size, offset, is_direct(fd));
}

int PosixFileOps::write_all(int fd, const void* data, std::size_t size, std::uint64_t offset, bool direct) {
  const char* const base = static_cast<const char*>(data);
  std::size_t done = 0;
  int stalled = 0;
  while (done < size) {
    // A single pwrite moves at most ~2 GiB on Linux; ask for no more than that.
    const std::size_t left = size - done;
    const std::size_t chunk = left < static_cast<std::size_t>(INT_MAX) ? left : (INT_MAX & ~std::size_t{4095});
    long n = ::pwrite(fd, base + done, chunk, static_cast<off_t>(offset + done));
    n = filtered(n < 0 ? -errno : n, chunk);
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n < 0) return static_cast<int>(n);
    const std::size_t next = resume_point(done + static_cast<std::size_t>(n), direct && done + static_cast<std::size_t>(n) < size);
    if (next <= done) {
      if (++stalled >= kMaxStalledWrites) return -EIO;  // no progress on a regular file
      continue;
    }
    stalled = 0;
    done = next;
  }
  return 0;
}

int PosixFileOps::fsync(int fd) { return ::fsync(fd) < 0 ? -errno : 0; }

int PosixFileOps::close(int fd) {
  // Not retried on EINTR: on Linux the descriptor is released either way.
  return ::close(fd) < 0 ? -errno : 0;
}

int PosixFileOps::rename(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str()) < 0 ? -errno : 0;
}

int PosixFileOps::unlink(const std::string& path) { return ::unlink(path.c_str()) < 0 ? -errno : 0; }

int PosixFileOps::fsync_directory(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int result = ::fsync(fd) < 0 ? -errno : 0;
  ::close(fd);
  return result;
}

int PosixFileOps::make_directory(const std::string& path) {
  return ::mkdir(path.c_str(), 0777) < 0 ? -errno : 0;
}

int PosixFileOps::remove_directory(const std::string& path) {
  return ::rmdir(path.c_str()) < 0 ? -errno : 0;
}

}  // namespace ckptw::detail

namespace ckptw::detail {

bool is_direct(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & O_DIRECT) != 0;
}

int PosixFileOps::open_for_read(const std::string& path, bool direct, int* fd, bool* direct_used) {
  *direct_used = false;
  int result = -1;
  if (direct) {
    do {
      result = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    } while (result < 0 && errno == EINTR);
    if (result >= 0) {
      *fd = result;
      *direct_used = true;
      return 0;
    }
    if (errno != EINVAL) return -errno;
  }
  do {
    result = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (result < 0 && errno == EINTR);
  if (result < 0) return -errno;
  *fd = result;
  return 0;
}

long PosixFileOps::read_at(int fd, void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) {
  auto* out = static_cast<unsigned char*>(data);
  const bool direct = is_direct(fd);  // a short O_DIRECT read is the end of the file
  std::size_t got = 0;
  while (got < size) {
    const std::size_t left = size - got;
    const std::size_t chunk = left < static_cast<std::size_t>(INT_MAX) ? left : (INT_MAX & ~std::size_t{4095});
    const long n = ::pread(fd, out + got, chunk, static_cast<off_t>(offset + got));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return -errno;
    if (n == 0) break;  // end of file
    got += static_cast<std::size_t>(n);
    if (direct && static_cast<std::size_t>(n) < chunk) break;
  }
  return got < min_size ? -EIO : static_cast<long>(got);
}

int PosixFileOps::list_directory(const std::string& path, std::vector<std::string>* names) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return -errno;
  names->clear();
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names->push_back(name);
  }
  const int error = errno;
  ::closedir(dir);
  return error != 0 ? -error : 0;
}

}  // namespace ckptw::detail
