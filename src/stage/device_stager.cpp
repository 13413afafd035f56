#include "stage/device_stager.hpp"

#include <algorithm>

#include "checksum/crc32_math.hpp"

namespace ckptw::detail {
namespace {

using Stream = DeviceRuntime::Stream;
using Event = DeviceRuntime::Event;

constexpr std::size_t kCrcChunkSlots = std::size_t{1} << 18;  // 1 MiB: the slices of 4 GiB


}  // namespace

struct DeviceStager::Device {
  DeviceRuntime* runtime = nullptr;
  int index = -1;
  Stream stream = nullptr;
  // The CRC kernels' own stream, made at the first checksum: they read the
  // producer's memory, not the copies', so they need not queue behind them.
  Stream crc_stream = nullptr;
  unsigned char* scratch = nullptr;  // device, kScratchBytes
  PackItem* items_device = nullptr;  // device, kMaxItems
  PackItem* items_host[2] = {};      // pinned, alternating between flushes
  Event items_free[2] = {};          // recorded after the upload from items_host[i]
  int next_host = 0;
  std::vector<PackItem> batch;          // pending packed copies
  std::uint64_t batch_last_ticket = 0;  // ticket of the batch's newest copy
  unsigned char* batch_base = nullptr;  // host address of scratch offset 0
  std::size_t batch_bytes = 0;          // host range covered so far
  struct Mark {
    std::uint64_t last_ticket;  // every copy of this device up to it is done when `event` is
    Event event;
  };
  std::deque<Mark> marks;                // in stream order
  std::uint64_t landed_through = 0;      // every copy of this device up to this ticket has landed
  bool packing_unavailable = false;      // the scratch could not be had: copy unpacked
  bool crc_ready = false;                // the CRC shift operator is on the device
  // Pinned host memory for slice CRCs, handed out in order and taken back
  // all at once by finish() (crc_chunk/crc_used: where the next one starts).
  std::vector<std::pair<std::uint32_t*, std::size_t>> crc_chunks;
  std::size_t crc_chunk = 0;
  std::size_t crc_used = 0;
  std::vector<Event> spare_events;

  ~Device() {
    ScopedDevice scope(*runtime, index);
    if (stream) (void)runtime->synchronize_stream(stream);
    if (crc_stream) (void)runtime->synchronize_stream(crc_stream);
    for (const Mark& m : marks) runtime->destroy_event(m.event);
    for (Event e : spare_events) runtime->destroy_event(e);
    for (const auto& chunk : crc_chunks) runtime->free_pinned(chunk.first);
    free_packing();
    if (stream) runtime->destroy_stream(stream);
    if (crc_stream) runtime->destroy_stream(crc_stream);
  }

