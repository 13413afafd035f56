// The host memory tensors are captured into: page-aligned, allocated once per
// writer and reused by every capture, pinned (through the copy engine) when it
// is allocated, so pinning (about 0.4-1 s per GB) is paid once, not per
// checkpoint. It only grows, up to an optional budget.
#pragma once

#include <cstddef>

#include "stage/copy_engine.hpp"
#include "stage/host_pin.hpp"

namespace ckptw::detail {

class SnapshotArena {
 public:
  /// `budget_bytes`: the most it may grow to; 0 for no limit.
  explicit SnapshotArena(std::size_t budget_bytes) : budget_(budget_bytes) {}
  ~SnapshotArena();
  SnapshotArena(const SnapshotArena&) = delete;
  SnapshotArena& operator=(const SnapshotArena&) = delete;

  /// At least `bytes` of arena, pinned with `engine` under `device`
  /// (CopyEngine::pin; -1: the caller's current device). Reallocates (and
  /// re-pins) only when it must grow. Throws ckptw::UsageError beyond the
  /// budget, ckptw::Error when memory cannot be had.
  unsigned char* reserve(std::size_t bytes, CopyEngine& engine, int device = -1);

  /// The memory (nullptr until the first reserve), `capacity()` bytes.
  const unsigned char* data() const noexcept { return data_; }
  std::size_t capacity() const noexcept { return capacity_; }
  /// Whether reserve(bytes) stays within the budget.
  bool fits(std::size_t bytes) const noexcept { return budget_ == 0 || bytes <= budget_; }
  bool pinned() const noexcept { return pin_.held(); }
  /// Times the arena was (re)allocated, for tests and logs.
  unsigned allocations() const noexcept { return allocations_; }

 private:
  void release() noexcept;
  void pin(CopyEngine& engine, int device);

  const std::size_t budget_;
  unsigned char* data_ = nullptr;
  std::size_t capacity_ = 0;
  HostPin pin_;
  unsigned allocations_ = 0;
};

}  // namespace ckptw::detail
