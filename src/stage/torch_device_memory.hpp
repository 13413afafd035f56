// Staging's device memory from torch's CUDA caching allocator (issue 36,
// point 5): a trainer leaves that cache holding nearly all device memory, so
// a raw cudaMalloc of ckptw's scratch would fail where torch frees cached
// blocks and retries. Built without a CUDA LibTorch, or before torch has set
// up its allocator, the inner runtime allocates as before; either way a
// failed allocation is an error message, and staging falls back to unpacked
// copies and host CRCs.
#pragma once

#include <memory>

#include "stage/device_runtime.hpp"

namespace ckptw::detail {

/// `inner`, with allocate_device/allocate_async (and their frees) served by
/// torch's CUDA caching allocator when torch has initialised it.
std::unique_ptr<DeviceRuntime> with_torch_device_memory(DeviceRuntime& inner);

/// Whether torch's CUDA caching allocator is loaded in this process (set up
/// or not): false without a CUDA LibTorch, or when libc10_cuda is not loaded.
bool torch_cuda_allocator_found();

}  // namespace ckptw::detail
