#include <cstring>
#include <string>
#include <vector>

#include "checksum/crc32.hpp"
#include "checksum/crc32_math.hpp"
#include "ckptw/error.hpp"
#include "stage/copy_engine.hpp"
#include "stage/device_stager.hpp"
#include "stage/torch_device_memory.hpp"

#if CKPTW_HAVE_CUDA
#include "cuda_info.cuh"
#include "cuda_device_runtime.cuh"
#endif

namespace ckptw::detail {
namespace {

// Adapts the device stager to the seam; host sources are copied on the
// caller's thread.
class DeviceCopyEngine final : public CopyEngine {
 public:
  DeviceCopyEngine(DeviceRuntime& runtime, const char* name) : runtime_(runtime), name_(name), stager_(runtime) {}

  const char* name() const override { return name_; }
  bool pin(void* data, std::size_t bytes, int device) override {
    if (device < 0) return runtime_.register_host(data, bytes);
    ScopedDevice scope(runtime_, device);
    return scope.error().empty() && runtime_.register_host(data, bytes);
  }
  void unpin(void* data, int device) noexcept override {
    if (device < 0) return runtime_.unregister_host(data);
    ScopedDevice scope(runtime_, device);
    runtime_.unregister_host(data);
  }
  void wait_for_producer(int device, void* producer_event) override {
    check(stager_.wait_for_event(device, producer_event), device);
  }
  std::uint64_t copy_to_host(void* dst, const void* src, std::size_t bytes, int device) override {
    if (device < 0) {
      // A packed batch's transfer covers the padding up to its last copy:
      // send it before host bytes land next to it.
      check(stager_.break_batches(), -1);
      std::memcpy(dst, src, bytes);
      return stager_.host_ticket();
    }
    std::uint64_t ticket = 0;
    check(stager_.copy_to_host(dst, src, bytes, device, &ticket), device);
    return ticket;
  }
  void wait(std::uint64_t ticket) override {
    int failed_device = -1;
    std::string error = stager_.wait(ticket, &failed_device);
    check(error, failed_device);
  }
  void finish() override {
    int failed_device = -1;
    std::string error = stager_.finish(&failed_device);
    check(error, failed_device);
  }
  std::uint64_t queue_device_crc32(const void* src, std::size_t bytes, int device) override {
    std::uint64_t ticket = 0;
    check(stager_.queue_checksum(src, bytes, device, shift_sub_slice_.data(), &ticket), device);
    return ticket;
  }
  std::uint32_t device_crc32_result(std::uint64_t ticket) override {
    std::vector<std::uint32_t> slices;
    std::size_t bytes = 0;
    int failed_device = -1;
    std::string error = stager_.checksum_result(ticket, &slices, &bytes, &failed_device);
    check(error, failed_device);
    return crc32_math::join_parts(slices.data(), bytes, crc32_math::kSliceBytes, shift_slice_.data());
  }

 private:
  static void check(const std::string& error, int device) {
    if (!error.empty()) throw Error("device-to-host staging copy failed on cuda:" + std::to_string(device) + ": " + error);
  }

  DeviceRuntime& runtime_;
  const char* const name_;
  const Crc32Shift shift_sub_slice_ = crc32_shift(crc32_math::kSubSliceBytes);
  const Crc32Shift shift_slice_ = crc32_shift(crc32_math::kSliceBytes);
  DeviceStager stager_;  // last: destroyed first, while the runtime is there
};

}  // namespace

std::unique_ptr<CopyEngine> make_device_copy_engine(DeviceRuntime& runtime, const char* name) {
  return std::make_unique<DeviceCopyEngine>(runtime, name);
}

std::unique_ptr<CopyEngine> make_copy_engine() {
#if CKPTW_HAVE_CUDA
  if (cuda::device_count() > 0) {
    // Never destroyed, as cuda::device_runtime(): engines of writers closed
    // during the process's exit may still free through it.
    static DeviceRuntime* const runtime = with_torch_device_memory(cuda::device_runtime()).release();
    return make_device_copy_engine(*runtime, "cuda");
  }
#endif
  return make_host_copy_engine();
}

}  // namespace ckptw::detail
