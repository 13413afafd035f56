// DeviceRuntime: the CUDA runtime calls that device staging (DeviceStager)
// makes, behind an interface. cuda/cuda_device_runtime.cu implements it with CUDA and
// the kernels; tests implement it with host memory and streams whose work
// runs only when something waits for it, so staging's bookkeeping (tickets,
// packed batches, events, checksum slots) runs in CI, where no GPU is.
//
// Streams run their work in order; an event completes when the work recorded
// before it on its stream has run. Every call returns an error message, empty
// on success. Plain C++: no CUDA or LibTorch headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/host_device.hpp"

namespace ckptw::detail {

/// One small storage of a packed batch: `bytes` from device memory `src` go
/// to `offset` in the device scratch region.
struct PackItem {
  const unsigned char* src;
  unsigned long long offset;
  unsigned long long bytes;
};

/// The part of `item` that thread `thread` of `threads` moves (the pack
/// kernel runs one block per item): 16-byte words when source, destination
/// and size allow, single bytes otherwise.
CKPTW_HOST_DEVICE inline void pack_item_part(const PackItem& item, unsigned char* scratch, unsigned thread,
                                             unsigned threads) {
  unsigned char* dst = scratch + item.offset;
  const unsigned long long bits = reinterpret_cast<unsigned long long>(item.src) |
                                  reinterpret_cast<unsigned long long>(dst) | item.bytes;
  if ((bits & 15) == 0) {
    struct alignas(16) Word {
      unsigned int v[4];
    };
    const Word* s = reinterpret_cast<const Word*>(item.src);
    Word* d = reinterpret_cast<Word*>(dst);
    for (unsigned long long k = thread; k < item.bytes / 16; k += threads) d[k] = s[k];
  } else {
    for (unsigned long long k = thread; k < item.bytes; k += threads) dst[k] = item.src[k];
  }
}

class DeviceRuntime {
 public:
  using Stream = void*;  // cudaStream_t
  using Event = void*;   // cudaEvent_t

  virtual ~DeviceRuntime() = default;

  /// The calling thread's current device, -1 when it cannot be had.
  virtual int current_device() = 0;
  /// Makes `device` current; creates its primary context when it has none
  /// (CUDA 12 and later), which costs hundreds of MiB on that GPU.
  virtual std::string set_device(int device) = 0;
  /// Whether `device`'s primary context exists already (false when unknown).
  virtual bool has_context(int device) = 0;

  /// A stream of the current device that does not synchronise with the
  /// legacy default stream.
  virtual std::string create_stream(Stream* stream) = 0;
  virtual void destroy_stream(Stream stream) = 0;
  /// Blocks until everything queued on `stream` has run.
  virtual std::string synchronize_stream(Stream stream) = 0;

  virtual std::string allocate_device(void** memory, std::size_t bytes) = 0;
  virtual void free_device(void* memory) = 0;
  /// Page-locked host memory.
  virtual std::string allocate_pinned(void** memory, std::size_t bytes) = 0;
  virtual void free_pinned(void* memory) = 0;
  /// Page-locks existing host memory for every device; false when refused.
  virtual bool register_host(void* memory, std::size_t bytes) = 0;
  virtual void unregister_host(void* memory) = 0;

  virtual std::string create_event(Event* event) = 0;
  virtual void destroy_event(Event event) = 0;
  /// The event completes when the work queued on `stream` so far has run.
  virtual std::string record_event(Event event, Stream stream) = 0;
  /// Blocks until `event` completed (at once for an event never recorded).
  virtual std::string synchronize_event(Event event) = 0;
  /// Work queued on `stream` after this call waits for `event`.
  virtual std::string stream_wait_event(Stream stream, Event event) = 0;

  virtual std::string copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream stream) = 0;
  virtual std::string copy_to_device_async(void* device, const void* host, std::size_t bytes, Stream stream) = 0;
  /// Queues the pack of `count` items (the list itself in device memory)
  /// into device memory `scratch`.
  virtual std::string pack_async(const PackItem* items, int count, unsigned char* scratch, Stream stream) = 0;

  /// Stream-ordered device memory.
  virtual std::string allocate_async(void** memory, std::size_t bytes, Stream stream) = 0;
  virtual void free_async(void* memory, Stream stream) = 0;
  /// Makes crc32_shift(crc32_math::kSubSliceBytes) available to the
  /// current device's CRC kernel, ordered on `stream`.
  virtual std::string prepare_crc32(const std::uint32_t shift_sub_slice[32], Stream stream) = 0;
  /// Queues the slice CRCs of device memory [data, data + bytes) into device
  /// memory `slice_crcs` (crc32_math::part_count(bytes, kSliceBytes) of them).
  virtual std::string crc32_slices_async(const void* data, std::size_t bytes, std::uint32_t* slice_crcs,
                                         Stream stream) = 0;
};

/// Makes `device` current for one call on whatever thread makes it (ckptw's
/// own threads start on device 0), and afterwards makes the previous device
/// current again only when that device already has a context: restoring
/// with set_device would create one, hundreds of MiB on a GPU the thread
/// never used (torch's MaybeSetDevice avoids the same).
class ScopedDevice {
 public:
  ScopedDevice(DeviceRuntime& runtime, int device) : runtime_(runtime), previous_(runtime.current_device()) {
    if (previous_ == device) {
      previous_ = -1;  // nothing to change, nothing to restore
    } else {
      error_ = runtime.set_device(device);
    }
  }
  ~ScopedDevice() {
    if (previous_ >= 0 && runtime_.has_context(previous_)) (void)runtime_.set_device(previous_);
  }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  /// Empty when `device` is current.
  const std::string& error() const { return error_; }

 private:
  DeviceRuntime& runtime_;
  int previous_;
  std::string error_;
};

}  // namespace ckptw::detail
