#include "ckptw/build_info.hpp"

#include <isa-l.h>

namespace ckptw {

BuildInfo build_info() {
  BuildInfo info;
  info.ckptw_version = CKPTW_VERSION;
  info.libtorch_version = CKPTW_TORCH_VERSION;
  info.cuda_version = CKPTW_CUDA_VERSION;
  info.nccl_version = CKPTW_NCCL_VERSION;
  info.liburing_version = CKPTW_LIBURING_VERSION;
  info.isal_version = std::to_string(ISAL_MAJOR_VERSION) + "." + std::to_string(ISAL_MINOR_VERSION) +
                      "." + std::to_string(ISAL_PATCH_VERSION);
  return info;
}

}  // namespace ckptw
