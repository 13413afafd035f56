// HostPin: a range of host memory page-locked through a copy engine
// (CopyEngine::pin) for as long as the HostPin holds it. Its owner releases
// it before freeing the memory (cudaHostUnregister must come before the
// range is unmapped) and while the engine that pinned it is alive.
#pragma once

#include <cstddef>

#include "stage/copy_engine.hpp"

namespace ckptw::detail {

class HostPin {
 public:
  HostPin() = default;
  ~HostPin() { release(); }
  HostPin(const HostPin&) = delete;
  HostPin& operator=(const HostPin&) = delete;

  /// Page-locks [data, data + bytes) with `engine` under `device`, after
  /// releasing what it held. False, holding nothing, when refused (copies
  /// into the range still work, slower).
  bool pin(CopyEngine& engine, void* data, std::size_t bytes, int device) {
    release();
    if (!engine.pin(data, bytes, device)) return false;
    engine_ = &engine;
    data_ = data;
    device_ = device;
    return true;
  }

  void release() noexcept {
    if (engine_ != nullptr) engine_->unpin(data_, device_);
    engine_ = nullptr;
    data_ = nullptr;
    device_ = -1;
  }

  bool held() const noexcept { return engine_ != nullptr; }

 private:
  CopyEngine* engine_ = nullptr;
  void* data_ = nullptr;
  int device_ = -1;  // the device pin() was given, for unpin()
};

}  // namespace ckptw::detail
