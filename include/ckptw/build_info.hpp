// What this build of ckptw was built with, as printed by `ckptw --version`.
#pragma once

#include <string>

#include "ckptw/export.hpp"

namespace ckptw {

struct CKPTW_EXPORT BuildInfo {
  std::string ckptw_version;    ///< e.g. "0.1.0"
  std::string libtorch_version; ///< TORCH_VERSION the library was compiled against
  std::string cuda_version;     ///< CUDA toolkit version, or "none"
  std::string nccl_version;     ///< NCCL version, or "none"
  std::string liburing_version; ///< liburing version
  std::string isal_version;     ///< ISA-L version
};

CKPTW_EXPORT BuildInfo build_info();

}  // namespace ckptw
