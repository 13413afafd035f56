// Backend conformance: the same file image, byte for byte, from both backends,
// with odd sizes, records straddling buffer boundaries, short writes, -EAGAIN
// and failing writes. io_uring cases skip where io_uring cannot be set up.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <random>

#include <sys/mman.h>

#include "ckptw/error.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "plan/file_plan.hpp"
#include "read/pt_inspect.hpp"
#include "io/buffer_ring.hpp"
#include "support/test_support.hpp"
#include "util/huge_pages.hpp"
#include "writer/image_streamer.hpp"

namespace ckptw::detail {
namespace {

using testing::TempDir;

struct PosixKind {
  static constexpr IoBackendKind kind = IoBackendKind::kPosix;
};
struct UringKind {
  static constexpr IoBackendKind kind = IoBackendKind::kUring;
};

template <typename Kind>
class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Kind::kind == IoBackendKind::kUring) {
      int error = 0;
      backend_ = make_uring_backend(4, &error);
      if (!backend_) GTEST_SKIP() << "io_uring unavailable here: " << std::strerror(-error);
    } else {
      backend_ = make_posix_backend();
    }
  }

  // Streams `plan` into dir/name with the given ring; returns the path.
  std::string write(FilePlan& plan, const std::string& name, std::size_t buffers, std::size_t buffer_bytes,
                    bool direct) {
    lay_out(plan);
    const std::string path = tmp_ / name;
    BufferRing ring(buffers, buffer_bytes);
    TempFile file(*backend_, path, direct);
    {
      auto queue = backend_->open_queue(file.fd(), ring, static_cast<unsigned>(buffers - 1));
      ImageStreamer streamer(ring);
      EXPECT_EQ(streamer.stream(plan, *queue, path, file.direct()).bytes, plan.file_size);
    }
    EXPECT_EQ(backend_->truncate(file.fd(), plan.file_size), 0);
    file.publish(/*durable=*/true);
    return path;
  }

  std::unique_ptr<IoBackend> backend_;
  TempDir tmp_;
};

using Kinds = ::testing::Types<PosixKind, UringKind>;
TYPED_TEST_SUITE(BackendTest, Kinds);

// Records of sizes that straddle every kind of boundary of a 64 KiB buffer.
FilePlan odd_plan(std::uint64_t seed) {
  FilePlan plan;
  plan.folder = "archive";
  std::mt19937_64 rng(seed);
  const std::size_t sizes[] = {1, 511, 4097, 0, 65536 - 130, 65536, 65537, 3 * 65536 + 17, 7};
  int i = 0;
  for (std::size_t size : sizes) {
    std::string bytes(size, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    plan.add_owned_record("data/" + std::to_string(i++), bytes);
  }
  PlannedRecord id;
  id.name = ".data/serialization_id";
  id.size = kSerializationIdSize;
  id.is_serialization_id = true;
  plan.records.push_back(id);
  return plan;
}

TYPED_TEST(BackendTest, OddSizesGiveTheSameBytesWithEveryRingShape) {
  FilePlan reference_plan = odd_plan(1);
  const std::string reference = testing::read_file(this->write(reference_plan, "ref.zip", 2, 1 << 20, false));
  for (std::size_t buffers : {2u, 3u, 5u}) {
    for (bool direct : {false, true}) {
      FilePlan plan = odd_plan(1);
      const std::string name = "b" + std::to_string(buffers) + (direct ? "d" : "") + ".zip";
      const std::string path = this->write(plan, name, buffers, 64 << 10, direct);
      EXPECT_EQ(testing::read_file(path), reference) << name;
    }
  }
  RandomAccessFile file(this->tmp_ / "ref.zip");
  ZipIndex index = read_zip_index(file);
  EXPECT_EQ(index.records.size(), 10u);
  EXPECT_NO_THROW(verify_record_crcs(this->tmp_ / "ref.zip", index));
}

TYPED_TEST(BackendTest, ShortWritesAndEagainAreRetried) {
  FilePlan reference_plan = odd_plan(2);
  const std::string reference = testing::read_file(this->write(reference_plan, "ref.zip", 2, 1 << 20, false));
  std::atomic<int> calls{0};  // the POSIX queue's workers call the filter concurrently
  this->backend_->set_write_result_filter([&calls](long result, std::size_t requested) -> long {
    const int call = ++calls;
    if (result < 0) return result;
    switch (call % 4) {
      case 1: return -EAGAIN;                                     // nothing happened: resubmit
      case 2: return requested > 1 ? 1 : result;                  // one byte
      case 3: return requested > 1 ? static_cast<long>(requested - 1) : result;  // all but one
      default: return result;
    }
  });
  FilePlan plan = odd_plan(2);
  const std::string path = this->write(plan, "short.zip", 3, 64 << 10, false);
  EXPECT_EQ(testing::read_file(path), reference);
  EXPECT_GT(calls, 10);
}

TYPED_TEST(BackendTest, FailedWriteIsOneIoErrorAfterDrainAndLeavesNoTempFile) {
  std::atomic<int> calls{0};
  this->backend_->set_write_result_filter([&calls](long result, std::size_t) -> long {
    return ++calls == 3 ? -EIO : result;
  });
  FilePlan plan = odd_plan(3);
  lay_out(plan);
  const std::string path = this->tmp_ / "failing.zip";
  BufferRing ring(3, 64 << 10);
  try {
    TempFile file(*this->backend_, path, false);
    auto queue = this->backend_->open_queue(file.fd(), ring, 2);
    ImageStreamer streamer(ring);
    (void)streamer.stream(plan, *queue, path, false);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), EIO) << e.what();
    EXPECT_EQ(e.path(), path);
  }
  EXPECT_TRUE(testing::list_dir(this->tmp_.path()).empty());
}

