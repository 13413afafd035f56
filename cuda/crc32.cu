#include "crc32.cuh"

#include <cuda_runtime.h>

namespace ckptw::detail::cuda {
namespace {

__constant__ std::uint32_t c_shift_128[32];

__device__ std::uint32_t apply(const std::uint32_t* matrix, std::uint32_t vector) {
  std::uint32_t sum = 0;
  for (int i = 0; vector != 0; ++i, vector >>= 1) {
    if (vector & 1) sum ^= matrix[i];
  }
  return sum;
}

__device__ void square(const std::uint32_t* in, std::uint32_t* out) {
  for (int i = 0; i < 32; ++i) out[i] = apply(in, in[i]);
}

// zlib's crc32_combine for one short remainder per buffer (at most 127 bytes).
__device__ std::uint32_t combine(std::uint32_t crc_a, std::uint32_t crc_b, unsigned length_b) {
  std::uint32_t odd[32], even[32];
  odd[0] = 0xEDB88320u;
  for (int i = 1; i < 32; ++i) odd[i] = 1u << (i - 1);
  square(odd, even);  // 2 zero bits
  square(even, odd);  // 4 zero bits
  do {
    square(odd, even);
    if (length_b & 1) crc_a = apply(even, crc_a);
    length_b >>= 1;
    if (length_b == 0) break;
    square(even, odd);
    if (length_b & 1) crc_a = apply(odd, crc_a);
    length_b >>= 1;
  } while (length_b != 0);
  return crc_a ^ crc_b;
}

__global__ void crc32_slice_kernel(const unsigned char* data, unsigned long long bytes, std::uint32_t* slice_crcs) {
  __shared__ std::uint32_t table[256];
  __shared__ std::uint32_t sub_crc[kCrcSliceBytes / kCrcSubSliceBytes];
  __shared__ unsigned sub_length[kCrcSliceBytes / kCrcSubSliceBytes];
  for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  __syncthreads();
  const unsigned long long begin = static_cast<unsigned long long>(blockIdx.x) * kCrcSliceBytes +
                                   static_cast<unsigned long long>(threadIdx.x) * kCrcSubSliceBytes;
  const unsigned long long end = begin + kCrcSubSliceBytes < bytes ? begin + kCrcSubSliceBytes : bytes;
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned long long p = begin; p < end; ++p) c = table[(c ^ data[p]) & 0xFFu] ^ (c >> 8);
  sub_crc[threadIdx.x] = begin < end ? ~c : 0u;
  sub_length[threadIdx.x] = begin < end ? static_cast<unsigned>(end - begin) : 0u;
  __syncthreads();
  if (threadIdx.x == 0) {
    std::uint32_t crc = 0;  // CRC-32 of nothing
    for (unsigned i = 0; i < blockDim.x && sub_length[i] != 0; ++i) {
      crc = sub_length[i] == kCrcSubSliceBytes ? apply(c_shift_128, crc) ^ sub_crc[i]
                                               : combine(crc, sub_crc[i], sub_length[i]);
    }
    slice_crcs[blockIdx.x] = crc;
  }
}

std::string describe(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

}  // namespace

std::string crc32_prepare_device(const std::uint32_t shift_128[32], void* stream) {
  cudaError_t e = cudaMemcpyToSymbolAsync(c_shift_128, shift_128, 32 * sizeof(std::uint32_t), 0,
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
