#include "stage/stage_records.hpp"

#include <set>

#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "ckptw/error.hpp"
#include "ckptw/payload_source.hpp"

namespace ckptw::detail {
namespace {

// Small payloads pack tightly (64-byte steps, as in the file); large ones
// start on a page, the unit of O_DIRECT and of fast copies.
std::uint64_t align_for(std::uint64_t offset, std::uint64_t size) {
  const std::uint64_t a = size >= 4096 ? 4096 : 64;
  return (offset + a - 1) / a * a;
}

// Each device's copies queued from now on wait for what the producer already
// queued on the device's current stream (the stream the caller's kernels ran
// on), never for the whole device.
void order_after_producers(const std::set<int>& devices, CopyEngine& engine) {
  for (int device : devices) {
    const c10::Device d(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
    // Declared before the event, so destroyed after it: c10::Event makes and
    // destroys its CUDA event under the stream's device and then sets the
    // previous device back with a plain set-device, which on a thread whose
    // current device is 0 (ckptw's own, or a rank that never called
    // set_device) would create a context on GPU 0. With the guard, the
    // previous device is `d` itself.
    const c10::DeviceGuard on_device(d);
    const c10::Stream producer = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(d);
    c10::Event event(c10::DeviceType::CUDA);
    event.record(producer);
    engine.wait_for_producer(device, event.eventId());
  }
}

// A device storage's bytes, copied by the engine piece by piece as the
// streamer asks for them, each straight into the ring buffer it gives.
class DeviceStorageSource final : public PayloadSource {
 public:
  DeviceStorageSource(CopyEngine& engine, const unsigned char* data, int device)
      : engine_(engine), data_(data), device_(device) {}

  void read(std::uint64_t offset, void* out, std::size_t size) override {
    engine_.wait(engine_.copy_to_host(out, data_ + offset, size, device_));
  }

 private:
  CopyEngine& engine_;
  const unsigned char* data_;
  int device_;
};

}  // namespace

bool stream_device_records(FilePlan& plan, CopyEngine& engine, const StageOptions& options) {
  std::set<int> devices;
  for (PlannedRecord& r : plan.records) {
    if (r.device < 0 || r.data == nullptr || r.size == 0) continue;
    devices.insert(r.device);
    auto source = std::make_shared<DeviceStorageSource>(engine, r.data, r.device);
    r.source = source.get();
    plan.keep_alive.push_back(std::move(source));
    r.data = nullptr;
    r.device = -1;
  }
  if (options.order_after_producers) order_after_producers(devices, engine);
  return !devices.empty();
}

Staging stage_records(FilePlan& plan, StageWhat what, SnapshotArena& arena, CopyEngine& engine,
                      const StageOptions& options) {
  std::uint64_t host_bytes = 0;
  std::uint64_t device_bytes = 0;
  bool streamed = false;  // a payload produced only while the file is written cannot sit in an image
  for (const PlannedRecord& r : plan.records) {
    if (r.source != nullptr) {
      if (what == StageWhat::kAllRecords) {
        throw UsageError("write_async cannot capture a streamed tensor (" + r.name +
                         "): its bytes exist only while the file is written; save it with write() or save()");
      }
      streamed = true;
    }
    if (r.data == nullptr || r.is_serialization_id) continue;
    (r.device >= 0 ? device_bytes : host_bytes) += r.size;
  }
  const std::uint64_t image_bytes = (plan.file_size + 4095) / 4096 * 4096;  // the O_DIRECT tail is padded to a block
  const bool image = what == StageWhat::kAllRecords || (device_bytes > 0 && !streamed &&
                                                        host_bytes <= options.image_host_bytes && arena.fits(image_bytes));
  std::vector<std::size_t> chosen;  // record indexes
  std::uint64_t end = 0;
  std::vector<std::uint64_t> offsets;
  for (std::size_t i = 0; i < plan.records.size(); ++i) {
    const PlannedRecord& r = plan.records[i];
    if (r.size == 0 || r.data == nullptr || r.is_serialization_id) continue;
    if (!image && r.device < 0) continue;
    const std::uint64_t offset = image ? r.payload_offset : align_for(end, r.size);
    chosen.push_back(i);
    offsets.push_back(offset);
    end = offset + r.size;
  }
  Staging staging;
  if (image) {
    end = image_bytes;
  } else if (chosen.empty()) {
    return staging;
  }
  std::set<int> devices;
  for (std::size_t i : chosen) {
    if (plan.records[i].device >= 0) devices.insert(plan.records[i].device);
  }
  // Pinned under a device the copies come from: under the thread's current
  // one, cudaHostRegister would make a context on a GPU the rank never uses.
  unsigned char* base = arena.reserve(end, engine, devices.empty() ? -1 : *devices.begin());
  if (image) staging.image = base;
  staging.records.resize(plan.records.size());

  if (options.order_after_producers) order_after_producers(devices, engine);
  for (std::size_t k = 0; k < chosen.size(); ++k) {
    PlannedRecord& r = plan.records[chosen[k]];
    StagedRecord& staged = staging.records[chosen[k]];
    if (options.checksum_on_device && r.device >= 0 && r.size >= options.device_checksum_min_bytes) {
      staged.crc32_ticket = engine.queue_device_crc32(r.data, r.size, r.device);
    }
    staged.copy_ticket = engine.copy_to_host(base + offsets[k], r.data, r.size, r.device);
    r.data = base + offsets[k];
    r.device = -1;
  }
  if (what == StageWhat::kAllRecords) {
    // Before finish(), which forgets CRCs not taken.
    for (std::size_t i : chosen) {
      if (staging.records[i].crc32_ticket == 0) continue;
      plan.records[i].crc32 = engine.device_crc32_result(staging.records[i].crc32_ticket);
      plan.records[i].crc32_known = true;
    }
    engine.finish();
    plan.keep_alive.clear();
    staging.records.clear();  // every copy landed, every CRC taken
  }
  return staging;
}

}  // namespace ckptw::detail
