// CKPTW_HOST_DEVICE marks inline functions that the CUDA kernels in cuda/ and
// host code (tests included) share, so CI runs the kernels' arithmetic where
// no GPU is.
#pragma once

#if defined(__CUDACC__)
#define CKPTW_HOST_DEVICE __host__ __device__
#else
#define CKPTW_HOST_DEVICE
#endif
