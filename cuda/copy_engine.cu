#include "copy_engine.cuh"

#include "crc32.cuh"

#include <algorithm>
#include <cstdint>
#include <deque>

#include <cuda_runtime.h>

namespace ckptw::detail::cuda {
namespace {

struct PackItem {
  const unsigned char* src;
  unsigned long long offset;  // in the scratch region
  unsigned long long bytes;
};

constexpr int kMaxItems = 16384;

// One block per item (grid-stride): 16-byte moves when source, destination
// and size allow, bytes otherwise.
__global__ void pack_kernel(const PackItem* items, int count, unsigned char* scratch) {
  for (int i = blockIdx.x; i < count; i += gridDim.x) {
    const PackItem item = items[i];
    unsigned char* dst = scratch + item.offset;
    const auto bits = reinterpret_cast<std::uintptr_t>(item.src) | reinterpret_cast<std::uintptr_t>(dst) | item.bytes;
    if ((bits & 15) == 0) {
      const uint4* s = reinterpret_cast<const uint4*>(item.src);
      uint4* d = reinterpret_cast<uint4*>(dst);
      for (unsigned long long k = threadIdx.x; k < item.bytes / 16; k += blockDim.x) d[k] = s[k];
    } else {
      for (unsigned long long k = threadIdx.x; k < item.bytes; k += blockDim.x) dst[k] = item.src[k];
    }
  }
}

std::string describe(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    error_ = cudaSetDevice(device);
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

}  // namespace

bool host_register(void* data, std::size_t bytes) noexcept {
  // Portable: pinned for every device's context, not only the current one,
  // so copies from tensors on any GPU into it run at pinned speed.
  if (cudaHostRegister(data, bytes, cudaHostRegisterPortable) == cudaSuccess) return true;
  (void)cudaGetLastError();
  return false;
}

void host_unregister(void* data) noexcept {
  if (cudaHostUnregister(data) != cudaSuccess) (void)cudaGetLastError();
}

struct Stager::Device {
  int index = -1;
  cudaStream_t stream = nullptr;
  unsigned char* scratch = nullptr;       // device, kScratchBytes
  PackItem* items_device = nullptr;       // device, kMaxItems
  PackItem* items_host[2] = {};           // pinned, alternating between flushes
  cudaEvent_t items_free[2] = {};         // recorded after the upload from items_host[i]
  int next_host = 0;
  std::vector<PackItem> batch;            // pending packed copies
  std::uint64_t batch_last_ticket = 0;    // ticket of the batch's newest copy
  unsigned char* batch_base = nullptr;    // host address of scratch offset 0
  std::size_t batch_bytes = 0;            // host range covered so far
  struct Mark {
    std::uint64_t last_ticket;  // every copy of this device up to it is done when `event` is
    cudaEvent_t event;
  };
  bool crc_ready = false;                 // the CRC shift operator is on the device
  // Pinned host memory for slice CRCs, handed out in order and taken back
  // all at once by finish() (crc_chunk/crc_used: where the next one starts).
  std::vector<std::pair<std::uint32_t*, std::size_t>> crc_chunks;
  std::size_t crc_chunk = 0;
  std::size_t crc_used = 0;
  std::deque<Mark> marks;                 // in stream order
  std::uint64_t landed_through = 0;       // every copy of this device up to this ticket has landed
  std::vector<cudaEvent_t> spare_events;

