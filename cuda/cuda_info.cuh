// CUDA runtime facts for `ckptw --version` and for GPU tests deciding to skip.
// Plain C++ interface: callers need no CUDA headers.
#pragma once

#include <string>

namespace ckptw::detail::cuda {

/// Number of visible CUDA devices; 0 when there is no driver or no device.
int device_count() noexcept;

/// "major.minor" of the CUDA runtime linked in.
std::string runtime_version();

}  // namespace ckptw::detail::cuda
