#include "cuda_device_runtime.cuh"

#include <cuda_runtime.h>

#include "checksum/crc32_math.hpp"

namespace ckptw::detail::cuda {
namespace {

// One block per item (grid-stride over items); pack_item_part splits an item
// between the block's threads.
__global__ void pack_kernel(const PackItem* items, int count, unsigned char* scratch) {
  for (int i = blockIdx.x; i < count; i += gridDim.x) pack_item_part(items[i], scratch, threadIdx.x, blockDim.x);
}

__constant__ std::uint32_t c_shift_sub_slice[32];  // crc32_math::shift_operator(kSubSliceBytes)

// One block per slice, one thread per sub-slice (crc32_math's functions,
// which tests/unit/crc32_test.cpp runs on the host against ISA-L). The block
// first stages its slice in shared memory with coalesced 16-byte loads; each
// thread then reads its own sub-slice from there (padded: no bank conflicts)
// instead of 128-byte-strided global loads.
__global__ void crc32_slice_kernel(const unsigned char* data, unsigned long long bytes, std::uint32_t* slice_crcs) {
  __shared__ std::uint32_t table[256];
  __shared__ std::uint32_t sub_crc[crc32_math::kThreadsPerSlice];
  __shared__ alignas(16) unsigned char staged[crc32_math::kStagedSliceBytes];
  for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) table[i] = crc32_math::table_entry(i);
  crc32_math::stage_slice_part(data, bytes, blockIdx.x, staged, threadIdx.x, blockDim.x);
  __syncthreads();
  if (threadIdx.x < crc32_math::sub_slice_count(bytes, blockIdx.x)) {
    sub_crc[threadIdx.x] = crc32_math::staged_sub_slice_crc(staged, bytes, blockIdx.x, threadIdx.x, table);
  }
  __syncthreads();
  if (threadIdx.x == 0) slice_crcs[blockIdx.x] = crc32_math::join_sub_slices(sub_crc, bytes, blockIdx.x, c_shift_sub_slice);
}

// A CUDA driver function (CUDA 12 ABI), nullptr when the driver lacks it.
void* driver_entry_point(const char* symbol) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(symbol, &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return fn;
}

// Clears the sticky last error so that one failed call does not fail the next.
std::string describe(cudaError_t e) {
  if (e == cudaSuccess) return {};
  (void)cudaGetLastError();
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

class CudaRuntime final : public DeviceRuntime {
 public:
  int current_device() override {
    int device = -1;
    if (!describe(cudaGetDevice(&device)).empty()) return -1;
    return device;
  }
  std::string set_device(int device) override { return describe(cudaSetDevice(device)); }
  bool has_context(int device) override {
    // The driver's cuDevicePrimaryCtxGetState through the runtime's entry
    // point table: ckptw links no libcuda (the driver), which a machine
    // without a GPU lacks.
    using GetDevice = int (*)(int* cu_device, int ordinal);
    using GetState = int (*)(int cu_device, unsigned* flags, int* active);
    static GetDevice get_device = reinterpret_cast<GetDevice>(driver_entry_point("cuDeviceGet"));
    static GetState get_state = reinterpret_cast<GetState>(driver_entry_point("cuDevicePrimaryCtxGetState"));
    int cu_device = 0;
    unsigned flags = 0;
    int active = 0;
    return get_device != nullptr && get_state != nullptr && get_device(&cu_device, device) == 0 &&
           get_state(cu_device, &flags, &active) == 0 && active != 0;
  }

  std::string create_stream(Stream* stream) override {
    return describe(cudaStreamCreateWithFlags(reinterpret_cast<cudaStream_t*>(stream), cudaStreamNonBlocking));
  }
  void destroy_stream(Stream stream) override { (void)describe(cudaStreamDestroy(as_stream(stream))); }
  std::string synchronize_stream(Stream stream) override { return describe(cudaStreamSynchronize(as_stream(stream))); }

  std::string allocate_device(void** memory, std::size_t bytes) override { return describe(cudaMalloc(memory, bytes)); }
  void free_device(void* memory) override { (void)describe(cudaFree(memory)); }
  std::string allocate_pinned(void** memory, std::size_t bytes) override {
    return describe(cudaMallocHost(memory, bytes));
  }
  void free_pinned(void* memory) override { (void)describe(cudaFreeHost(memory)); }
  bool register_host(void* memory, std::size_t bytes) override {
    // Portable: pinned for every device's context, not only the current one,
    // so copies from tensors on any GPU into it run at pinned speed.
    return describe(cudaHostRegister(memory, bytes, cudaHostRegisterPortable)).empty();
  }
  void unregister_host(void* memory) override { (void)describe(cudaHostUnregister(memory)); }

  std::string create_event(Event* event) override {
    return describe(cudaEventCreateWithFlags(reinterpret_cast<cudaEvent_t*>(event), cudaEventDisableTiming));
  }
  void destroy_event(Event event) override { (void)describe(cudaEventDestroy(as_event(event))); }
  std::string record_event(Event event, Stream stream) override {
    return describe(cudaEventRecord(as_event(event), as_stream(stream)));
  }
  std::string synchronize_event(Event event) override { return describe(cudaEventSynchronize(as_event(event))); }
  std::string stream_wait_event(Stream stream, Event event) override {
    return describe(cudaStreamWaitEvent(as_stream(stream), as_event(event), 0));
  }

  std::string copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream stream) override {
    return describe(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
  }
  std::string copy_to_device_async(void* device, const void* host, std::size_t bytes, Stream stream) override {
    return describe(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
  }
  std::string pack_async(const PackItem* items, int count, unsigned char* scratch, Stream stream) override {
    if (count <= 0) return {};
    const int blocks = count < 4096 ? count : 4096;
    pack_kernel<<<blocks, 256, 0, as_stream(stream)>>>(items, count, scratch);
    return describe(cudaGetLastError());
  }

  std::string allocate_async(void** memory, std::size_t bytes, Stream stream) override {
    return describe(cudaMallocAsync(memory, bytes, as_stream(stream)));
  }
  void free_async(void* memory, Stream stream) override { (void)describe(cudaFreeAsync(memory, as_stream(stream))); }
  std::string prepare_crc32(const std::uint32_t shift_sub_slice[32], Stream stream) override {
    return describe(cudaMemcpyToSymbolAsync(c_shift_sub_slice, shift_sub_slice, 32 * sizeof(std::uint32_t), 0,
                                            cudaMemcpyHostToDevice, as_stream(stream)));
  }
  std::string crc32_slices_async(const void* data, std::size_t bytes, std::uint32_t* slice_crcs,
                                 Stream stream) override {
    if (bytes == 0) return {};
    const std::uint64_t slices = crc32_math::part_count(bytes, crc32_math::kSliceBytes);
    if (slices > 0x7FFFFFFFu) return "a storage of " + std::to_string(bytes) + " bytes has too many CRC slices";
    crc32_slice_kernel<<<static_cast<unsigned>(slices), crc32_math::kThreadsPerSlice, 0, as_stream(stream)>>>(
        static_cast<const unsigned char*>(data), bytes, slice_crcs);
    return describe(cudaGetLastError());
  }

 private:
  static cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }
  static cudaEvent_t as_event(Event e) { return static_cast<cudaEvent_t>(e); }
};

}  // namespace

DeviceRuntime& device_runtime() {
  static CudaRuntime* runtime = new CudaRuntime;  // never destroyed: stagers may outlive static destruction order
  return *runtime;
}

}  // namespace ckptw::detail::cuda