  ~Device() {
    DeviceScope scope(index);
    if (stream) cudaStreamSynchronize(stream);
    for (const Mark& m : marks) cudaEventDestroy(m.event);
    for (cudaEvent_t e : spare_events) cudaEventDestroy(e);
    for (const auto& chunk : crc_chunks) cudaFreeHost(chunk.first);
    for (int i = 0; i < 2; ++i) {
      if (items_free[i]) cudaEventDestroy(items_free[i]);
      if (items_host[i]) cudaFreeHost(items_host[i]);
    }
    if (items_device) cudaFree(items_device);
    if (scratch) cudaFree(scratch);
    if (stream) cudaStreamDestroy(stream);
  }
};

Stager::Stager() = default;

Stager::~Stager() {
  // Events of checksums never taken go back to their device, which destroys them.
  for (const auto& [ticket, pending] : checksums_) {
    devices_[pending.device]->spare_events.push_back(static_cast<cudaEvent_t>(pending.done));
  }
}

std::string Stager::device(int index, Device** out) {
  if (index < 0) return "invalid device " + std::to_string(index);
  if (static_cast<std::size_t>(index) >= devices_.size()) devices_.resize(index + 1);
  if (!devices_[index]) {
    auto d = std::make_unique<Device>();
    d->index = index;
    DeviceScope scope(index);
    cudaError_t e = scope.error();
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&d->scratch), kScratchBytes);
    if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&d->items_device), kMaxItems * sizeof(PackItem));
    for (int i = 0; i < 2 && e == cudaSuccess; ++i) {
      e = cudaMallocHost(reinterpret_cast<void**>(&d->items_host[i]), kMaxItems * sizeof(PackItem));
      if (e == cudaSuccess) e = cudaEventCreateWithFlags(&d->items_free[i], cudaEventDisableTiming);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return "setting up staging on cuda:" + std::to_string(index) + ": " + describe(e);
    }
    devices_[index] = std::move(d);
  }
  *out = devices_[index].get();
  return {};
}

namespace {

// An event recorded now on `d`'s stream (the current device must be d's).
cudaError_t record_event(std::vector<cudaEvent_t>& spare_events, cudaStream_t stream, cudaEvent_t* event) {
  cudaError_t e = cudaSuccess;
  if (!spare_events.empty()) {
    *event = spare_events.back();
    spare_events.pop_back();
  } else {
    e = cudaEventCreateWithFlags(event, cudaEventDisableTiming);
  }
  if (e == cudaSuccess) e = cudaEventRecord(*event, stream);
  return e;
}

constexpr std::size_t kCrcChunkSlots = std::size_t{1} << 18;  // 1 MiB: the slices of 4 GiB

}  // namespace

std::string Stager::mark(Device& d, std::uint64_t last_ticket) {
  DeviceScope scope(d.index);
  cudaEvent_t event = nullptr;
  if (cudaError_t e = record_event(d.spare_events, d.stream, &event); e != cudaSuccess) return describe(e);
  d.marks.push_back(Device::Mark{last_ticket, event});
  return {};
}

std::string Stager::flush(Device& d) {
  if (batching_ == &d) batching_ = nullptr;
  if (d.batch.empty()) return {};
  DeviceScope scope(d.index);
  const int slot = d.next_host;
  d.next_host ^= 1;
  // The upload from this host buffer two flushes ago must be done before it is overwritten.
  cudaError_t e = cudaEventSynchronize(d.items_free[slot]);
  if (e == cudaSuccess) {
    std::copy(d.batch.begin(), d.batch.end(), d.items_host[slot]);
    e = cudaMemcpyAsync(d.items_device, d.items_host[slot], d.batch.size() * sizeof(PackItem),
                        cudaMemcpyHostToDevice, d.stream);
  }
  if (e == cudaSuccess) e = cudaEventRecord(d.items_free[slot], d.stream);
  if (e == cudaSuccess) {
    const int blocks = static_cast<int>(d.batch.size() < 4096 ? d.batch.size() : 4096);
    pack_kernel<<<blocks, 256, 0, d.stream>>>(d.items_device, static_cast<int>(d.batch.size()), d.scratch);
    e = cudaGetLastError();
  }
  // Stream order: the next flush's kernel writes the scratch only after this transfer read it.
  if (e == cudaSuccess) e = cudaMemcpyAsync(d.batch_base, d.scratch, d.batch_bytes, cudaMemcpyDeviceToHost, d.stream);
  const std::uint64_t last = d.batch_last_ticket;
  d.batch.clear();
  d.batch_base = nullptr;
  d.batch_bytes = 0;
  if (e != cudaSuccess) return describe(e);
  return mark(d, last);
}

