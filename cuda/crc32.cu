#include "crc32.cuh"

#include <cuda_runtime.h>

namespace ckptw::detail::cuda {
namespace {

__constant__ std::uint32_t c_shift_sub_slice[32];  // crc32_math::shift_operator(kCrcSubSliceBytes)

// One block per slice, one thread per sub-slice (crc32.cuh's functions, which
// tests/unit/crc32_test.cpp runs on the host against ISA-L).
__global__ void crc32_slice_kernel(const unsigned char* data, unsigned long long bytes, std::uint32_t* slice_crcs) {
  __shared__ std::uint32_t table[256];
  __shared__ std::uint32_t sub_crc[kCrcSliceBytes / kCrcSubSliceBytes];
  for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) table[i] = crc32_math::table_entry(i);
  __syncthreads();
  if (threadIdx.x < crc32_sub_slice_count(bytes, blockIdx.x)) {
    sub_crc[threadIdx.x] = crc32_sub_slice(data, bytes, blockIdx.x, threadIdx.x, table);
  }
  __syncthreads();
  if (threadIdx.x == 0) slice_crcs[blockIdx.x] = crc32_join_sub_slices(sub_crc, bytes, blockIdx.x, c_shift_sub_slice);
}

std::string describe(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

}  // namespace

std::string crc32_prepare_device(const std::uint32_t shift_sub_slice[32], void* stream) {
  cudaError_t e = cudaMemcpyToSymbolAsync(c_shift_sub_slice, shift_sub_slice, 32 * sizeof(std::uint32_t), 0,
                                          cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) (void)cudaGetLastError();
  return e == cudaSuccess ? std::string() : describe(e);
}

std::string crc32_queue_slices(const void* data, std::size_t bytes, std::uint32_t* slice_crcs, void* stream) {
  if (bytes == 0) return {};
  const std::size_t slices = crc32_slice_count(bytes);
  if (slices > 0x7FFFFFFFu) return "a storage of " + std::to_string(bytes) + " bytes has too many CRC slices";
  crc32_slice_kernel<<<static_cast<unsigned>(slices), kCrcSliceBytes / kCrcSubSliceBytes, 0,
                       static_cast<cudaStream_t>(stream)>>>(static_cast<const unsigned char*>(data), bytes, slice_crcs);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : describe(e);
}

}  // namespace ckptw::detail::cuda
