// The DeviceRuntime (src/stage/device_runtime.hpp) of CUDA: the runtime API
// and the kernels device staging uses (pack, CRC-32 slices). Plain C++
// interface: callers need no CUDA headers.
#pragma once

#include "stage/device_runtime.hpp"

namespace ckptw::detail::cuda {

/// The process's CUDA runtime; lives until the process ends.
DeviceRuntime& device_runtime();

}  // namespace ckptw::detail::cuda
