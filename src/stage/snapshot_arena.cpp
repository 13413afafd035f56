#include "stage/snapshot_arena.hpp"

#include <cerrno>

#include <sys/mman.h>

#include "ckptw/error.hpp"
#include "util/huge_pages.hpp"

namespace ckptw::detail {

SnapshotArena::~SnapshotArena() { release(); }

void SnapshotArena::release() noexcept {
  if (data_ == nullptr) return;
  pin_.release();
  ::munmap(data_, capacity_);
  data_ = nullptr;
  capacity_ = 0;
}

unsigned char* SnapshotArena::reserve(std::size_t bytes, CopyEngine& engine, int device) {
  if (!fits(bytes)) {
    throw UsageError("the state dict needs " + std::to_string(bytes) + " bytes of staging memory, more than "
                     "staging_budget_bytes (" + std::to_string(budget_) + ")");
  }
  if (bytes <= capacity_ && data_ != nullptr) {
    if (!pin_.held()) pin(engine, device);
    return data_;
  }
  release();
  std::size_t size = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (size == 0) size = kHugePageBytes;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw Error("cannot allocate " + std::to_string(size) + " bytes of staging memory", "", "", errno);
  advise_huge_pages(p, size);
  keep_out_of_forks(p, size);
  data_ = static_cast<unsigned char*>(p);
  capacity_ = size;
  ++allocations_;
  pin(engine, device);
  return data_;
}

void SnapshotArena::pin(CopyEngine& engine, int device) { (void)pin_.pin(engine, data_, capacity_, device); }

}  // namespace ckptw::detail
