#include "stage/device_upload.hpp"

#include <algorithm>
#include <cerrno>

#include "checksum/crc32.hpp"
#include "ckptw/error.hpp"

namespace ckptw::detail {
namespace {

constexpr std::uint64_t kPage = 4096;

std::uint64_t page_floor(std::uint64_t v) { return v / kPage * kPage; }
std::uint64_t page_ceil(std::uint64_t v) { return (v + kPage - 1) / kPage * kPage; }

// The pinned chunks, their events and the copy stream of one upload. The
// destructor waits for the stream before freeing, so no copy still in flight
// reads a freed chunk, whatever path left the upload.
class PinnedRing {
 public:
  PinnedRing(DeviceRuntime& runtime, const std::string& path, const UploadOptions& options)
      : runtime_(runtime), path_(path), chunk_bytes_(options.chunk_bytes) {
    try {
      check(runtime_.create_stream(&stream_), "create_stream");
      chunks_.resize(static_cast<std::size_t>(std::max(options.chunks, 1)));
      for (Chunk& c : chunks_) {
        check(runtime_.allocate_pinned(&c.allocation, chunk_bytes_ + kPage), "allocate_pinned");
        c.base = reinterpret_cast<unsigned char*>(page_ceil(reinterpret_cast<std::uintptr_t>(c.allocation)));
        check(runtime_.create_event(&c.done), "create_event");
      }
    } catch (...) {
      free_all();  // no destructor runs for a constructor that throws
      throw;
    }
  }
  ~PinnedRing() { free_all(); }
  PinnedRing(const PinnedRing&) = delete;
  PinnedRing& operator=(const PinnedRing&) = delete;

  /// The next chunk, once the copies out of its previous contents have run.
  unsigned char* acquire() {
    Chunk& c = chunks_[next_];
    if (c.pending) check(runtime_.synchronize_event(c.done), "synchronize_event");
    c.pending = false;
    return c.base;
  }
  /// The chunk acquire() returned last may be read into again once the
  /// copies queued since then have run.
  void release() {
    Chunk& c = chunks_[next_];
    check(runtime_.record_event(c.done, stream_), "record_event");
    c.pending = true;
    next_ = (next_ + 1) % chunks_.size();
  }
  void copy(void* device, const void* host, std::size_t bytes) {
    check(runtime_.copy_to_device_async(device, host, bytes, stream_), "copy_to_device_async");
  }
  void wait(DeviceRuntime::Event event) { check(runtime_.stream_wait_event(stream_, event), "stream_wait_event"); }
  void finish() { check(runtime_.synchronize_stream(stream_), "synchronize_stream"); }
  std::size_t chunk_bytes() const { return chunk_bytes_; }

 private:
  struct Chunk {
    void* allocation = nullptr;
    unsigned char* base = nullptr;  // page-aligned, chunk_bytes long
    DeviceRuntime::Event done = nullptr;
    bool pending = false;  // `done` recorded and not yet waited for
  };
  void check(const std::string& error, const char* call) const {
    if (!error.empty()) throw Error(std::string("loading onto the GPU: ") + call + ": " + error, path_);
  }
  // Frees what exists so far (a constructor that threw made only part of it).
  void free_all() noexcept {
    if (stream_ != nullptr) (void)runtime_.synchronize_stream(stream_);
    for (Chunk& c : chunks_) {
      if (c.done != nullptr) runtime_.destroy_event(c.done);
      if (c.allocation != nullptr) runtime_.free_pinned(c.allocation);
    }
    if (stream_ != nullptr) runtime_.destroy_stream(stream_);
  }

  DeviceRuntime& runtime_;
  const std::string& path_;
  const std::size_t chunk_bytes_;
  DeviceRuntime::Stream stream_ = nullptr;
  std::vector<Chunk> chunks_;
  std::size_t next_ = 0;
};

}  // namespace

void upload_to_device(DeviceRuntime& runtime, int device, const std::string& path, const ReadAt& read_at,
                      std::vector<UploadRecord>& records, const UploadOptions& options) {
  if (records.empty()) return;
  if (options.chunk_bytes == 0 || options.chunk_bytes % kPage != 0) {
    throw Error("upload chunk size " + std::to_string(options.chunk_bytes) + " is not a multiple of 4096", path);
  }
  // Every call below runs on `device`: on a ckptw thread the current device
  // is 0, and a stream or event made there would create its context.
  ScopedDevice on(runtime, device);
  if (!on.error().empty()) throw Error("loading onto the GPU: cannot use device " + std::to_string(device) + ": " + on.error(), path);
  PinnedRing ring(runtime, path, options);
  if (options.after != nullptr) ring.wait(options.after);

  std::size_t i = 0;
  while (i < records.size()) {
    // A run of records whose gaps are under a chunk is read as one range.
    std::uint64_t run_end = records[i].offset + records[i].bytes;
    std::size_t j = i + 1;
    while (j < records.size() && records[j].offset <= run_end + ring.chunk_bytes()) {
      run_end = std::max(run_end, records[j].offset + records[j].bytes);
      ++j;
    }
    const std::uint64_t aligned_end = page_ceil(run_end);
    std::size_t first = i;  // the first record of the run not yet wholly copied
    for (std::uint64_t pos = page_floor(records[i].offset); pos < aligned_end; pos += ring.chunk_bytes()) {
      unsigned char* chunk = ring.acquire();
      const std::size_t length = static_cast<std::size_t>(std::min<std::uint64_t>(ring.chunk_bytes(), aligned_end - pos));
      const std::size_t needed = static_cast<std::size_t>(std::min<std::uint64_t>(run_end - pos, length));
      const long n = read_at(chunk, length, pos, needed);
      if (n < 0) {
        throw IoError("read failed at offset " + std::to_string(pos) + " (loading onto the GPU)", path, "",
                      static_cast<int>(-n));
      }
      const std::uint64_t chunk_end = pos + length;
      for (std::size_t r = first; r < j && records[r].offset < chunk_end; ++r) {
        UploadRecord& rec = records[r];
        const std::uint64_t lo = std::max(rec.offset, pos);
        const std::uint64_t hi = std::min<std::uint64_t>(rec.offset + rec.bytes, chunk_end);
        if (lo >= hi) continue;
        const unsigned char* src = chunk + (lo - pos);
        if (options.crc) rec.crc32 = crc32_update(rec.crc32, src, static_cast<std::size_t>(hi - lo));
        ring.copy(static_cast<unsigned char*>(rec.device) + (lo - rec.offset), src, static_cast<std::size_t>(hi - lo));
      }
      while (first < j && records[first].offset + records[first].bytes <= chunk_end) ++first;
      ring.release();
    }
    i = j;
  }
  ring.finish();
}

}  // namespace ckptw::detail
