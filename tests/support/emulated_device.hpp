// EmulatedDevice: a DeviceRuntime (src/stage/device_runtime.hpp) on host
// memory, for running device staging in CI where no GPU is. Its streams are
// as lazy as CUDA allows: queued work runs only when something waits for it
// (an event or stream synchronize, or work on another stream that waits on an
// event), in stream order, on the waiting thread. So staging that reads a
// copy's destination before waiting for its ticket reads stale bytes, and a
// header written into a packed batch's gap before the batch landed is
// overwritten by the scratch's filler bytes: both fail their tests.
//
// "Device memory" is host memory: any host pointer may stand for a device
// pointer. Fresh device allocations are filled with kFiller.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "stage/device_runtime.hpp"

namespace ckptw::testing {

class EmulatedDevice final : public detail::DeviceRuntime {
 public:
  static constexpr unsigned char kFiller = 0xEE;

  explicit EmulatedDevice(int devices = 1) : devices_(devices) {}
  ~EmulatedDevice() override;

  /// What has run so far (packs: pack kernels; transfers: device-to-host copies).
  int packs() const { return packs_; }
  int transfers() const { return transfers_; }
  int crc_kernels() const { return crc_kernels_; }
  /// Host memory registered (cudaHostRegister) and unregistered so far.
  int host_registrations() const;
  int host_unregistrations() const;
  /// Device and pinned allocations, streams and events not yet freed.
  int live_resources() const;
  /// The most pinned host memory held at once so far, in bytes.
  std::size_t pinned_bytes_peak() const;
  /// The devices that have a context: set_device creates one, as
  /// cudaSetDevice does since CUDA 12, and so does any call that needs the
  /// current device (streams, allocations, events, host registration).
  std::set<int> contexts() const;
  /// The next `op` call ("copy_to_host_async", "pack_async", "record_event",
  /// ...) fails with an emulated error instead of running.
  void fail_next(const std::string& op) { fail_next_ = op; }

  int current_device() override;
  std::string set_device(int device) override;
  bool has_context(int device) override;
  std::string create_stream(Stream* stream) override;
  void destroy_stream(Stream stream) override;
  std::string synchronize_stream(Stream stream) override;
  std::string allocate_device(void** memory, std::size_t bytes) override;
  void free_device(void* memory) override;
  std::string allocate_pinned(void** memory, std::size_t bytes) override;
  void free_pinned(void* memory) override;
  bool register_host(void* memory, std::size_t bytes) override;
  void unregister_host(void* memory) override;
  std::string create_event(Event* event) override;
  void destroy_event(Event event) override;
  std::string record_event(Event event, Stream stream) override;
  std::string synchronize_event(Event event) override;
  std::string stream_wait_event(Stream stream, Event event) override;
  std::string copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream stream) override;
  std::string copy_to_device_async(void* device, const void* host, std::size_t bytes, Stream stream) override;
  std::string pack_async(const detail::PackItem* items, int count, unsigned char* scratch, Stream stream) override;
  std::string allocate_async(void** memory, std::size_t bytes, Stream stream) override;
  void free_async(void* memory, Stream stream) override;
  std::string prepare_crc32(const std::uint32_t shift_sub_slice[32], Stream stream) override;
  std::string crc32_slices_async(const void* data, std::size_t bytes, std::uint32_t* slice_crcs,
                                 Stream stream) override;

 private:
  struct StreamState {
    int device;
    std::deque<std::function<void()>> work;
    std::uint64_t queued = 0;  // work items ever queued
    std::uint64_t ran = 0;     // of those, run
  };
  struct EventState {
    StreamState* stream = nullptr;  // where it was last recorded; nullptr: never
    std::uint64_t position = 0;     // complete once stream->ran reaches it
  };
  bool failing(const char* op);
  std::string queue(Stream stream, const char* op, std::function<void()> work);
  void run_until(StreamState* stream, std::uint64_t position);
  void* allocate(std::size_t bytes, bool device);

  const int devices_;
  mutable std::recursive_mutex mutex_;
  std::map<StreamState*, std::unique_ptr<StreamState>> streams_;
  std::map<EventState*, std::unique_ptr<EventState>> events_;
  std::map<void*, std::size_t> allocations_;
  std::size_t pinned_bytes_ = 0;
  std::size_t pinned_bytes_peak_ = 0;
  std::map<int, std::array<std::uint32_t, 32>> crc_shift_;  // per device: prepare_crc32's operator
  void use_current_device();  // with mutex_ held
  std::set<int> contexts_;
  std::string fail_next_;
  int host_registrations_ = 0;
  int host_unregistrations_ = 0;
  int packs_ = 0;
  int transfers_ = 0;
  int crc_kernels_ = 0;
};

}  // namespace ckptw::testing
