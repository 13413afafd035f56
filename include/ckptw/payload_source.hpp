// PayloadSource: the bytes of one tensor storage produced while a file is
// written (Value::streamed_tensor). Torch-free, so that the writer's
// streaming code can call it without LibTorch headers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckptw/export.hpp"

namespace ckptw {

/// The bytes of one tensor storage, produced while the file is written rather
/// than held in memory (Value::streamed_tensor): a checkpoint assembled from
/// pieces elsewhere (ckptw.dcp.to_torch_save streams each tensor from its
/// shards) is written with no more memory than the ring's buffers.
class CKPTW_EXPORT PayloadSource {
 public:
  virtual ~PayloadSource() = default;
  /// Writes the storage's bytes [offset, offset + size) to `out`. The writer
  /// asks for the bytes once each, in increasing offset order, from the thread
  /// that writes the file, in pieces of at most one ring buffer. An exception
  /// fails the write, which then leaves nothing behind.
  virtual void read(std::uint64_t offset, void* out, std::size_t size) = 0;
};

}  // namespace ckptw