std::string Stager::wait_for_event(int index, void* event) {
  Device* d = nullptr;
  if (std::string error = device(index, &d); !error.empty()) return error;
  if (std::string error = flush(*d); !error.empty()) return error;
  DeviceScope scope(index);
  cudaError_t e = cudaStreamWaitEvent(d->stream, static_cast<cudaEvent_t>(event), 0);
  return e == cudaSuccess ? std::string() : describe(e);
}

std::uint64_t Stager::host_ticket() {
  ticket_device_.push_back(-1);
  return ++next_ticket_;
}

std::string Stager::copy_to_host(void* dst, const void* src, std::size_t bytes, int index, std::uint64_t* ticket) {
  if (bytes == 0) {  // nothing to move; a mark here would overtake a pending batch
    *ticket = host_ticket();
    return {};
  }
  Device* d = nullptr;
  if (std::string error = device(index, &d); !error.empty()) return error;
  *ticket = ++next_ticket_;
  ticket_device_.push_back(index);
  auto* host = static_cast<unsigned char*>(dst);
  if (batching_ && batching_ != d) {
    if (std::string error = flush(*batching_); !error.empty()) return error;
  }
  if (bytes > kPackBelow) {
    if (std::string error = flush(*d); !error.empty()) return error;
    {
      DeviceScope scope(index);
      cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, d->stream);
      if (e != cudaSuccess) return describe(e);
    }
    return mark(*d, *ticket);
  }
  // Join the batch if this copy continues it (increasing addresses, the
  // padding between them small, the scratch and item list not full).
  if (!d->batch.empty()) {
    const unsigned char* end = d->batch_base + d->batch_bytes;
    const bool continues = host >= end && host - end <= 4096 &&
                           static_cast<std::size_t>(host + bytes - d->batch_base) <= kScratchBytes &&
                           d->batch.size() < static_cast<std::size_t>(kMaxItems);
    if (!continues) {
      if (std::string error = flush(*d); !error.empty()) return error;
    }
  }
  if (d->batch.empty()) d->batch_base = host;
  d->batch.push_back(PackItem{static_cast<const unsigned char*>(src),
                              static_cast<unsigned long long>(host - d->batch_base), bytes});
  d->batch_bytes = static_cast<std::size_t>(host + bytes - d->batch_base);
  d->batch_last_ticket = *ticket;
  batching_ = d;
  return {};
}

std::string Stager::wait(std::uint64_t ticket, int* failed_device) {
  if (ticket == 0 || ticket > ticket_device_.size()) return "unknown staging ticket " + std::to_string(ticket);
  const int index = ticket_device_[ticket - 1];
  *failed_device = index;
  if (index < 0) return {};  // copied on the host
  Device& d = *devices_[index];
  // A mark covers every earlier copy of its device: a packed batch's copies
  // after the first are already known to have landed.
  if (ticket <= d.landed_through) {
    *failed_device = -1;
    return {};
  }
  if (!d.batch.empty() && ticket <= d.batch_last_ticket) {
    if (std::string error = flush(d); !error.empty()) return error;
  }
  DeviceScope scope(index);
  // Marks complete in stream order: wait for the first one covering the
  // ticket; it and every earlier one are done then.
  while (!d.marks.empty()) {
    const Device::Mark m = d.marks.front();
    if (m.last_ticket >= ticket) {
      cudaError_t e = cudaEventSynchronize(m.event);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return describe(e);
      }
      d.landed_through = m.last_ticket;
    }
    d.marks.pop_front();
    d.spare_events.push_back(m.event);
    if (m.last_ticket >= ticket) break;
  }
  *failed_device = -1;
  return {};
}

std::string Stager::break_batches() {
  for (auto& d : devices_) {
    if (!d) continue;
    if (std::string error = flush(*d); !error.empty()) return error;
  }
  return {};
}

