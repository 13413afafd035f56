#include <cstdio>
#include <cstring>
#include <mutex>

#include "ckptw/error.hpp"
#include "io/io_backend.hpp"

namespace ckptw {

const char* to_string(IoBackendKind kind) {
  switch (kind) {
    case IoBackendKind::kAuto: return "auto";
    case IoBackendKind::kUring: return "uring";
    case IoBackendKind::kPosix: return "posix";
  }
  return "unknown";
}

IoBackendKind parse_io_backend_kind(const char* text) {
  for (IoBackendKind kind : {IoBackendKind::kAuto, IoBackendKind::kUring, IoBackendKind::kPosix}) {
    if (std::strcmp(text, to_string(kind)) == 0) return kind;
  }
  throw UsageError(std::string("unknown I/O backend '") + text + "' (expected auto, uring or posix)");
}

namespace detail {

std::unique_ptr<IoBackend> make_backend(IoBackendKind kind, unsigned queue_depth) {
  if (kind == IoBackendKind::kPosix) return make_posix_backend();
  int error = 0;
  std::unique_ptr<IoBackend> uring = make_uring_backend(queue_depth, &error);
  if (uring) return uring;
  if (kind == IoBackendKind::kUring) {
    throw IoError("io_uring is not available (io_uring_queue_init failed)", "", "", -error);
  }
  // Once per process: a trainer creating many writers needs the fact, not a flood.
  static std::once_flag logged;
  std::call_once(logged, [error] {
    std::fprintf(stderr, "ckptw: io_uring unavailable (%s); using the POSIX backend\n", std::strerror(-error));
  });
  return make_posix_backend();
}

}  // namespace detail
}  // namespace ckptw
