#include "commit/atomic_file.hpp"

#include <atomic>
#include <cerrno>

#include <unistd.h>

#include "ckptw/error.hpp"

namespace ckptw::detail {

std::string parent_directory(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::vector<std::string> make_directories(IoBackend& io, const std::string& dir) {
  std::vector<std::string> created;
  std::string prefix;
  std::size_t pos = 0;
  while (pos <= dir.size()) {
    std::size_t next = dir.find('/', pos);
    if (next == std::string::npos) next = dir.size();
    prefix = dir.substr(0, next);
    pos = next + 1;
    if (prefix.empty() || prefix == "." || prefix == "..") continue;
    int rc = io.make_directory(prefix);
    if (rc == -EEXIST) continue;
    if (rc < 0) {
      remove_created_directories(io, created);
      throw IoError("cannot create checkpoint directory", prefix, "", -rc);
    }
    created.push_back(prefix);
    if (int sync = io.fsync_directory(parent_directory(prefix)); sync < 0) {
      remove_created_directories(io, created);
      throw IoError("cannot fsync the parent of a new directory", parent_directory(prefix), "", -sync);
    }
  }
  return created;
}

void remove_created_directories(IoBackend& io, const std::vector<std::string>& created) noexcept {
  for (auto it = created.rbegin(); it != created.rend(); ++it) (void)io.remove_directory(*it);
}

std::string temp_prefix_for(const std::string& base_name) { return "." + base_name + ".ckptw-tmp."; }

std::string temp_path_for(const std::string& final_path) {
  static std::atomic<unsigned long> sequence{0};
  std::string name =
      temp_prefix_for(base_name(final_path)) + std::to_string(::getpid()) + "." + std::to_string(sequence.fetch_add(1));
  return final_path.find('/') == std::string::npos ? name : parent_directory(final_path) + "/" + name;
}

void remove_stale_temp_files(IoBackend& io, const std::string& dir, const std::vector<std::string>& prefixes) noexcept {
  std::vector<std::string> names;
  if (io.list_directory(dir, &names) < 0) return;
  for (const std::string& name : names) {
    for (const std::string& prefix : prefixes) {
      if (name.compare(0, prefix.size(), prefix) == 0) {
        (void)io.unlink(dir + "/" + name);
        break;
      }
    }
  }
}

TempFile::TempFile(IoBackend& io, std::string final_path, bool direct)
    : io_(io), final_path_(std::move(final_path)), temp_path_(temp_path_for(final_path_)) {
  if (int rc = io_.create_exclusive(temp_path_, direct, &fd_, &direct_); rc < 0) {
    fd_ = -1;
    throw IoError("cannot create temporary checkpoint file", temp_path_, "", -rc);
  }
}

TempFile::~TempFile() {
  if (fd_ >= 0) (void)io_.close(fd_);
  if (!published_) (void)io_.unlink(temp_path_);
}

void TempFile::publish(bool durable) {
  if (durable) {
    if (int rc = io_.fsync(fd_); rc < 0) throw IoError("fsync failed", temp_path_, "", -rc);
  }
  int fd = fd_;
  fd_ = -1;
  // close() can report a deferred write error (e.g. on NFS): a failure here
  // means the data may not be there, so the file must not be published.
  if (int rc = io_.close(fd); rc < 0) throw IoError("close failed", temp_path_, "", -rc);
  if (int rc = io_.rename(temp_path_, final_path_); rc < 0) {
    throw IoError("cannot rename temporary file to " + final_path_, temp_path_, "", -rc);
  }
  published_ = true;
  if (durable) {
    const std::string dir = parent_directory(final_path_);
    if (int rc = io_.fsync_directory(dir); rc < 0) {
      throw IoError("fsync of the checkpoint directory failed", dir, "", -rc);
    }
  }
}

}  // namespace ckptw::detail