std::string Stager::queue_checksum(const void* src, std::size_t bytes, int index, const std::uint32_t shift_128[32],
                                   std::uint64_t* ticket) {
  Device* d = nullptr;
  if (std::string error = device(index, &d); !error.empty()) return error;
  DeviceScope scope(index);
  if (!d->crc_ready) {
    if (std::string error = crc32_prepare_device(shift_128, d->stream); !error.empty()) return error;
    d->crc_ready = true;
  }
  const std::size_t count = crc32_slice_count(bytes);
  // Pinned slots for the slice CRCs: the rest of the current chunk, else the
  // next chunk big enough, else a new one.
  while (d->crc_chunk < d->crc_chunks.size() && d->crc_chunks[d->crc_chunk].second - d->crc_used < count) {
    ++d->crc_chunk;
    d->crc_used = 0;
  }
  cudaError_t e = cudaSuccess;
  if (d->crc_chunk == d->crc_chunks.size()) {
    const std::size_t slots = std::max(kCrcChunkSlots, count);
    std::uint32_t* chunk = nullptr;
    e = cudaMallocHost(reinterpret_cast<void**>(&chunk), slots * sizeof(std::uint32_t));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return describe(e);
    }
    d->crc_chunks.emplace_back(chunk, slots);
    d->crc_used = 0;
  }
  std::uint32_t* host = d->crc_chunks[d->crc_chunk].first + d->crc_used;
  d->crc_used += count;

  std::uint32_t* slices = nullptr;
  if (count > 0) {
    e = cudaMallocAsync(reinterpret_cast<void**>(&slices), count * sizeof(std::uint32_t), d->stream);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return describe(e);
    }
    std::string error = crc32_queue_slices(src, bytes, slices, d->stream);
    if (error.empty()) {
      e = cudaMemcpyAsync(host, slices, count * sizeof(std::uint32_t), cudaMemcpyDeviceToHost, d->stream);
      if (e != cudaSuccess) error = describe(e);
    }
    (void)cudaFreeAsync(slices, d->stream);
    if (!error.empty()) {
      (void)cudaGetLastError();
      return error;
    }
  }
  cudaEvent_t done = nullptr;
  if (e = record_event(d->spare_events, d->stream, &done); e != cudaSuccess) return describe(e);
  *ticket = ++next_checksum_ticket_;
  checksums_[*ticket] = PendingChecksum{index, host, bytes, done};
  return {};
}

std::string Stager::checksum_result(std::uint64_t ticket, std::vector<std::uint32_t>* slice_crcs, std::size_t* bytes,
                                    int* failed_device) {
  auto it = checksums_.find(ticket);
  if (it == checksums_.end()) return "unknown checksum ticket " + std::to_string(ticket);
  const PendingChecksum pending = it->second;
  checksums_.erase(it);
  *failed_device = pending.device;
  Device& d = *devices_[pending.device];
  DeviceScope scope(pending.device);
  auto event = static_cast<cudaEvent_t>(pending.done);
  cudaError_t e = cudaEventSynchronize(event);
  d.spare_events.push_back(event);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return describe(e);
  }
  slice_crcs->assign(pending.slices, pending.slices + crc32_slice_count(pending.bytes));
  *bytes = pending.bytes;
  *failed_device = -1;
  return {};
}

std::string Stager::finish(int* failed_device) {
  for (auto& d : devices_) {
    if (!d) continue;
    *failed_device = d->index;
    if (std::string error = flush(*d); !error.empty()) return error;
    DeviceScope scope(d->index);
    cudaError_t e = cudaStreamSynchronize(d->stream);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return describe(e);
    }
    for (const Device::Mark& m : d->marks) d->spare_events.push_back(m.event);
    d->marks.clear();
    d->landed_through = next_ticket_;
  }
  // Every stream is idle: checksums not taken (a failed write's) are
  // forgotten and their pinned slots reused from the start.
  for (const auto& [ticket, pending] : checksums_) {
    devices_[pending.device]->spare_events.push_back(static_cast<cudaEvent_t>(pending.done));
  }
  checksums_.clear();
  for (auto& d : devices_) {
    if (!d) continue;
    d->crc_chunk = 0;
    d->crc_used = 0;
  }
  *failed_device = -1;
  return {};
}

}  // namespace ckptw::detail::cuda
