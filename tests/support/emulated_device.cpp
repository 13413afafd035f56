#include "support/emulated_device.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "checksum/crc32_math.hpp"

namespace ckptw::testing {
namespace {

thread_local int current = 0;

std::string emulated_error(const char* op) { return std::string("emulated error in ") + op; }

}  // namespace

EmulatedDevice::~EmulatedDevice() {
  for (const auto& [memory, bytes] : allocations_) std::free(memory);
}

int EmulatedDevice::live_resources() const {
  return static_cast<int>(allocations_.size() + streams_.size() + events_.size());
}

int EmulatedDevice::host_registrations() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return host_registrations_;
}

int EmulatedDevice::host_unregistrations() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return host_unregistrations_;
}

std::size_t EmulatedDevice::pinned_bytes_peak() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return pinned_bytes_peak_;
}

bool EmulatedDevice::failing(const char* op) {
  if (fail_next_ != op) return false;
  fail_next_.clear();
  return true;
}

std::string EmulatedDevice::queue(Stream stream, const char* op, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (failing(op)) return emulated_error(op);
  auto* s = static_cast<StreamState*>(stream);
  s->work.push_back(std::move(work));
  ++s->queued;
  return {};
}

void EmulatedDevice::run_until(StreamState* stream, std::uint64_t position) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  while (stream->ran < position) {
    std::function<void()> work = std::move(stream->work.front());
    stream->work.pop_front();
    work();  // may wait on other streams (stream_wait_event)
    ++stream->ran;
  }
}

void* EmulatedDevice::allocate(std::size_t bytes, bool device) {
  const std::size_t size = (bytes + 255) / 256 * 256;
  void* memory = std::aligned_alloc(256, size == 0 ? 256 : size);
  if (device) std::memset(memory, kFiller, size);
  allocations_[memory] = bytes;
  return memory;
}

int EmulatedDevice::current_device() { return current; }

std::string EmulatedDevice::set_device(int device) {
  if (device < 0 || device >= devices_) return "invalid device " + std::to_string(device);
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  current = device;
  contexts_.insert(device);
  return {};
}

bool EmulatedDevice::has_context(int device) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return contexts_.count(device) != 0;
}

std::set<int> EmulatedDevice::contexts() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return contexts_;
}

void EmulatedDevice::use_current_device() { contexts_.insert(current); }

std::string EmulatedDevice::create_stream(Stream* stream) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  use_current_device();
  if (failing("create_stream")) return emulated_error("create_stream");
  auto s = std::make_unique<StreamState>();
  s->device = current;
  *stream = s.get();
  streams_[s.get()] = std::move(s);
  return {};
}

void EmulatedDevice::destroy_stream(Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto* s = static_cast<StreamState*>(stream);
  run_until(s, s->queued);  // CUDA finishes a destroyed stream's work
  streams_.erase(s);
}

std::string EmulatedDevice::synchronize_stream(Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (failing("synchronize_stream")) return emulated_error("synchronize_stream");
  auto* s = static_cast<StreamState*>(stream);
  run_until(s, s->queued);
  return {};
}

std::string EmulatedDevice::allocate_device(void** memory, std::size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  use_current_device();
  if (failing("allocate_device")) return emulated_error("allocate_device");
  *memory = allocate(bytes, true);
  return {};
}

void EmulatedDevice::free_device(void* memory) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  allocations_.erase(memory);
  std::free(memory);
}

std::string EmulatedDevice::allocate_pinned(void** memory, std::size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  use_current_device();
  if (failing("allocate_pinned")) return emulated_error("allocate_pinned");
  *memory = allocate(bytes, false);
  pinned_bytes_ += bytes;
  pinned_bytes_peak_ = std::max(pinned_bytes_peak_, pinned_bytes_);
  return {};
}

void EmulatedDevice::free_pinned(void* memory) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (auto it = allocations_.find(memory); it != allocations_.end()) pinned_bytes_ -= it->second;
  free_device(memory);
}

bool EmulatedDevice::register_host(void*, std::size_t) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (failing("register_host")) return false;
  use_current_device();  // cudaHostRegister needs a context: the current device's
  ++host_registrations_;
  return true;
}

void EmulatedDevice::unregister_host(void*) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  ++host_unregistrations_;
}

std::string EmulatedDevice::create_event(Event* event) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  use_current_device();
  if (failing("create_event")) return emulated_error("create_event");
  auto e = std::make_unique<EventState>();
  *event = e.get();
  events_[e.get()] = std::move(e);
  return {};
}