// Writes straight from the writer's staging memory: io_uring serves them from
// registered buffers once the memory is declared (re-registering when the
// declared set changes), other memory with plain writes; the bytes are the
// same either way, O_DIRECT included.
TYPED_TEST(BackendTest, ExternalWritesFromDeclaredStagingMemoryUseRegisteredBuffers) {
  constexpr std::size_t kPiece = 256 << 10;
  constexpr std::size_t kBytes = 3 * kPiece;
  auto map = [](std::size_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    std::mt19937_64 rng(bytes);
    for (std::size_t i = 0; i < bytes / 8; ++i) static_cast<std::uint64_t*>(p)[i] = rng();
    return static_cast<unsigned char*>(p);
  };
  unsigned char* declared = map(kBytes);
  unsigned char* other = map(kBytes);
  BufferRing ring(2, 64 << 10);
  // Writes `memory` (kBytes) to a new O_DIRECT file; returns the writes from registered memory.
  auto write_from = [&](const unsigned char* memory, const std::string& name) {
    const std::uint64_t before = this->backend_->registered_writes();
    TempFile file(*this->backend_, this->tmp_ / name, /*direct=*/true);
    {
      auto queue = this->backend_->open_queue(file.fd(), ring, 1);
      for (std::size_t offset = 0; offset < kBytes; offset += kPiece) {
        queue->submit_external(memory + offset, kPiece, offset);
      }
      while (queue->in_flight() > 0) EXPECT_EQ(queue->wait_any(), WriteQueue::kExternal);
      EXPECT_EQ(queue->error(), 0);
    }
    file.publish(true);
    EXPECT_EQ(testing::read_file(this->tmp_ / name), std::string(reinterpret_cast<const char*>(memory), kBytes)) << name;
    return this->backend_->registered_writes() - before;
  };
  const bool uring = TypeParam::kind == IoBackendKind::kUring;
  this->backend_->set_staging_memory({MemoryRegion{declared, kBytes}});
  EXPECT_EQ(write_from(declared, "declared.bin"), uring ? 3u : 0u);
  EXPECT_EQ(write_from(other, "other.bin"), 0u);
  this->backend_->set_staging_memory({MemoryRegion{declared, kBytes}, MemoryRegion{other, kBytes}});
  EXPECT_EQ(write_from(other, "both.bin"), uring ? 3u : 0u);
  this->backend_->set_staging_memory({});
  EXPECT_EQ(write_from(declared, "none.bin"), 0u);
  ::munmap(declared, kBytes);
  ::munmap(other, kBytes);
}

// The queue depth is a limit on writes in the kernel, below the ring's
// buffers: a write submitted while `depth` are there is held back (no SQE
// prepared yet, counted by registered_writes()) and handed over when
// wait_any() reaps one. A failure gives the held-back writes back unwritten.
TEST(UringQueueDepth, HoldsWritesBeyondTheDepthBackUntilOneCompletes) {
  int error = 0;
  std::unique_ptr<IoBackend> backend = make_uring_backend(4, &error);
  if (!backend) GTEST_SKIP() << "io_uring unavailable here: " << std::strerror(-error);
  TempDir tmp;
  constexpr std::size_t kBuffer = 64 << 10;
  BufferRing ring(4, kBuffer);
  for (std::size_t i = 0; i < 4; ++i) std::memset(ring.data(i), 'a' + static_cast<int>(i), kBuffer);
  for (unsigned depth : {1u, 2u, 4u}) {
    const std::string path = tmp / ("depth" + std::to_string(depth));
    TempFile file(*backend, path, /*direct=*/false);
    const std::uint64_t before = backend->registered_writes();
    {
      auto queue = backend->open_queue(file.fd(), ring, depth);
      for (std::size_t i = 0; i < 4; ++i) queue->submit(i, kBuffer, i * kBuffer);
      const std::uint64_t started = backend->registered_writes() - before;
      if (started == 0) GTEST_SKIP() << "the kernel refused to register the ring's buffers: nothing to count";
      EXPECT_EQ(started, depth) << "writes in the kernel right after four submits at depth " << depth;
      EXPECT_EQ(queue->in_flight(), 4u);
      std::vector<bool> returned(4, false);
      for (int i = 0; i < 4; ++i) returned.at(queue->wait_any()) = true;
      EXPECT_EQ(returned, std::vector<bool>(4, true));
      EXPECT_EQ(queue->in_flight(), 0u);
      EXPECT_EQ(queue->error(), 0);
      EXPECT_EQ(backend->registered_writes() - before, 4u);
    }
    file.publish(true);
    EXPECT_EQ(testing::read_file(path), std::string(kBuffer, 'a') + std::string(kBuffer, 'b') +
                                            std::string(kBuffer, 'c') + std::string(kBuffer, 'd'));
  }
  // Depth 1, the first write fails: the other three come back without being written.
  backend->set_write_result_filter([](long, std::size_t) { return long{-ENOSPC}; });
  TempFile file(*backend, tmp / "failing", /*direct=*/false);
  const std::uint64_t before = backend->registered_writes();
  auto queue = backend->open_queue(file.fd(), ring, 1);
  for (std::size_t i = 0; i < 4; ++i) queue->submit(i, kBuffer, i * kBuffer);
  for (int i = 0; i < 4; ++i) (void)queue->wait_any();
  EXPECT_EQ(queue->in_flight(), 0u);
  EXPECT_EQ(queue->error(), -ENOSPC);
  EXPECT_EQ(backend->registered_writes() - before, 1u);
}

