// The exceptions ckptw throws. Every failure at the public API is a ckptw::Error
// (a std::runtime_error), so callers can catch one type; the subclasses let them
// tell bad input from I/O failure from an aborted commit.
//
// Each error carries what is known about where it happened: the file path, the
// key path inside the state dict (`model.layers[3].weight`), and the errno.
// what() already contains all of them, in one line.
#pragma once

#include <string>
#include <stdexcept>

#include "ckptw/export.hpp"

namespace ckptw {

class CKPTW_EXPORT Error : public std::runtime_error {
 public:
  /// @param message   what went wrong, without path/key/errno (they are appended)
  /// @param path      file or directory involved, empty when none
  /// @param key_path  state-dict key path (`a.b[2]`), empty when none
  /// @param errno_value errno of the failing system call, 0 when none
  explicit Error(const std::string& message, std::string path = {}, std::string key_path = {},
                 int errno_value = 0);

  const std::string& message() const noexcept { return message_; }
  const std::string& path() const noexcept { return path_; }
  const std::string& key_path() const noexcept { return key_path_; }
  /// errno of the failing system call, or 0 when the error did not come from one.
  int errno_value() const noexcept { return errno_value_; }

 private:
  std::string message_;
  std::string path_;
  std::string key_path_;
  int errno_value_;
};

/// A system call failed (open, write, fsync, rename, ...); errno_value() says why.
class CKPTW_EXPORT IoError : public Error {
 public:
  using Error::Error;
};

/// A value cannot be encoded in the .pt format, or a file is not a valid .pt file.
class CKPTW_EXPORT FormatError : public Error {
 public:
  using Error::Error;
};

/// A file's pickle (data.pkl) holds what ckptw's restricted reader refuses:
/// a global or call outside torch.load(weights_only=True)'s set, or a
/// malformed pickle. Python raises it as ckptw.UnpicklingError, which is also
/// a pickle.UnpicklingError, as torch.load's refusals are.
class CKPTW_EXPORT UnpicklingError : public FormatError {
 public:
  using FormatError::FormatError;
};

/// The caller used the API wrongly (bad config value, write after close, ...).
class CKPTW_EXPORT UsageError : public Error {
 public:
  using Error::Error;
};

/// A commit did not happen: some rank failed before the checkpoint was agreed.
class CKPTW_EXPORT CommitAborted : public Error {
 public:
  using Error::Error;
};

/// A bounded wait (barrier, close) ran out of time.
class CKPTW_EXPORT TimeoutError : public Error {
 public:
  using Error::Error;
};

}  // namespace ckptw
