// Publishing a file atomically: write under a temporary name in the target
// directory, fsync, rename over the final name, fsync the directory.
//
// Until publish() returns, the final name holds whatever it held before (the
// previous checkpoint or nothing); afterwards it holds the complete new file.
// A TempFile that is destroyed unpublished closes and unlinks its temp file.
#pragma once

#include <string>
#include <vector>

#include "io/io_backend.hpp"

namespace ckptw::detail {

/// Creates `dir` and any missing parents, fsyncing each parent after creating
/// a child so the new entries survive a crash. Returns the directories it
/// created, outermost first. Throws ckptw::IoError naming the directory.
std::vector<std::string> make_directories(IoBackend& io, const std::string& dir);

/// Removes the directories make_directories() created, innermost first, if
/// they are empty. Never throws.
void remove_created_directories(IoBackend& io, const std::vector<std::string>& created) noexcept;

/// A fresh temporary name next to `final_path`, recognisable as a leftover:
/// `.<final name>.ckptw-tmp.<pid>.<sequence>`.
std::string temp_path_for(const std::string& final_path);

/// The prefix every temporary name for the file `base_name` starts with.
std::string temp_prefix_for(const std::string& base_name);

/// Unlinks the entries of `dir` whose names start with one of `prefixes`:
/// temp files that writes killed before cleanup left behind. Best effort:
/// a listing or unlink failure is ignored (the write that follows reports
/// real problems with the directory).
void remove_stale_temp_files(IoBackend& io, const std::string& dir, const std::vector<std::string>& prefixes) noexcept;

class TempFile {
 public:
  /// Creates the temporary file next to `final_path`, with O_DIRECT when
  /// `direct` and the filesystem allows it. Throws ckptw::IoError.
  TempFile(IoBackend& io, std::string final_path, bool direct);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const noexcept { return fd_; }
  /// Whether the descriptor was opened with O_DIRECT.
  bool direct() const noexcept { return direct_; }
  const std::string& temp_path() const noexcept { return temp_path_; }
  const std::string& final_path() const noexcept { return final_path_; }
  /// Whether the rename to the final name happened.
  bool published() const noexcept { return published_; }

  /// Makes the written bytes the content of the final name. Order matters:
  /// the file's data must be durable before the rename can be (fsync before
  /// rename), and the rename is durable only once the directory is synced.
  /// With `durable` false both fsyncs are skipped. Throws ckptw::IoError; on
  /// failure before the rename the final name is untouched.
  void publish(bool durable);

 private:
  IoBackend& io_;
  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool direct_ = false;
  bool published_ = false;
};

/// Directory part of a path ("." when there is none).
std::string parent_directory(const std::string& path);
/// The last component of a path (the whole path when it has no '/').
std::string base_name(const std::string& path);

}  // namespace ckptw::detail
