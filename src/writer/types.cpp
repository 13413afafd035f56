#include <cerrno>
#include <cstdlib>
#include <string>

#include "ckptw/error.hpp"
#include "ckptw/types.hpp"

namespace ckptw {
namespace {

int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  errno = 0;
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || value < INT32_MIN || value > INT32_MAX) {
    throw UsageError(std::string("environment variable ") + name + "='" + text +
                     "' is not an integer");
  }
  return static_cast<int>(value);
}

}  // namespace

RankInfo RankInfo::from_env() {
  RankInfo info{env_int("RANK", 0), env_int("WORLD_SIZE", 1)};
  if (info.global_world_size < 1) {
    throw UsageError("WORLD_SIZE must be >= 1, got " + std::to_string(info.global_world_size));
  }
  if (info.global_rank < 0 || info.global_rank >= info.global_world_size) {
    throw UsageError("RANK " + std::to_string(info.global_rank) + " is outside [0, WORLD_SIZE=" +
                     std::to_string(info.global_world_size) + ")");
  }
  return info;
}

StateDict make_state_dict() {
  return c10::impl::toTypedDict<std::string, c10::IValue>(
      c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
}

}  // namespace ckptw
