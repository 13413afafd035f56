#include <cerrno>
#include <cstdlib>
#include <string>

#include "ckptw/error.hpp"
#include "ckptw/types.hpp"
#include "util/rank_name.hpp"

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
  RankInfo info;
  info.global_rank = env_int("RANK", 0);
  info.global_world_size = env_int("WORLD_SIZE", 1);
  info.local_rank = env_int("LOCAL_RANK", 0);
  if (const char* address = std::getenv("MASTER_ADDR")) info.master_address = address;
  info.master_port = env_int("MASTER_PORT", 0);
  if (info.master_port < 0 || info.master_port > 65535) {
    throw UsageError("MASTER_PORT " + std::to_string(info.master_port) + " is not a port number");
  }
  if (info.global_world_size < 1) {
    throw UsageError("WORLD_SIZE must be >= 1, got " + std::to_string(info.global_world_size));
  }
  if (info.global_rank < 0 || info.global_rank >= info.global_world_size) {
    throw UsageError("RANK " + std::to_string(info.global_rank) + " is outside [0, WORLD_SIZE=" +
                     std::to_string(info.global_world_size) + ")");
  }
  return info;
}

std::string rank_file_name(int rank) { return "checkpoint_" + std::to_string(rank) + ".pt"; }

int rank_of_file_name(std::string_view name) { return detail::rank_between(name, "checkpoint_", ".pt"); }

StateDict make_state_dict() {
  return c10::impl::toTypedDict<std::string, c10::IValue>(
      c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
}

}  // namespace ckptw
