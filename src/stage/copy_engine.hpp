// CopyEngine: the seam between staging and whatever moves tensor bytes into
// host memory. The device engine (stage/device_stager.hpp, on CUDA through
// cuda/cuda_device_runtime.cu) copies device memory on its own non-default stream
// per device, ordered after the producer's stream, packing small storages
// into one transfer; the host engine copies host memory on a worker thread.
// Both run in CI without a GPU: the device engine over an emulated runtime.
//
// Contract: copy_to_host() only queues and returns the copy's ticket; its
// destination may be read, and its source changed, only after wait(ticket)
// or finish() returned. Used from one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace ckptw::detail {

class CopyEngine {
 public:
  virtual ~CopyEngine() = default;
  virtual const char* name() const = 0;

  /// Makes host memory [data, data + bytes) fast and safe for device copies
  /// (page-locks it). False when refused; copies still work, slower.
  /// `device`: the device current while registering (cudaHostRegister needs
  /// a context and makes the current device's), the one the copies will
  /// come from; -1: the calling thread's current device. unpin() takes the
  /// same device.
  virtual bool pin(void* data, std::size_t bytes, int device) = 0;
  virtual void unpin(void* data, int device) noexcept = 0;

  /// Orders the copies from `device` queued after this call after the work
  /// behind `producer_event` (an event recorded on the producer's stream;
  /// opaque here, a cudaEvent_t for CUDA).
  virtual void wait_for_producer(int device, void* producer_event) = 0;

  /// Queues a copy of `bytes` from `src` into host memory `dst`. `device` is
  /// the CUDA device holding `src`, or -1 for host memory. Returns the copy's
  /// ticket: increasing, never 0.
  virtual std::uint64_t copy_to_host(void* dst, const void* src, std::size_t bytes, int device) = 0;

  /// Blocks until the copy with `ticket` has landed (one event per copy or
  /// packed batch, not the whole queue), so its bytes can be written while
  /// later copies are still in flight. Throws like finish().
  virtual void wait(std::uint64_t ticket) = 0;

  /// Queues the CRC-32 of `bytes` of memory on `device`, computed there
  /// (ordered like the copies, after the producer), so the host need not
  /// read the bytes. Returns a ticket for device_crc32_result(), or 0 when
  /// this engine cannot (the host engine).
  virtual std::uint64_t queue_device_crc32(const void* src, std::size_t bytes, int device) {
    (void)src, (void)bytes, (void)device;
    return 0;
  }
  /// The CRC-32 queued under `ticket`, once computed; each ticket once, and
  /// before the next finish().
  virtual std::uint32_t device_crc32_result(std::uint64_t ticket);

  /// Blocks until every queued copy has landed; device CRC-32s not yet taken
  /// are forgotten. Throws ckptw::Error naming the device when a copy failed;
  /// the engine is usable again afterwards.
  virtual void finish() = 0;
};

/// Finishes `engine` (when set) on leaving a scope: copies still in flight
/// when a write ends, by a failure too, land before the memory they read or
/// write is used again. A failure there is the write's own failure's echo,
/// and is dropped.
struct FinishCopiesOnExit {
  CopyEngine* engine = nullptr;
  ~FinishCopiesOnExit() {
    try {
      if (engine) engine->finish();
    } catch (...) {
    }
  }
};

/// Host memory only: memcpy on a worker thread. `delay_per_copy` slows every
/// copy down (tests use it to show nothing reads a copy before finish()).
std::unique_ptr<CopyEngine> make_host_copy_engine(std::chrono::microseconds delay_per_copy = {});

class DeviceRuntime;
/// Device memory through `runtime` (stage/device_stager.hpp), which must
/// outlive the engine; host memory copied on the caller's thread.
std::unique_ptr<CopyEngine> make_device_copy_engine(DeviceRuntime& runtime, const char* name);

/// The device engine on CUDA when ckptw was built with CUDA and a device is
/// visible; otherwise the host engine.
std::unique_ptr<CopyEngine> make_copy_engine();

}  // namespace ckptw::detail
