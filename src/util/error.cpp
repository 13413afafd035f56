#include "ckptw/error.hpp"

#include <cstring>

namespace ckptw {
namespace {

std::string compose(const std::string& message, const std::string& path,
                    const std::string& key_path, int errno_value) {
  std::string text = "ckptw: " + message;
  if (!key_path.empty()) text += " (key '" + key_path + "')";
  if (!path.empty()) text += " (path '" + path + "')";
  if (errno_value != 0) {
    text += ": ";
    text += std::strerror(errno_value);
    text += " (errno " + std::to_string(errno_value) + ")";
  }
  return text;
}

}  // namespace

Error::Error(const std::string& message, std::string path, std::string key_path, int errno_value)
    : std::runtime_error(compose(message, path, key_path, errno_value)),
      message_(message),
      path_(std::move(path)),
      key_path_(std::move(key_path)),
      errno_value_(errno_value) {}

}  // namespace ckptw
