// upload_to_device (the reader's path onto a GPU) over the emulated device:
// the bytes land where they belong, pinned memory stays within the ring
// whatever the checkpoint's size, and failures name the file and leak nothing.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "read/zip_index.hpp"
#include "stage/device_upload.hpp"
#include "support/emulated_device.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

// A checkpoint of `count` storages of power-of-two sizes from 4 KiB to
// 256 KiB, the sizes torch's caching host allocator rounds every request to.
struct PowerOfTwoCheckpoint {
  std::string path;
  std::vector<detail::ZipRecord> storages;  // file order
  std::size_t bytes = 0;                    // of all storages

  PowerOfTwoCheckpoint(const testing::TempDir& tmp, int count) {
    at::manual_seed(count);
    StateDict sd = make_state_dict();
    for (int i = 0; i < count; ++i) {
      sd.insert("t" + std::to_string(i), at::randint(0, 256, {std::int64_t{4096} << (i % 7)}, at::kByte));
    }
    (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ckpt", sd);
    path = tmp / "ckpt/checkpoint_0.pt";
    const detail::ZipIndex index = detail::read_zip_index(detail::RandomAccessFile(path));
    for (const detail::ZipRecord& r : index.records) {
      if (r.name.rfind("data/", 0) == 0 && r.name != "data/serialization_id") {
        storages.push_back(r);
        bytes += r.size;
      }
    }
    std::sort(storages.begin(), storages.end(),
              [](const auto& a, const auto& b) { return a.payload_offset < b.payload_offset; });
  }
};

// pread, counting the calls.
struct FileReads {
  explicit FileReads(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~FileReads() { ::close(fd); }
  detail::ReadAt read_at() {
    return [this](void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) -> long {
      ++calls;
      if (fail_at_call == calls) return -EIO;
      const ssize_t n = ::pread(fd, data, size, static_cast<off_t>(offset));
      if (n < 0) return -errno;
      return static_cast<std::size_t>(n) < min_size ? -EIO : n;
    };
  }
  int fd;
  int calls = 0;
  int fail_at_call = 0;  // 0: none
};

struct Uploaded {
  std::vector<detail::UploadRecord> records;
  std::vector<void*> memory;
};

Uploaded device_memory_for(testing::EmulatedDevice& device, const PowerOfTwoCheckpoint& ckpt) {
  Uploaded u;
  for (const detail::ZipRecord& r : ckpt.storages) {
    void* memory = nullptr;
    EXPECT_EQ(device.allocate_device(&memory, r.size), "");
    u.memory.push_back(memory);
    u.records.push_back({r.payload_offset, static_cast<std::size_t>(r.size), memory});
  }
  return u;
}

detail::UploadOptions small_ring() {
  detail::UploadOptions options;
  options.chunk_bytes = 256 << 10;
  options.chunks = 3;
  return options;
}

// Pinned memory was one buffer per storage, each rounded to a power of two
// plus a page, all held to the end: about twice the checkpoint. Through the
// ring it is chunks x chunk_bytes (and a page each for alignment) for a
// checkpoint of 0.5 MiB or of 11 MiB alike. The emulated streams run a copy
// only when something waits for it, so a chunk read into again before its
// copy ran would put the wrong bytes on the device.
TEST(DeviceUpload, PinnedMemoryIsBoundedWhateverTheCheckpointSizeAndEveryByteLands) {
  const detail::UploadOptions options = small_ring();
  const std::size_t ring_bytes = 3 * (options.chunk_bytes + 4096);
  for (const int count : {8, 160}) {
    SCOPED_TRACE(std::to_string(count) + " storages");
    testing::TempDir tmp;
    const PowerOfTwoCheckpoint ckpt(tmp, count);
    const std::string file = testing::read_file(ckpt.path);
    testing::EmulatedDevice device;
    Uploaded u = device_memory_for(device, ckpt);
    FileReads reads(ckpt.path);
    detail::upload_to_device(device, 0, ckpt.path, reads.read_at(), u.records, options);

    EXPECT_LE(device.pinned_bytes_peak(), ring_bytes) << "checkpoint of " << ckpt.bytes << " bytes";
    // Neighbouring records share reads: about one per chunk of the file.
    EXPECT_LE(reads.calls, static_cast<int>(file.size() / options.chunk_bytes) + 2);
    for (std::size_t i = 0; i < ckpt.storages.size(); ++i) {
      const detail::ZipRecord& r = ckpt.storages[i];
      ASSERT_EQ(std::memcmp(u.memory[i], file.data() + r.payload_offset, r.size), 0) << r.name;
      EXPECT_EQ(u.records[i].crc32, r.crc32) << r.name;
    }
    EXPECT_EQ(device.live_resources(), count) << "only the destinations are left";
    for (void* memory : u.memory) device.free_device(memory);
  }
}

// Runs an upload of `ckpt` that must fail with an E, and returns the error;
// the device must hold only the destinations afterwards.
template <typename E>
E failed_upload(testing::EmulatedDevice& device, const PowerOfTwoCheckpoint& ckpt, FileReads& reads) {
  Uploaded u = device_memory_for(device, ckpt);
  std::optional<E> error;
  try {
    detail::upload_to_device(device, 0, ckpt.path, reads.read_at(), u.records, small_ring());
  } catch (const E& e) {
    error = e;
  }
  EXPECT_EQ(device.live_resources(), static_cast<int>(u.memory.size())) << "pinned chunks, stream or events left";
  for (void* memory : u.memory) device.free_device(memory);
  if (!error) throw std::runtime_error("the upload did not fail");
  return *error;
}

TEST(DeviceUpload, AFailedReadIsAnIoErrorNamingTheFileAndLeavesNoPinnedMemory) {
  testing::TempDir tmp;
  const PowerOfTwoCheckpoint ckpt(tmp, 40);
  testing::EmulatedDevice device;
  FileReads reads(ckpt.path);
  reads.fail_at_call = 4;
  const IoError e = failed_upload<IoError>(device, ckpt, reads);
  EXPECT_EQ(e.errno_value(), EIO);
  EXPECT_EQ(e.path(), ckpt.path);
}

TEST(DeviceUpload, AFailedCopyIsAnErrorNamingTheCallAndTheFile) {
  testing::TempDir tmp;
  const PowerOfTwoCheckpoint ckpt(tmp, 4);
  testing::EmulatedDevice device;
  FileReads reads(ckpt.path);
  device.fail_next("copy_to_device_async");
  const Error e = failed_upload<Error>(device, ckpt, reads);
  EXPECT_NE(std::string(e.what()).find("copy_to_device_async"), std::string::npos) << e.what();
  EXPECT_EQ(e.path(), ckpt.path);
}

// A failure while the pinned ring is being built (its first chunk's event,
// after its stream and first pinned chunk exist) frees what was made.
TEST(DeviceUpload, AFailureBuildingThePinnedRingLeavesNothingBehind) {
  testing::TempDir tmp;
  const PowerOfTwoCheckpoint ckpt(tmp, 4);
  testing::EmulatedDevice device;
  FileReads reads(ckpt.path);
  device.fail_next("create_event");
  const Error e = failed_upload<Error>(device, ckpt, reads);
  EXPECT_NE(std::string(e.what()).find("create_event"), std::string::npos) << e.what();
}

// A load onto cuda:1 from a thread whose current device is 0 makes its
// stream, events and pinned chunks on device 1 and creates no context on 0.
TEST(DeviceUpload, LoadingOntoDeviceOneNeverTouchesDeviceZero) {
  testing::TempDir tmp;
  const PowerOfTwoCheckpoint ckpt(tmp, 4);
  testing::EmulatedDevice device(2);
  std::thread loader([&] {
    ASSERT_EQ(device.set_device(1), "");
    Uploaded u = device_memory_for(device, ckpt);  // as torch allocates on cuda:1
    std::thread ckptw_thread([&] {
      FileReads reads(ckpt.path);
      detail::upload_to_device(device, 1, ckpt.path, reads.read_at(), u.records, small_ring());
    });
    ckptw_thread.join();
    for (void* memory : u.memory) device.free_device(memory);
  });
  loader.join();
  EXPECT_EQ(device.contexts(), (std::set<int>{1}));
}

}  // namespace
}  // namespace ckptw
