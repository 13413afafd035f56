// Helpers shared by the C++ tests: temp directories, file access, child processes.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ckptw::testing {

/// A fresh directory under $TMPDIR (or /tmp), removed with its content on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);
bool exists(const std::string& path);
/// Names in `dir`, sorted, without "." and "..".
std::vector<std::string> list_dir(const std::string& dir);

/// Why io_uring cannot be set up here (strerror of the setup error), or ""
/// when it can: tests of the uring backend skip with it.
std::string io_uring_unavailable_reason();

/// Runs `body` in a forked child and returns its exit status (or 128 + signal).
/// The child must not run parallel (OpenMP) tensor kernels: make tensors
/// before the fork.
/// With `as_nobody`, the child drops to uid/gid 65534 first, so permission
/// checks apply even when the tests run as root.
int run_in_child(const std::function<int()>& body, bool as_nobody = false);

}  // namespace ckptw::testing