// Reads: whole chunks in flight, a file ending inside the last page (O_DIRECT
// short read), and a file ending before min_size.
TYPED_TEST(BackendTest, ReadAtReadsToTheEndAndRefusesTooShortFiles) {
  const std::size_t size = (9 << 20) + 123;  // over two 4 MiB chunks, not page-aligned
  std::string bytes(size, '\0');
  std::mt19937_64 rng(7);
  for (auto& c : bytes) c = static_cast<char>(rng());
  const std::string path = this->tmp_ / "r.bin";
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(size));
  for (bool direct : {true, false}) {
    int fd = -1;
    bool direct_used = false;
    ASSERT_EQ(this->backend_->open_for_read(path, direct, &fd, &direct_used), 0);
    BufferRing buffer(1, 12 << 20);  // page-aligned destination
    const std::size_t page_rounded = (size + 4095) / 4096 * 4096;
    std::memset(buffer.data(0), 0, page_rounded);
    EXPECT_EQ(this->backend_->read_at(fd, buffer.data(0), page_rounded, 0, size), static_cast<long>(size));
    EXPECT_EQ(std::memcmp(buffer.data(0), bytes.data(), size), 0) << (direct_used ? "O_DIRECT" : "buffered");
    // From an aligned offset inside the file.
    EXPECT_EQ(this->backend_->read_at(fd, buffer.data(0), 8192, 4 << 20, 8192), 8192);
    EXPECT_EQ(std::memcmp(buffer.data(0), bytes.data() + (4 << 20), 8192), 0);
    // The file ends before the bytes the caller needs.
    EXPECT_EQ(this->backend_->read_at(fd, buffer.data(0), page_rounded, 0, size + 1), -EIO);
    EXPECT_EQ(this->backend_->close(fd), 0);
  }
}

// The VmFlags line of the mapping that holds `address` in /proc/self/smaps.
std::string vm_flags_of(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = lo <= at && at < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

// A ring of a huge page or more is one mapping that starts on a huge-page
// boundary and asks for huge pages, so its buffers are a few physically
// contiguous runs for the block layer (see buffer_ring.cpp); a small ring
// stays page-sized.
TEST(BufferRingMemory, LargeRingsAskForHugePagesSmallOnesStayPageSized) {
  BufferRing large(4, 8 << 20);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(large.data(0)) % kHugePageBytes, 0u);
  for (std::size_t i = 1; i < large.count(); ++i) EXPECT_EQ(large.data(i), large.data(0) + i * large.buffer_bytes());
  for (std::size_t i = 0; i < large.count(); ++i) EXPECT_EQ(large.data(i)[large.buffer_bytes() - 1], 0);
  BufferRing small(3, 64 << 10);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small.data(0)) % BufferRing::kAlignment, 0u);
  EXPECT_EQ(vm_flags_of(small.data(0)).find(" hg"), std::string::npos) << vm_flags_of(small.data(0));
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) {
    GTEST_SKIP() << "this kernel has no transparent huge pages: MADV_HUGEPAGE is refused";
  }
  EXPECT_NE(vm_flags_of(large.data(0)).find(" hg"), std::string::npos) << vm_flags_of(large.data(0));
}

TEST(BackendSelection, NamesParseAndPosixAlwaysWorks) {
  EXPECT_EQ(parse_io_backend_kind("uring"), IoBackendKind::kUring);
  EXPECT_STREQ(to_string(IoBackendKind::kPosix), "posix");
  EXPECT_THROW(parse_io_backend_kind("aio"), UsageError);
  EXPECT_EQ(make_backend(IoBackendKind::kPosix, 3)->kind(), IoBackendKind::kPosix);
  EXPECT_NE(make_backend(IoBackendKind::kAuto, 3), nullptr);
}

}  // namespace
}  // namespace ckptw::detail
