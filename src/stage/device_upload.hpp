// upload_to_device: the reader's counterpart of staging. File records bound
// for a GPU are read into a small ring of pinned chunks and each chunk is
// copied to device memory as soon as it is read, so the pinned memory a load
// holds is chunks x chunk_bytes whatever the checkpoint's size, the bound
// the writer keeps for its staging. (One pinned buffer per storage, held to
// the end, would pin about twice the checkpoint: torch's caching host
// allocator rounds every request up to a power of two.)
//
// Reads go to the disk while earlier chunks' copies run: a chunk is read into
// again only once its previous copy's event completed. Records closer together
// than a chunk share reads, so thousands of small storages cost a few large
// reads, not one per storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "stage/device_runtime.hpp"

namespace ckptw::detail {

struct UploadRecord {
  std::uint64_t offset;  // of its bytes in the file
  std::size_t bytes;
  void* device;          // destination: `bytes` of device memory
  std::uint32_t crc32 = 0;  // out: CRC-32 of the bytes read (with UploadOptions::crc)
};

/// Reads [offset, offset + size) of the file into `data`; returns the bytes
/// read or -errno, and may stop early only at the end of the file, after at
/// least `min_size` bytes (IoBackend::read_at's contract). `data`, `offset`
/// and `size` are multiples of 4096, so an O_DIRECT descriptor serves it.
using ReadAt = std::function<long(void* data, std::size_t size, std::uint64_t offset, std::size_t min_size)>;

struct UploadOptions {
  std::size_t chunk_bytes = std::size_t{16} << 20;  // a multiple of 4096
  int chunks = 4;
  bool crc = true;
  /// An event recorded on the stream that owns the destination memory (the
  /// caching allocator may hand out a block that stream's earlier work still
  /// uses); the copies wait for it. nullptr: none.
  DeviceRuntime::Event after = nullptr;
};

/// Copies every record, sorted by offset and not overlapping, from the file
/// to its destination on `device`, and returns once every copy has landed.
/// Throws IoError (errno) when a read fails or the file ends inside a record,
/// ckptw::Error when a device call fails; each names `path`. Every pinned
/// chunk, stream and event is released before it returns or throws.
void upload_to_device(DeviceRuntime& runtime, int device, const std::string& path, const ReadAt& read_at,
                      std::vector<UploadRecord>& records, const UploadOptions& options = UploadOptions());

}  // namespace ckptw::detail
