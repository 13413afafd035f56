#include "stage/torch_device_memory.hpp"

#include <atomic>
#include <mutex>
#include <unordered_set>

#if CKPTW_HAVE_CUDA && __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <dlfcn.h>

#include <c10/cuda/CUDACachingAllocator.h>
#define CKPTW_TORCH_CUDA_ALLOCATOR 1
#endif

namespace ckptw::detail {
namespace {

#if CKPTW_TORCH_CUDA_ALLOCATOR
using TorchAllocator = c10::cuda::CUDACachingAllocator::CUDAAllocator;

// torch's allocator, found in the process rather than linked: a link to
// libc10_cuda would make libckptw.so need it directly, and a consumer whose
// own RUNPATH finds torch's libraries (not libckptw's, which is empty) then
// fails to load (its runpath does not serve libckptw's dependencies). When
// torch uses CUDA, libc10_cuda is loaded; the calls below are virtual, so
// nothing else of it is linked. Null when it is not loaded or not set up.
std::atomic<TorchAllocator*>* torch_allocator_slot() {
  // RTLD_NOLOAD: the copy already loaded, whatever its scope (Python loads
  // torch's libraries RTLD_LOCAL, out of RTLD_DEFAULT's reach); never a new one.
  static auto* const slot = [] {
    const char* symbol = "_ZN3c104cuda20CUDACachingAllocator9allocatorE";  // c10::cuda::CUDACachingAllocator::allocator
    void* library = ::dlopen("libc10_cuda.so", RTLD_LAZY | RTLD_NOLOAD);
    void* found = library != nullptr ? ::dlsym(library, symbol) : ::dlsym(RTLD_DEFAULT, symbol);
    return reinterpret_cast<std::atomic<TorchAllocator*>*>(found);
  }();
  return slot;
}

TorchAllocator* torch_allocator() {
  std::atomic<TorchAllocator*>* slot = torch_allocator_slot();
  TorchAllocator* allocator = slot != nullptr ? slot->load() : nullptr;
  return allocator != nullptr && allocator->initialized() ? allocator : nullptr;
}
#endif

// Every call goes to `inner` but device allocations, which torch's allocator
// serves once torch has set it up (it has, whenever a CUDA tensor exists):
// when its cache holds the memory, it frees cached blocks and retries before
// giving up, where a raw cudaMalloc would fail at once. Blocks go back with
// raw_delete only after the stager synchronised the stream that used them
// (DeviceStager's contract), so torch may hand them out again at once.
class TorchDeviceMemory final : public DeviceRuntime {
 public:
  explicit TorchDeviceMemory(DeviceRuntime& inner) : inner_(inner) {}

  int current_device() override { return inner_.current_device(); }
  std::string set_device(int device) override { return inner_.set_device(device); }
  bool has_context(int device) override { return inner_.has_context(device); }
  std::string create_stream(Stream* stream) override { return inner_.create_stream(stream); }
  void destroy_stream(Stream stream) override { inner_.destroy_stream(stream); }
  std::string synchronize_stream(Stream stream) override { return inner_.synchronize_stream(stream); }

  std::string allocate_device(void** memory, std::size_t bytes) override {
    return allocate(memory, bytes, nullptr, /*stream_ordered=*/false);
  }
  void free_device(void* memory) override {
    if (!release(memory)) inner_.free_device(memory);
  }
  std::string allocate_async(void** memory, std::size_t bytes, Stream stream) override {
    return allocate(memory, bytes, stream, /*stream_ordered=*/true);
  }
  void free_async(void* memory, Stream stream) override {
    if (!release(memory)) inner_.free_async(memory, stream);
  }

  std::string allocate_pinned(void** memory, std::size_t bytes) override {
    return inner_.allocate_pinned(memory, bytes);
  }
  void free_pinned(void* memory) override { inner_.free_pinned(memory); }
  bool register_host(void* memory, std::size_t bytes) override { return inner_.register_host(memory, bytes); }
  void unregister_host(void* memory) override { inner_.unregister_host(memory); }
  std::string create_event(Event* event) override { return inner_.create_event(event); }
  void destroy_event(Event event) override { inner_.destroy_event(event); }
  std::string record_event(Event event, Stream stream) override { return inner_.record_event(event, stream); }
  std::string synchronize_event(Event event) override { return inner_.synchronize_event(event); }
  std::string stream_wait_event(Stream stream, Event event) override {
    return inner_.stream_wait_event(stream, event);
  }
  std::string copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream stream) override {
    return inner_.copy_to_host_async(host, device, bytes, stream);
  }
  std::string copy_to_device_async(void* device, const void* host, std::size_t bytes, Stream stream) override {
    return inner_.copy_to_device_async(device, host, bytes, stream);
  }
  std::string pack_async(const PackItem* items, int count, unsigned char* scratch, Stream stream) override {
    return inner_.pack_async(items, count, scratch, stream);
  }
  std::string prepare_crc32(const std::uint32_t shift_sub_slice[32], Stream stream) override {
    return inner_.prepare_crc32(shift_sub_slice, stream);
  }
  std::string crc32_slices_async(const void* data, std::size_t bytes, std::uint32_t* slice_crcs,
                                 Stream stream) override {
    return inner_.crc32_slices_async(data, bytes, slice_crcs, stream);
  }

 private:
  std::string allocate(void** memory, std::size_t bytes, Stream stream, bool stream_ordered) {
#if CKPTW_TORCH_CUDA_ALLOCATOR
    if (TorchAllocator* allocator = torch_allocator()) {
      try {
        // Stream-ordered memory belongs to ckptw's stream in torch's pools;
        // the rest is freed only after that stream was synchronised.
        void* p = stream_ordered ? allocator->raw_alloc_with_stream(bytes, static_cast<cudaStream_t>(stream))
                                 : allocator->raw_alloc(bytes);
        std::lock_guard<std::mutex> lock(mutex_);
        from_torch_.insert(p);
        *memory = p;
        return {};
      } catch (const std::exception& e) {
        return std::string("torch's CUDA caching allocator: ") + e.what();
      }
    }
#endif
    return stream_ordered ? inner_.allocate_async(memory, bytes, stream) : inner_.allocate_device(memory, bytes);
  }

  // Whether `memory` came from torch's allocator (and is now given back to it).
  bool release(void* memory) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (from_torch_.erase(memory) == 0) return false;
    }
#if CKPTW_TORCH_CUDA_ALLOCATOR
    // Non-null: the pointer came from it, and torch's allocator lives as long as the process.
    if (TorchAllocator* allocator = torch_allocator()) allocator->raw_delete(memory);
#endif
    return true;
  }

  DeviceRuntime& inner_;
  std::mutex mutex_;
  std::unordered_set<void*> from_torch_;
};

}  // namespace

bool torch_cuda_allocator_found() {
#if CKPTW_TORCH_CUDA_ALLOCATOR
  return torch_allocator_slot() != nullptr;
#else
  return false;
#endif
}

std::unique_ptr<DeviceRuntime> with_torch_device_memory(DeviceRuntime& inner) {
  return std::make_unique<TorchDeviceMemory>(inner);
}

}  // namespace ckptw::detail