  // The scratch, item lists and their events (what packing() sets up).
  void free_packing() {
    for (int i = 0; i < 2; ++i) {
      if (items_free[i]) runtime->destroy_event(items_free[i]);
      if (items_host[i]) runtime->free_pinned(items_host[i]);
      items_free[i] = nullptr;
      items_host[i] = nullptr;
    }
    if (items_device) runtime->free_device(items_device);
    if (scratch) runtime->free_device(scratch);
    items_device = nullptr;
    scratch = nullptr;
  }
};

DeviceStager::DeviceStager(DeviceRuntime& runtime) : runtime_(runtime) {}

DeviceStager::~DeviceStager() {
  // Events of checksums never taken go back to their device, which destroys them.
  for (const auto& [ticket, pending] : checksums_) devices_[pending.device]->spare_events.push_back(pending.done);
}

std::string DeviceStager::device(int index, Device** out) {
  if (index < 0) return "invalid device " + std::to_string(index);
  if (static_cast<std::size_t>(index) >= devices_.size()) devices_.resize(index + 1);
  if (!devices_[index]) {
    auto d = std::make_unique<Device>();
    d->runtime = &runtime_;
    d->index = index;
    ScopedDevice scope(runtime_, index);
    std::string e = scope.error();
    if (e.empty()) e = runtime_.create_stream(&d->stream);
    if (!e.empty()) return "setting up staging on cuda:" + std::to_string(index) + ": " + e;
    devices_[index] = std::move(d);
  }
  *out = devices_[index].get();
  return {};
}

bool DeviceStager::packing(Device& d) {
  if (d.scratch != nullptr) return true;
  if (d.packing_unavailable) return false;
  ScopedDevice scope(runtime_, d.index);
  std::string e = scope.error();
  if (e.empty()) e = runtime_.allocate_device(reinterpret_cast<void**>(&d.scratch), kScratchBytes);
  if (e.empty()) e = runtime_.allocate_device(reinterpret_cast<void**>(&d.items_device), kMaxItems * sizeof(PackItem));
  for (int i = 0; i < 2 && e.empty(); ++i) {
    e = runtime_.allocate_pinned(reinterpret_cast<void**>(&d.items_host[i]), kMaxItems * sizeof(PackItem));
    if (e.empty()) e = runtime_.create_event(&d.items_free[i]);
  }
  if (e.empty()) return true;
  // Nothing was queued with any of it yet: give back what was had.
  d.free_packing();
  d.packing_unavailable = true;
  return false;
}

// An event recorded now on d's stream (d's device current), from the spares when there are.
std::string DeviceStager::record(Device& d, Event* event, Stream stream) {
  std::string e;
  if (!d.spare_events.empty()) {
    *event = d.spare_events.back();
    d.spare_events.pop_back();
  } else {
    e = runtime_.create_event(event);
  }
  if (e.empty()) e = runtime_.record_event(*event, stream != nullptr ? stream : d.stream);
  if (!e.empty() && *event != nullptr) d.spare_events.push_back(*event);
  return e;
}

std::string DeviceStager::mark(Device& d, std::uint64_t last_ticket) {
  ScopedDevice scope(runtime_, d.index);
  Event event = nullptr;
  if (std::string e = record(d, &event); !e.empty()) return e;
  d.marks.push_back(Device::Mark{last_ticket, event});
  return {};
}

std::string DeviceStager::flush(Device& d) {
  if (batching_ == &d) batching_ = nullptr;
  if (d.batch.empty()) return {};
  ScopedDevice scope(runtime_, d.index);
  const int slot = d.next_host;
  d.next_host ^= 1;
  // The upload from this host buffer two flushes ago must be done before it is overwritten.
  std::string e = runtime_.synchronize_event(d.items_free[slot]);
  if (e.empty()) {
    std::copy(d.batch.begin(), d.batch.end(), d.items_host[slot]);
    e = runtime_.copy_to_device_async(d.items_device, d.items_host[slot], d.batch.size() * sizeof(PackItem), d.stream);
  }
  if (e.empty()) e = runtime_.record_event(d.items_free[slot], d.stream);
  if (e.empty()) e = runtime_.pack_async(d.items_device, static_cast<int>(d.batch.size()), d.scratch, d.stream);
  // Stream order: the next flush's pack writes the scratch only after this transfer read it.
  if (e.empty()) e = runtime_.copy_to_host_async(d.batch_base, d.scratch, d.batch_bytes, d.stream);
  const std::uint64_t last = d.batch_last_ticket;
  d.batch.clear();
  d.batch_base = nullptr;
  d.batch_bytes = 0;
  if (!e.empty()) return e;
  return mark(d, last);
}

std::string DeviceStager::wait_for_event(int index, void* event) {
  Device* d = nullptr;
  if (std::string error = device(index, &d); !error.empty()) return error;
  if (std::string error = flush(*d); !error.empty()) return error;
  ScopedDevice scope(runtime_, index);
  std::string e = runtime_.stream_wait_event(d->stream, event);
  if (e.empty() && d->crc_stream != nullptr) e = runtime_.stream_wait_event(d->crc_stream, event);
  return e;
}

std::uint64_t DeviceStager::host_ticket() {
  ticket_device_.push_back(-1);
  return ++next_ticket_;
}

std::string DeviceStager::copy_to_host(void* dst, const void* src, std::size_t bytes, int index,
                                       std::uint64_t* ticket) {
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
  if (bytes > kPackBelow || !packing(*d)) {
    if (std::string error = flush(*d); !error.empty()) return error;
    {
      ScopedDevice scope(runtime_, index);
      if (std::string e = runtime_.copy_to_host_async(dst, src, bytes, d->stream); !e.empty()) return e;
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

std::string DeviceStager::wait(std::uint64_t ticket, int* failed_device) {
  if (ticket == 0 || ticket > next_ticket_) return "unknown staging ticket " + std::to_string(ticket);
  if (ticket <= tickets_before_) {  // landed before the last finish()
    *failed_device = -1;
    return {};
  }
  const int index = ticket_device_[ticket - tickets_before_ - 1];
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
  ScopedDevice scope(runtime_, index);
  // Marks complete in stream order: wait for the first one covering the
  // ticket; it and every earlier one are done then.
  bool covered = false;
  while (!d.marks.empty() && !covered) {
    const Device::Mark m = d.marks.front();
    covered = m.last_ticket >= ticket;
    if (covered) {
      if (std::string e = runtime_.synchronize_event(m.event); !e.empty()) return e;
      d.landed_through = m.last_ticket;
    }
    d.marks.pop_front();
    d.spare_events.push_back(m.event);
  }
  // No mark covers a ticket whose copy failed to queue (that error was
  // returned then): it never lands.
  if (!covered) return "staging copy " + std::to_string(ticket) + " was never queued";
  *failed_device = -1;
  return {};
}

std::string DeviceStager::break_batches() {
  for (auto& d : devices_) {
    if (!d) continue;
    if (std::string error = flush(*d); !error.empty()) return error;
  }
  return {};
}

std::string DeviceStager::queue_checksum(const void* src, std::size_t bytes, int index,
                                         const std::uint32_t shift_sub_slice[32], std::uint64_t* ticket) {
  Device* d = nullptr;
  if (std::string error = device(index, &d); !error.empty()) return error;
  ScopedDevice scope(runtime_, index);
  if (d->crc_stream == nullptr) {
    // Ordered after the producer as the copies are: through an event on the
    // copy stream, which waits for it already (the copies queued so far come
    // with it, once; later producer waits reach both streams).
    Stream crc_stream = nullptr;
    if (std::string e = runtime_.create_stream(&crc_stream); !e.empty()) return e;
    d->crc_stream = crc_stream;
    Event after_producer = nullptr;
    if (std::string e = record(*d, &after_producer); !e.empty()) return e;
    std::string e = runtime_.stream_wait_event(d->crc_stream, after_producer);
    d->spare_events.push_back(after_producer);  // reusable once the wait is queued
    if (!e.empty()) return e;
  }
  if (!d->crc_ready) {
    if (std::string e = runtime_.prepare_crc32(shift_sub_slice, d->crc_stream); !e.empty()) return e;
    d->crc_ready = true;
  }
  const std::size_t count = crc32_math::part_count(bytes, crc32_math::kSliceBytes);
  // Pinned slots for the slice CRCs: the rest of the current chunk, else the
  // next chunk big enough, else a new one.
  while (d->crc_chunk < d->crc_chunks.size() && d->crc_chunks[d->crc_chunk].second - d->crc_used < count) {
    ++d->crc_chunk;
    d->crc_used = 0;
  }
  if (d->crc_chunk == d->crc_chunks.size()) {
    const std::size_t slots = std::max(kCrcChunkSlots, count);
    std::uint32_t* chunk = nullptr;
    if (!runtime_.allocate_pinned(reinterpret_cast<void**>(&chunk), slots * sizeof(std::uint32_t)).empty()) {
      *ticket = 0;  // no memory for the slice CRCs: the host computes this one
      return {};
    }
    d->crc_chunks.emplace_back(chunk, slots);
    d->crc_used = 0;
  }
  std::uint32_t* host = d->crc_chunks[d->crc_chunk].first + d->crc_used;
  d->crc_used += count;

  if (count > 0) {
    std::uint32_t* slices = nullptr;
    if (!runtime_.allocate_async(reinterpret_cast<void**>(&slices), count * sizeof(std::uint32_t), d->crc_stream)
             .empty()) {
      d->crc_used -= count;
      *ticket = 0;  // no device memory for the slice CRCs: the host computes this one
      return {};
    }
    std::string e = runtime_.crc32_slices_async(src, bytes, slices, d->crc_stream);
    if (e.empty()) e = runtime_.copy_to_host_async(host, slices, count * sizeof(std::uint32_t), d->crc_stream);
    runtime_.free_async(slices, d->crc_stream);
    if (!e.empty()) return e;
  }
  Event done = nullptr;
  if (std::string e = record(*d, &done, d->crc_stream); !e.empty()) return e;
  *ticket = ++next_checksum_ticket_;
  checksums_[*ticket] = PendingChecksum{index, host, bytes, done};
  return {};
}

std::string DeviceStager::checksum_result(std::uint64_t ticket, std::vector<std::uint32_t>* slice_crcs,
                                          std::size_t* bytes, int* failed_device) {
  auto it = checksums_.find(ticket);
  if (it == checksums_.end()) return "unknown checksum ticket " + std::to_string(ticket);
  const PendingChecksum pending = it->second;
  checksums_.erase(it);
  *failed_device = pending.device;
  Device& d = *devices_[pending.device];
  ScopedDevice scope(runtime_, pending.device);
  std::string e = runtime_.synchronize_event(pending.done);
  d.spare_events.push_back(pending.done);
  if (!e.empty()) return e;
  slice_crcs->assign(pending.slices, pending.slices + crc32_math::part_count(pending.bytes, crc32_math::kSliceBytes));
  *bytes = pending.bytes;
  *failed_device = -1;
  return {};
}

std::string DeviceStager::finish(int* failed_device) {
  for (auto& d : devices_) {
    if (!d) continue;
    *failed_device = d->index;
    if (std::string error = flush(*d); !error.empty()) return error;
    ScopedDevice scope(runtime_, d->index);
    if (std::string e = runtime_.synchronize_stream(d->stream); !e.empty()) return e;
    if (d->crc_stream != nullptr) {
      if (std::string e = runtime_.synchronize_stream(d->crc_stream); !e.empty()) return e;
    }
    for (const Device::Mark& m : d->marks) d->spare_events.push_back(m.event);
    d->marks.clear();
    d->landed_through = next_ticket_;
  }
  // Every stream is idle: checksums not taken (a failed write's) are
  // forgotten and their pinned slots reused from the start.
  for (const auto& [ticket, pending] : checksums_) devices_[pending.device]->spare_events.push_back(pending.done);
  checksums_.clear();
  for (auto& d : devices_) {
    if (!d) continue;
    d->crc_chunk = 0;
    d->crc_used = 0;
  }
  ticket_device_.clear();
  tickets_before_ = next_ticket_;
  *failed_device = -1;
  return {};
}

}  // namespace ckptw::detail