void EmulatedDevice::destroy_event(Event event) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  events_.erase(static_cast<EventState*>(event));
}

std::string EmulatedDevice::record_event(Event event, Stream stream) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (failing("record_event")) return emulated_error("record_event");
  auto* e = static_cast<EventState*>(event);
  auto* s = static_cast<StreamState*>(stream);
  e->stream = s;
  e->position = s->queued;
  return {};
}

std::string EmulatedDevice::synchronize_event(Event event) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (failing("synchronize_event")) return emulated_error("synchronize_event");
  auto* e = static_cast<EventState*>(event);
  if (e->stream != nullptr) run_until(e->stream, e->position);
  return {};
}

std::string EmulatedDevice::stream_wait_event(Stream stream, Event event) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto* e = static_cast<EventState*>(event);
  if (e->stream == nullptr) return {};
  StreamState* other = e->stream;
  const std::uint64_t position = e->position;  // the event as recorded now, as CUDA captures it
  return queue(stream, "stream_wait_event", [this, other, position] { run_until(other, position); });
}

std::string EmulatedDevice::copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream stream) {
  return queue(stream, "copy_to_host_async", [this, host, device, bytes] {
    std::memcpy(host, device, bytes);
    ++transfers_;
  });
}

std::string EmulatedDevice::copy_to_device_async(void* device, const void* host, std::size_t bytes, Stream stream) {
  return queue(stream, "copy_to_device_async", [device, host, bytes] { std::memcpy(device, host, bytes); });
}

std::string EmulatedDevice::pack_async(const detail::PackItem* items, int count, unsigned char* scratch,
                                       Stream stream) {
  return queue(stream, "pack_async", [this, items, count, scratch] {
    constexpr unsigned kThreads = 256;  // as the kernel's blocks
    for (int i = 0; i < count; ++i) {
      for (unsigned thread = 0; thread < kThreads; ++thread) detail::pack_item_part(items[i], scratch, thread, kThreads);
    }
    ++packs_;
  });
}

std::string EmulatedDevice::allocate_async(void** memory, std::size_t bytes, Stream) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  use_current_device();
  if (failing("allocate_async")) return emulated_error("allocate_async");
  *memory = allocate(bytes, true);
  return {};
}

void EmulatedDevice::free_async(void* memory, Stream stream) {
  (void)queue(stream, "free_async", [this, memory] { free_device(memory); });
}

std::string EmulatedDevice::prepare_crc32(const std::uint32_t shift_sub_slice[32], Stream stream) {
  const int device = static_cast<StreamState*>(stream)->device;
  return queue(stream, "prepare_crc32", [this, device, shift_sub_slice] {
    std::copy(shift_sub_slice, shift_sub_slice + 32, crc_shift_[device].begin());
  });
}

std::string EmulatedDevice::crc32_slices_async(const void* data, std::size_t bytes, std::uint32_t* slice_crcs,
                                               Stream stream) {
  const int device = static_cast<StreamState*>(stream)->device;
  return queue(stream, "crc32_slices_async", [this, device, data, bytes, slice_crcs] {
    namespace m = detail::crc32_math;
    // Fails (std::map::at) when prepare_crc32 did not run first on this device, as the kernel would read zeros.
    const std::array<std::uint32_t, 32>& shift = crc_shift_.at(device);
    std::uint32_t table[256];
    for (std::uint32_t i = 0; i < 256; ++i) table[i] = m::table_entry(i);
    const auto* p = static_cast<const unsigned char*>(data);
    // The kernel's steps, its threads one after the other: every thread
    // stages its part of the slice, then each computes its sub-slice's CRC.
    alignas(16) static thread_local unsigned char staged[m::kStagedSliceBytes];
    for (std::uint64_t block = 0; block < m::part_count(bytes, m::kSliceBytes); ++block) {
      std::memset(staged, kFiller, sizeof staged);  // what a read of an unstaged byte would see
      for (unsigned thread = 0; thread < m::kThreadsPerSlice; ++thread) {
        m::stage_slice_part(p, bytes, block, staged, thread, m::kThreadsPerSlice);
      }
      std::uint32_t sub_crc[m::kThreadsPerSlice];
      for (std::uint64_t thread = 0; thread < m::sub_slice_count(bytes, block); ++thread) {
        sub_crc[thread] = m::staged_sub_slice_crc(staged, bytes, block, thread, table);
      }
      slice_crcs[block] = m::join_sub_slices(sub_crc, bytes, block, shift.data());
    }
    ++crc_kernels_;
  });
}

}  // namespace ckptw::testing
