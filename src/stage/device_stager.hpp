// DeviceStager: device-to-host staging copies on one non-default stream per
// device, through a DeviceRuntime (CUDA, or the tests' emulation). Storages
// below kPackBelow bytes that arrive back to back are packed by a kernel into
// a device scratch region and moved in one transfer, so thousands of KB-sized
// storages (biases, norms) do not cost one copy call each.
//
// Device memory is taken lazily and is optional: the scratch and item list
// at a device's first packable copy, the CRC slice buffer at its first
// checksum. Training leaves the device nearly full (torch's caching
// allocator holds what it freed), so when an allocation fails the stager
// copies unpacked and leaves the checksum to the host instead of failing
// the checkpoint.
//
// Every method restores the calling thread's current device. Errors come back
// as a non-empty message (the runtime's), never as exceptions. Used from one
// thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "stage/device_runtime.hpp"

namespace ckptw::detail {

class DeviceStager {
 public:
  /// Copies of at most this many bytes are packed.
  static constexpr std::size_t kPackBelow = std::size_t{1} << 20;
  /// Size of each device's pack scratch region.
  static constexpr std::size_t kScratchBytes = std::size_t{64} << 20;
  /// Items of one packed batch, at most.
  static constexpr int kMaxItems = 16384;

  explicit DeviceStager(DeviceRuntime& runtime);
  ~DeviceStager();
  DeviceStager(const DeviceStager&) = delete;
  DeviceStager& operator=(const DeviceStager&) = delete;

  /// Later copies from `device` wait for `event` (the runtime's event).
  std::string wait_for_event(int device, void* event);
  /// Queues a copy of `bytes` from device memory `src` on `device` into host
  /// memory `dst`. A packed batch covers the host range from its first to
  /// its last copy, padding included: copies must come in increasing `dst`
  /// order, and host memory between two copies of one batch must hold
  /// nothing else (break_batches() before writing there otherwise).
  /// *ticket gets the copy's ticket (increasing, never 0).
  std::string copy_to_host(void* dst, const void* src, std::size_t bytes, int device, std::uint64_t* ticket);
  /// A ticket for a copy made on the host (already complete).
  std::uint64_t host_ticket();
  /// Sends every pending packed batch.
  std::string break_batches();
  /// Blocks until copy `ticket` has landed: waits for the event recorded
  /// after its transfer (a packed copy's batch is sent first if pending).
  std::string wait(std::uint64_t ticket, int* failed_device);
  /// Sends pending batches and waits for every stream; on failure names the
  /// device in *failed_device. Checksums not yet taken are forgotten.
  std::string finish(int* failed_device);
  /// Queues the slice CRC-32s of device memory (crc32_math's slices) on
  /// `device`'s checksum stream, ordered after the producer like the copies
  /// but not behind them; they come back to pinned host memory on that
  /// stream.
  /// `shift_sub_slice` is crc32_shift(kSubSliceBytes). *ticket names them;
  /// 0 (and no error) when the memory for them could not be had: the host
  /// computes that CRC from the staged copy.
  std::string queue_checksum(const void* src, std::size_t bytes, int device, const std::uint32_t shift_sub_slice[32],
                             std::uint64_t* ticket);
  /// Waits for checksum `ticket` and hands over its slice CRCs and the bytes
  /// they cover; each ticket once.
  std::string checksum_result(std::uint64_t ticket, std::vector<std::uint32_t>* slice_crcs, std::size_t* bytes,
                              int* failed_device);
  /// Tickets whose device is still remembered: those since the last
  /// finish(), which forgets the rest (all landed), so that a writer's
  /// lifetime of copies does not grow this state.
  std::size_t tickets_tracked() const noexcept { return ticket_device_.size(); }

 private:
  struct Device;
  std::string device(int index, Device** out);
  std::string flush(Device& d);
  std::string mark(Device& d, std::uint64_t last_ticket);
  // Records an event on `stream` (default: d's copy stream).
  std::string record(Device& d, DeviceRuntime::Event* event, DeviceRuntime::Stream stream = nullptr);
  // Whether d can pack: sets up its scratch, item list and their events at
  // the first call; false, for good, when that memory cannot be had.
  bool packing(Device& d);

  DeviceRuntime& runtime_;
  std::vector<std::unique_ptr<Device>> devices_;
  Device* batching_ = nullptr;  // the device whose batch the last copy joined
  std::uint64_t next_ticket_ = 0;
  std::vector<int> ticket_device_;  // device of each ticket (-1: host), index = ticket - tickets_before_ - 1
  std::uint64_t tickets_before_ = 0;  // tickets up to this one landed before the last finish()
  struct PendingChecksum {
    int device;
    const std::uint32_t* slices;  // pinned host memory the slice CRCs land in
    std::size_t bytes;
    DeviceRuntime::Event done;    // recorded after their transfer
  };
  std::unordered_map<std::uint64_t, PendingChecksum> checksums_;
  std::uint64_t next_checksum_ticket_ = 0;
};

}  // namespace ckptw::detail
