// CheckpointWriter::write_async through the copy-engine seam, with the host
// engine (slowed down, so a capture that returned early would be caught):
// capture semantics, one write in flight, failures on their own future, close
// with a timeout, staging memory reused and bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iterator>
#include <map>
#include <future>
#include <mutex>
#include <string>
#include <set>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstring>
#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "commit/atomic_file.hpp"
#include "io/buffer_ring.hpp"
#include "io/io_backend.hpp"
#include "plan/state_dict_plan.hpp"
#include "checksum/crc32.hpp"
#include "stage/snapshot_arena.hpp"
#include "stage/stage_records.hpp"
#include "stage/torch_device_memory.hpp"
#include "writer/image_streamer.hpp"
#include "support/emulated_device.hpp"
#include "support/fault_backend.hpp"
#include "support/test_support.hpp"
#include "writer/writer_internals.hpp"

namespace ckptw {
namespace {

using namespace std::chrono_literals;

StateDict model(float value) {
  StateDict sd = make_state_dict();
  at::Tensor w = at::full({256, 256}, value);
  sd.insert("w", w);
  sd.insert("w_row", w[5]);  // a view: shares w's storage
  sd.insert("b", at::full({300}, static_cast<double>(value), at::kDouble));
  sd.insert("step", int64_t{3});
  return sd;
}

// A writer whose copies each take 20 ms on the engine's worker thread.
CheckpointWriter slow_capture_writer(CheckpointWriterConfig config = {}, std::shared_ptr<WriterHook> hook = nullptr,
                                     testing::FaultDisk* disk = nullptr) {
  auto io = detail::make_backend(config.io_backend, config.queue_depth);
  if (disk) io = disk->wrap(0, std::move(io));
  return detail::WriterInternals::make(config, RankInfo{0, 1}, nullptr, std::move(hook), std::move(io),
                                       detail::make_host_copy_engine(20ms));
}

at::Tensor read_back(const std::string& dir, const std::string& key) {
  return CheckpointReader(RankInfo{0, 1}).read(dir).state_dict.at(key).toTensor();
}

TEST(WriteAsync, ReturnsOnceCapturedAndTheFileHoldsTheValuesOfTheCall) {
  testing::TempDir tmp;
  CheckpointWriter writer = slow_capture_writer();
  StateDict sd = model(1.0f);
  std::future<WriteResult> written = writer.write_async(tmp / "c", sd);
  // The trainer moves on at once: in-place updates, and a tensor dropped.
  sd.at("w").toTensor().fill_(-7.0f);
  sd.at("b").toTensor().fill_(-7.0);
  (void)sd.erase("b");
  WriteResult result = written.get();
  EXPECT_FALSE(result.manifest.empty());
  EXPECT_EQ(result.tensor_count, 3u);
  EXPECT_EQ(result.storage_count, 2u);
  // The capture's copies (two storages at 20 ms each, at least) are its
  // stage_secs, a part of the caller-side plan_secs.
  EXPECT_GE(result.stage_secs, 0.04);
  EXPECT_GE(result.plan_secs, result.stage_secs);
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(tmp / "c");
  EXPECT_TRUE(at::equal(r.state_dict.at("w").toTensor(), at::full({256, 256}, 1.0f)));
  EXPECT_TRUE(at::equal(r.state_dict.at("w_row").toTensor(), at::full({256}, 1.0f)));
  EXPECT_TRUE(at::equal(r.state_dict.at("b").toTensor(), at::full({300}, 1.0, at::kDouble)));
  // The view still shares its storage, as torch.save keeps it.
  EXPECT_EQ(r.state_dict.at("w").toTensor().storage().data(), r.state_dict.at("w_row").toTensor().storage().data());
}

// Same bytes as write(): the capture changes where payloads come from, not the file.
TEST(WriteAsync, WritesTheSameBytesAsWrite) {
  testing::TempDir tmp;
  CheckpointWriter writer = slow_capture_writer();
  const StateDict sd = model(2.5f);
  (void)writer.write(tmp / "sync", sd);
  (void)writer.write_async(tmp / "async", sd).get();
  EXPECT_EQ(testing::read_file(tmp / "sync/checkpoint_0.pt"), testing::read_file(tmp / "async/checkpoint_0.pt"));
}

TEST(WriteAsync, OneWriteInFlightTheNextCallWaitsForThePrevious) {
  testing::TempDir tmp;
  struct SlowPreCommit : WriterHook {
    void pre_commit(const std::string&, const HookArgs&) override { std::this_thread::sleep_for(300ms); }
    void post_commit(const std::string&, const HookArgs&) override {}
  };
  CheckpointWriter writer = slow_capture_writer({}, std::make_shared<SlowPreCommit>());
  std::future<WriteResult> first = writer.write_async(tmp / "1", model(1.0f));
  EXPECT_EQ(first.wait_for(0ms), std::future_status::timeout);  // still writing
  std::future<WriteResult> second = writer.write_async(tmp / "2", model(2.0f));
  EXPECT_EQ(first.wait_for(0ms), std::future_status::ready);  // the second call waited for it
  (void)first.get();
  (void)second.get();
  EXPECT_TRUE(at::equal(read_back(tmp / "1", "w"), at::full({256, 256}, 1.0f)));
  EXPECT_TRUE(at::equal(read_back(tmp / "2", "w"), at::full({256, 256}, 2.0f)));
}

TEST(WriteAsync, AFailedWriteReportsOnItsOwnFutureAndTheNextWriteWorks) {
  testing::TempDir tmp;
  // EIO on the first data write of the first save only (operations: mkdir
  // ×3, fsync_directory, list, create, preallocate, write).
  testing::FaultDisk disk(tmp.path(), testing::Fault{testing::FaultKind::kError, 0, 7, EIO});
  CheckpointWriter writer = slow_capture_writer({}, nullptr, &disk);
  std::future<WriteResult> failing = writer.write_async(tmp / "bad", model(1.0f));
  try {
    (void)failing.get();
    FAIL() << "the faulty write succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), EIO) << e.what();
  }
  ASSERT_TRUE(disk.fault_fired());
  (void)writer.write_async(tmp / "good", model(2.0f)).get();
  EXPECT_TRUE(at::equal(read_back(tmp / "good", "w"), at::full({256, 256}, 2.0f)));
  EXPECT_FALSE(testing::exists(tmp / "bad"));
}

TEST(WriteAsync, BadInputFailsOnTheFutureWithTheKeyPathAndTheNextWriteWorks) {
  testing::TempDir tmp;
  CheckpointWriter writer = slow_capture_writer();
  StateDict bad = model(1.0f);
  bad.insert("q", at::quantize_per_tensor(at::ones({2}), 0.1, 0, at::kQInt8));
  std::future<WriteResult> failing = writer.write_async(tmp / "bad", bad);
  try {
    (void)failing.get();
    FAIL() << "a quantized tensor was written";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.key_path(), "q");
  }
  EXPECT_FALSE(testing::exists(tmp / "bad"));
  (void)writer.write_async(tmp / "good", model(2.0f)).get();
}

TEST(WriteAsync, CloseWaitsForTheWriteInFlightWithATimeout) {
  testing::TempDir tmp;
  struct SlowPreCommit : WriterHook {
    void pre_commit(const std::string&, const HookArgs&) override { std::this_thread::sleep_for(2500ms); }
    void post_commit(const std::string&, const HookArgs&) override {}
  };
  CheckpointWriterConfig config;
  config.close_timeout_secs = 1;
  CheckpointWriter writer = slow_capture_writer(config, std::make_shared<SlowPreCommit>());
  std::future<WriteResult> written = writer.write_async(tmp / "c", model(1.0f));
  EXPECT_THROW(writer.close(), TimeoutError);  // still open: the write goes on
  (void)written.get();
  writer.close();
  EXPECT_THROW((void)writer.write_async(tmp / "d", model(1.0f)), UsageError);
  EXPECT_TRUE(at::equal(read_back(tmp / "c", "w"), at::full({256, 256}, 1.0f)));
}

TEST(WriteAsync, StagingMemoryIsReusedAndBoundedByTheBudget) {
  testing::TempDir tmp;
  CheckpointWriterConfig config;
  config.staging_budget_bytes = 4 << 20;
  CheckpointWriter writer = slow_capture_writer(config);
  writer.reserve(2 << 20);
  for (int i = 0; i < 3; ++i) (void)writer.write_async(tmp / std::to_string(i), model(static_cast<float>(i))).get();
  EXPECT_EQ(detail::WriterInternals::staging_allocations(writer), 1u);  // reserve() paid once; reused since
  StateDict big = make_state_dict();
  big.insert("w", at::zeros({2 << 20}));  // 8 MiB > the 4 MiB budget
  std::future<WriteResult> too_big = writer.write_async(tmp / "big", big);
  EXPECT_THROW((void)too_big.get(), UsageError);
  EXPECT_THROW(writer.reserve(8 << 20), UsageError);
}

// With two snapshot sets the second call captures while the first write is
// still held in pre_commit; a third waits until the first is done; the
// writes commit in call order, each with the values of its own call.
TEST(WriteAsync, TwoSnapshotSetsCaptureWhileThePreviousWriteRuns) {
  struct GatedPreCommit : WriterHook {
    std::promise<void> open;
    std::shared_future<void> opened = open.get_future().share();
    std::mutex mutex;
    std::vector<std::string> order;
    void pre_commit(const std::string& path, const HookArgs&) override {
      bool first;
      {
        std::lock_guard<std::mutex> lock(mutex);
        order.push_back(path);
        first = order.size() == 1;
      }
      if (first) opened.wait();
    }
    void post_commit(const std::string&, const HookArgs&) override {}
  };
  auto gate = std::make_shared<GatedPreCommit>();
  struct OpenGateOnExit {  // never leaves the writer's thread waiting, whatever fails below
    GatedPreCommit& gate;
    bool opened = false;
    void open() {
      if (!opened) gate.open.set_value();
      opened = true;
    }
    ~OpenGateOnExit() { open(); }
  } open_gate{*gate};
  testing::TempDir tmp;
  CheckpointWriterConfig config;
  config.snapshot_sets = 2;
  CheckpointWriter writer = slow_capture_writer(config, gate);

  std::future<WriteResult> first = writer.write_async(tmp / "1", model(1.0f));
  StateDict second_sd = model(2.0f);
  auto second_call = std::async(std::launch::async, [&] { return writer.write_async(tmp / "2", second_sd); });
  if (second_call.wait_for(10s) != std::future_status::ready) {
    open_gate.open();  // lets the blocked call return before its future is destroyed
    FAIL() << "the second capture waited for the first write";
  }
  std::future<WriteResult> second = second_call.get();
  second_sd.at("w").toTensor().fill_(-1.0f);  // captured: the file keeps 2.0
  EXPECT_EQ(first.wait_for(0ms), std::future_status::timeout);  // still held in pre_commit

  auto third_call = std::async(std::launch::async, [&] { return writer.write_async(tmp / "3", model(3.0f)); });
  EXPECT_EQ(third_call.wait_for(300ms), std::future_status::timeout) << "a third capture while both sets are taken";
  open_gate.open();
  std::future<WriteResult> third = third_call.get();
  (void)first.get();
  (void)second.get();
  (void)third.get();
  EXPECT_EQ(gate->order, (std::vector<std::string>{tmp / "1", tmp / "2", tmp / "3"}));
  EXPECT_TRUE(at::equal(read_back(tmp / "1", "w"), at::full({256, 256}, 1.0f)));
  EXPECT_TRUE(at::equal(read_back(tmp / "2", "w"), at::full({256, 256}, 2.0f)));
  EXPECT_TRUE(at::equal(read_back(tmp / "3", "w"), at::full({256, 256}, 3.0f)));
  EXPECT_EQ(detail::WriterInternals::staging_allocations(writer), 2u);  // one per set, reused by the third
}

TEST(WriteAsync, SnapshotSetsAreOneOrTwoAndShareTheBudget) {
  for (unsigned sets : {0u, 3u}) {
    CheckpointWriterConfig config;
    config.snapshot_sets = sets;
    EXPECT_THROW(CheckpointWriter(config, RankInfo{0, 1}), UsageError) << sets;
  }
  testing::TempDir tmp;
  CheckpointWriterConfig config;
  config.snapshot_sets = 2;
  config.staging_budget_bytes = 4 << 20;  // 2 MiB per set
  CheckpointWriter writer = slow_capture_writer(config);
  EXPECT_THROW(writer.reserve(3 << 20), UsageError);
  writer.reserve(2 << 20);
  StateDict three_mib = make_state_dict();
  three_mib.insert("w", at::zeros({768 << 10}));
  EXPECT_THROW((void)writer.write_async(tmp / "big", three_mib).get(), UsageError);
  (void)writer.write_async(tmp / "small", model(1.0f)).get();
  EXPECT_EQ(detail::WriterInternals::staging_allocations(writer), 2u);
}

// write_async writes the captured file image straight from staging memory
// (no ring copy). Same bytes as write() on both backends, O_DIRECT and
// buffered, with payloads straddling the 64 KiB write pieces, while the
// kernel's answers are turned into -EAGAIN, 1-byte and all-but-one-byte
// writes (O_DIRECT resumes on a block boundary).
TEST(WriteAsync, TheCapturedImageIsWrittenAsWriteWouldOnBothBackendsThroughShortWrites) {
  StateDict sd = make_state_dict();
  int64_t sizes[] = {1, 7, 4095, 4096, 4097, (64 << 10) + 3, 300001};
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    sd.insert("t" + std::to_string(i), at::arange(sizes[i], at::kByte));
  }
  at::Tensor shared = at::randn({70000});
  sd.insert("shared", shared);
  sd.insert("shared_tail", shared.narrow(0, 69000, 1000));
  sd.insert("step", int64_t{9});
  testing::TempDir tmp;
  for (IoBackendKind kind : {IoBackendKind::kPosix, IoBackendKind::kUring}) {
    if (kind == IoBackendKind::kUring && !testing::io_uring_unavailable_reason().empty()) {
      std::printf("io_uring case skipped: %s\n", testing::io_uring_unavailable_reason().c_str());
      continue;
    }
    for (bool direct : {true, false}) {
      const std::string name = std::string(to_string(kind)) + (direct ? "_direct" : "_buffered");
      CheckpointWriterConfig config;
      config.io_backend = kind;
      config.direct_io = direct;
      config.write_buffer_bytes = 64 << 10;
      (void)CheckpointWriter(config, RankInfo{0, 1}).write(tmp / ("ref_" + name), sd);
      auto io = detail::make_backend(kind, config.queue_depth);
      std::atomic<int> calls{0};
      io->set_write_result_filter([&calls](long result, std::size_t requested) -> long {
        const int call = ++calls;
        if (result < 0 || requested < 2) return result;
        switch (call % 4) {
          case 1: return -EAGAIN;
          case 2: return 1;
          case 3: return static_cast<long>(requested - 1);
          default: return result;
        }
      });
      CheckpointWriter writer = detail::WriterInternals::make(config, RankInfo{0, 1}, nullptr, nullptr, std::move(io),
                                                              detail::make_host_copy_engine());
      WriteResult result = writer.write_async(tmp / ("async_" + name), sd).get();
      EXPECT_EQ(result.direct_io, direct) << name;
      EXPECT_EQ(testing::read_file(tmp / ("async_" + name + "/checkpoint_0.pt")),
                testing::read_file(tmp / ("ref_" + name + "/checkpoint_0.pt")))
          << name;
      EXPECT_GT(calls.load(), 20) << name;
      EXPECT_NO_THROW(CheckpointReader(RankInfo{0, 1}).read(tmp / ("async_" + name))) << name;
    }
  }
}

// On io_uring the staging memory is registered with the ring, so the image's
// O_DIRECT writes are WRITE_FIXED from the snapshot set (without the
// declaration they are plain writes: 0 registered).
TEST(WriteAsync, IoUringWritesTheImageFromRegisteredStagingMemory) {
  if (std::string why = testing::io_uring_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
  testing::TempDir tmp;
  CheckpointWriterConfig config;
  config.io_backend = IoBackendKind::kUring;
  config.write_buffer_bytes = 64 << 10;
  auto io = detail::make_backend(IoBackendKind::kUring, config.queue_depth);
  const detail::IoBackend* backend = io.get();
  CheckpointWriter writer = detail::WriterInternals::make(config, RankInfo{0, 1}, nullptr, nullptr, std::move(io),
                                                          detail::make_host_copy_engine());
  WriteResult result = writer.write_async(tmp / "c", model(1.0f)).get();
  ASSERT_TRUE(result.direct_io);
  // Every write of the image (64 KiB pieces) came from registered memory.
  EXPECT_EQ(backend->registered_writes(), (result.bytes_written + (64 << 10) - 1) / (64 << 10));
  EXPECT_TRUE(at::equal(read_back(tmp / "c", "w"), at::full({256, 256}, 1.0f)));
}

// The plan of `sd` with its storages' records marked as device memory (host
// memory stands in for a device's).
detail::FilePlan plan_with_device_storages(const StateDict& sd, int device = 0) {
  detail::PlanOptions options;
  options.folder = detail::archive_folder_for("checkpoint_0.pt");
  detail::FilePlan plan = detail::plan_state_dict(sd, options);
  for (auto& r : plan.records) {
    if (r.data != nullptr && r.size > 0 && !r.is_serialization_id && r.name.rfind("data/", 0) == 0) r.device = device;
  }
  return plan;
}

// Streams a staged plan into `path` (O_DIRECT where the filesystem allows) as
// write() does, waiting on `engine` for the staged copies.
void stream_staged_plan(const detail::FilePlan& plan, const detail::Staging& staging, const std::string& path,
                        detail::CopyEngine* engine) {
  auto io = detail::make_posix_backend();
  detail::BufferRing ring(4, 1 << 20);
  detail::TempFile file(*io, path, /*direct=*/true);
  {
    auto queue = io->open_queue(file.fd(), ring, 3);
    detail::ImageStreamer streamer(ring);
    EXPECT_EQ(streamer.stream(plan, *queue, path, file.direct(), &staging, engine).bytes, plan.file_size);
  }
  ASSERT_EQ(io->truncate(file.fd(), plan.file_size), 0);
  file.publish(true);
}

// write()'s staging of device storages, with host memory standing in for a
// device: stage_records returns while the copies are in flight, and the
// streamer writes each record only once its own copy has landed. Two
// engines: the host engine slowed down, and the device engine (the CUDA
// engine's code) over the emulated device, whose lazy streams pack both
// storages into one batch with a record header in its gap.
TEST(StagedWrite, RecordsAreWrittenWhenTheirCopyLandsWhileLaterCopiesRun) {
  struct FakeDeviceEngine : detail::CopyEngine {
    std::unique_ptr<detail::CopyEngine> host = detail::make_host_copy_engine(30ms);
    const char* name() const override { return "fake-device"; }
    bool pin(void*, std::size_t, int) override { return true; }
    void unpin(void*, int) noexcept override {}
    void wait_for_producer(int, void*) override {}
    std::uint64_t copy_to_host(void* dst, const void* src, std::size_t bytes, int) override {
      return host->copy_to_host(dst, src, bytes, -1);
    }
    void wait(std::uint64_t ticket) override { host->wait(ticket); }
    void finish() override {
      host->finish();
      crcs.clear();
    }
    // "Device" CRC-32s, computed at once and handed out by ticket.
    std::map<std::uint64_t, std::uint32_t> crcs;
    int crcs_taken = 0;
    std::uint64_t queue_device_crc32(const void* src, std::size_t bytes, int) override {
      crcs[crcs.size() + 1] = detail::crc32_update(0, src, bytes);
      return crcs.size();
    }
    std::uint32_t device_crc32_result(std::uint64_t ticket) override {
      ++crcs_taken;
      return crcs.at(ticket);
    }
  } fake_device;
  testing::EmulatedDevice emulated;
  std::unique_ptr<detail::CopyEngine> device_engine = detail::make_device_copy_engine(emulated, "emulated");
  testing::TempDir tmp;
  const StateDict sd = model(4.0f);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);

  // An all-device state dict becomes a file image written from the arena;
  // with host payloads above image_host_bytes, or an image above the arena's
  // budget, the device payloads are packed and the file goes through the ring.
  enum class Case { kImage, kHostPayloadsTooLarge, kImageOverBudget };
  for (const bool on_emulated_device : {false, true})
  for (const Case c : {Case::kImage, Case::kHostPayloadsTooLarge, Case::kImageOverBudget}) {
    detail::CopyEngine& engine = on_emulated_device ? *device_engine : fake_device;
    const bool image = c == Case::kImage;
    SCOPED_TRACE(std::string(engine.name()) + " case " + std::to_string(static_cast<int>(c)));
    detail::FilePlan plan = plan_with_device_storages(sd);
    ASSERT_EQ(std::count_if(plan.records.begin(), plan.records.end(), [](const auto& r) { return r.device == 0; }), 2);
    detail::SnapshotArena arena(c == Case::kImageOverBudget ? plan.file_size - 1 : 0);
    const auto started = std::chrono::steady_clock::now();
    detail::StageOptions stage_options;
    stage_options.order_after_producers = false;
    stage_options.checksum_on_device = true;
    if (c == Case::kHostPayloadsTooLarge) stage_options.image_host_bytes = 0;
    fake_device.crcs_taken = 0;
    const int crc_kernels = emulated.crc_kernels();
    const int transfers = emulated.transfers();
    const detail::Staging staging = detail::stage_records(plan, detail::StageWhat::kDeviceRecords, arena, engine,
                                                          stage_options);
    if (on_emulated_device) {
      EXPECT_EQ(emulated.transfers(), transfers) << "staging waited for its copies";
    } else {
      EXPECT_LT(std::chrono::steady_clock::now() - started, 30ms) << "staging waited for its copies";
    }
    EXPECT_EQ(staging.image != nullptr, image);
    for (std::size_t i = 0; i < plan.records.size(); ++i) {
      if (plan.records[i].size > 0 && plan.records[i].name.rfind("data/", 0) == 0) {
        EXPECT_NE(staging.record(i).copy_ticket, 0u) << plan.records[i].name;
      }
    }

    const std::string path =
        tmp / (std::string(engine.name()) + "-case" + std::to_string(static_cast<int>(c)) + ".pt");
    stream_staged_plan(plan, staging, path, &engine);
    engine.finish();
    EXPECT_EQ(on_emulated_device ? emulated.crc_kernels() - crc_kernels : fake_device.crcs_taken, 2)
        << "the streamer checksummed device records itself";
    EXPECT_TRUE(testing::read_file(path) == testing::read_file(tmp / "ref/checkpoint_0.pt")) << "not torch.save's bytes";
  }
}

// save_segments()'s device path: device storages streamed through the ring
// instead of staged. Each piece the streamer asks for is copied by the
// device engine (over the emulated device, whose lazy streams leave a copy's
// destination stale until its ticket is waited for) straight into the ring
// buffer: the file is torch.save's, the 2.8 MB storage crosses in pieces no
// larger than a ring buffer (1 MiB), and none of it is staged in host memory.
// A copy that fails fails the write, and the file is not published.
TEST(StreamedDeviceRecords, ArePiecesCopiedIntoTheRingAndWrittenAsTorchSaveWrites) {
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  sd.insert("w", at::arange(700000, at::kFloat));
  sd.insert("b", at::arange(300, at::kDouble));
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
  for (const bool copy_fails : {false, true}) {
    SCOPED_TRACE(copy_fails ? "a copy fails" : "copies land");
    testing::EmulatedDevice emulated;
    std::unique_ptr<detail::CopyEngine> engine = detail::make_device_copy_engine(emulated, "emulated");
    detail::FilePlan plan = plan_with_device_storages(sd);
    detail::StageOptions options;
    options.order_after_producers = false;
    ASSERT_TRUE(detail::stream_device_records(plan, *engine, options));
    int streamed = 0;
    for (const auto& r : plan.records) {
      EXPECT_EQ(r.device, -1) << r.name;
      if (r.source != nullptr) ++streamed;
    }
    EXPECT_EQ(streamed, 2);
    EXPECT_EQ(emulated.transfers(), 0) << "a copy ran before the streamer asked for it";
    const std::string path = tmp / (copy_fails ? "failed.pt" : "streamed.pt");
    if (copy_fails) {
      emulated.fail_next("copy_to_host_async");
      EXPECT_THROW(stream_staged_plan(plan, detail::Staging{}, path, engine.get()), Error);
      EXPECT_FALSE(testing::exists(path));
      continue;
    }
    stream_staged_plan(plan, detail::Staging{}, path, engine.get());
    engine->finish();
    EXPECT_GE(emulated.transfers(), 4) << "the 2.8 MB storage was not cut into ring-sized pieces";
    // The stager's own pinned bookkeeping (its packed batches' item list), not a staged copy of the storage.
    EXPECT_LT(emulated.pinned_bytes_peak(), 700000u * 4) << "the storage was staged in pinned memory";
    EXPECT_TRUE(testing::read_file(path) == testing::read_file(tmp / "ref/checkpoint_0.pt")) << "not torch.save's bytes";
  }
}

// write_async()'s capture of device storages on the device engine (emulated
// device, CRCs on the "device"): complete when staging returns, so the
// tensors may change at once, and the file is torch.save's.
// write_async's capture (kAllRecords) of a state dict's storages as device
// storages of an emulated device, their CRCs computed on the device.
// A plan and what its staging left beside it.
struct Captured {
  detail::FilePlan plan;
  detail::Staging staging;
};

Captured capture_on_device(const StateDict& sd, detail::CopyEngine& engine, detail::SnapshotArena& arena, int device = 0,
                           std::uint64_t device_checksum_min_bytes = 0) {
  Captured captured;
  captured.plan = plan_with_device_storages(sd, device);
  detail::StageOptions stage_options;
  stage_options.order_after_producers = false;
  stage_options.checksum_on_device = true;
  stage_options.device_checksum_min_bytes = device_checksum_min_bytes;
  captured.staging = detail::stage_records(captured.plan, detail::StageWhat::kAllRecords, arena, engine, stage_options);
  return captured;
}

struct EmulatedCapture {
  testing::EmulatedDevice emulated;
  std::unique_ptr<detail::CopyEngine> engine = detail::make_device_copy_engine(emulated, "emulated");
  detail::SnapshotArena arena{0};

  Captured capture(const StateDict& sd, std::uint64_t device_checksum_min_bytes = 0) {
    return capture_on_device(sd, *engine, arena, 0, device_checksum_min_bytes);
  }
};

TEST(StagedWrite, ACaptureOfDeviceStoragesIsCompleteWhenStagingReturns) {
  EmulatedCapture staging;
  testing::EmulatedDevice& emulated = staging.emulated;
  testing::TempDir tmp;
  StateDict sd = model(5.0f);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
  Captured captured = staging.capture(sd);
  sd.at("w").toTensor().fill_(-1.0f);  // the trainer moves on
  sd.at("b").toTensor().fill_(-1.0);
  EXPECT_EQ(emulated.crc_kernels(), 2);
  EXPECT_TRUE(captured.staging.records.empty()) << "copies or CRCs still in flight after the capture";
  EXPECT_NE(captured.staging.image, nullptr);
  for (const auto& r : captured.plan.records) {
    if (r.size > 0 && r.name.rfind("data/", 0) == 0) {
      EXPECT_TRUE(r.crc32_known) << r.name;
    }
  }
  stream_staged_plan(captured.plan, captured.staging, tmp / "captured.pt", nullptr);
  EXPECT_TRUE(testing::read_file(tmp / "captured.pt") == testing::read_file(tmp / "ref/checkpoint_0.pt"))
      << "not torch.save's bytes";
}

// crc_on_gpu_min_bytes: the 2,400-byte storage is checksummed on the host,
// the 256 KiB one on the device; the file is the same.
TEST(StagedWrite, SmallStoragesAreChecksummedOnTheHost) {
  EmulatedCapture staging;
  testing::TempDir tmp;
  StateDict sd = model(5.0f);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
  Captured captured = staging.capture(sd, 4096);
  EXPECT_EQ(staging.emulated.crc_kernels(), 1);
  stream_staged_plan(captured.plan, captured.staging, tmp / "captured.pt", nullptr);
  EXPECT_TRUE(testing::read_file(tmp / "captured.pt") == testing::read_file(tmp / "ref/checkpoint_0.pt"));
}

// A device that training left full: the pack scratch (first packable copy)
// or a storage's CRC slice buffer cannot be had. The capture still makes
// torch.save's file: unpacked copies, and that CRC computed on the host.
TEST(StagedWrite, DeviceMemoryShortAtFirstTouchStillWritesTheFile) {
  for (const char* failing : {"allocate_device", "allocate_async", "allocate_pinned"}) {
    SCOPED_TRACE(failing);
    EmulatedCapture staging;
    testing::EmulatedDevice& emulated = staging.emulated;
    testing::TempDir tmp;
    StateDict sd = model(5.0f);
    (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
    emulated.fail_next(failing);
    Captured captured = staging.capture(sd);
    const bool scratch_failed = std::string(failing) == "allocate_device";
    EXPECT_EQ(emulated.packs(), scratch_failed ? 0 : 1);
    EXPECT_EQ(emulated.crc_kernels(), scratch_failed ? 2 : 1);
    stream_staged_plan(captured.plan, captured.staging, tmp / "captured.pt", nullptr);
    EXPECT_TRUE(testing::read_file(tmp / "captured.pt") == testing::read_file(tmp / "ref/checkpoint_0.pt"))
        << "not torch.save's bytes";
  }
}

// Staging's device memory through torch's caching allocator: where torch
// has not set that allocator up (no CUDA device here), every allocation and
// free reaches the runtime underneath, packing and device CRCs still run, and
// nothing is left allocated once the engine is gone.
TEST(StagedWrite, TorchDeviceMemoryFallsThroughToTheRuntimeWhenTorchHasNoAllocator) {
  testing::EmulatedDevice emulated;
  testing::TempDir tmp;
  const StateDict sd = model(7.0f);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
  {
    std::unique_ptr<detail::DeviceRuntime> runtime = detail::with_torch_device_memory(emulated);
    std::unique_ptr<detail::CopyEngine> engine = detail::make_device_copy_engine(*runtime, "emulated");
    detail::SnapshotArena arena(0);
    Captured captured = capture_on_device(sd, *engine, arena);
    stream_staged_plan(captured.plan, captured.staging, tmp / "captured.pt", nullptr);
    engine->finish();
    EXPECT_EQ(emulated.packs(), 1);
    EXPECT_EQ(emulated.crc_kernels(), 2);
  }
  EXPECT_EQ(emulated.live_resources(), 0);
  EXPECT_TRUE(testing::read_file(tmp / "captured.pt") == testing::read_file(tmp / "ref/checkpoint_0.pt"))
      << "not torch.save's bytes";
#if CKPTW_TEST_CUDA_TORCH
  // This test links a CUDA LibTorch: its allocator is found in the process
  // (by name, not by link), set up or not.
  EXPECT_TRUE(detail::torch_cuda_allocator_found());
#endif
}

// write_async captures and writes on ckptw's own thread, whose current device
// is 0: with every storage on device 1, nothing may create a context on
// device 0 (an 8-rank node would otherwise hold eight on GPU 0). Before the
// staging scope restored the thread's previous device with set_device, which
// created device 0's context.
TEST(StagedWrite, StoragesOnDeviceOneNeverTouchDeviceZero) {
  testing::EmulatedDevice emulated(2);
  testing::TempDir tmp;
  const StateDict sd = model(6.0f);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "ref", sd);
  std::thread ckptw_thread([&] {
    std::unique_ptr<detail::CopyEngine> engine = detail::make_device_copy_engine(emulated, "emulated");
    detail::SnapshotArena arena(0);
    Captured captured = capture_on_device(sd, *engine, arena, 1);
    stream_staged_plan(captured.plan, captured.staging, tmp / "captured.pt", nullptr);
    engine->finish();
  });
  ckptw_thread.join();
  EXPECT_EQ(emulated.contexts(), (std::set<int>{1}));
  EXPECT_TRUE(testing::read_file(tmp / "captured.pt") == testing::read_file(tmp / "ref/checkpoint_0.pt"))
      << "not torch.save's bytes";
}

// Whether the page at `address` is mapped in a child fork()ed now: the child
// scans its own /proc/self/maps with system calls only (no allocation after
// a fork of a threaded process) and says so in its exit code.
bool mapped_in_forked_child(const void* address) {
  const pid_t child = ::fork();
  if (child == 0) {
    const int fd = ::open("/proc/self/maps", O_RDONLY);
    if (fd < 0) ::_exit(2);
    const auto target = reinterpret_cast<std::uintptr_t>(address);
    char buffer[1 << 16];
    std::size_t used = 0;
    bool found = false;
    while (!found) {
      const ssize_t n = ::read(fd, buffer + used, sizeof buffer - used);
      if (n <= 0) break;
      used += static_cast<std::size_t>(n);
      std::size_t start = 0;
      for (std::size_t i = 0; i < used; ++i) {
        if (buffer[i] != '\n') continue;
        // "lo-hi perms ...", hexadecimal.
        std::uintptr_t lo = 0, hi = 0;
        std::size_t j = start;
        for (; j < i && buffer[j] != '-'; ++j) lo = lo * 16 + (buffer[j] <= '9' ? buffer[j] - '0' : buffer[j] - 'a' + 10);
        for (++j; j < i && buffer[j] != ' '; ++j) hi = hi * 16 + (buffer[j] <= '9' ? buffer[j] - '0' : buffer[j] - 'a' + 10);
        if (target >= lo && target < hi) found = true;
        start = i + 1;
      }
      std::memmove(buffer, buffer + start, used - start);
      used -= start;
    }
    ::_exit(found ? 1 : 0);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 2) << "the child could not read its maps";
  return WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

// The write ring and the write_async arena are pinned long-term (io_uring
// fixed buffers, cudaHostRegister), which Linux copies into every child at
// fork(): a DataLoader worker must not get a copy of the rank's staging memory.
TEST(StagingMemory, IsNotMappedInForkedChildren) {
  int on_stack = 0;
  ASSERT_TRUE(mapped_in_forked_child(&on_stack)) << "the probe itself must see ordinary memory";
  detail::BufferRing ring(4, std::size_t{1} << 20);
  EXPECT_FALSE(mapped_in_forked_child(ring.data(0))) << "write ring";
  testing::EmulatedDevice emulated;
  std::unique_ptr<detail::CopyEngine> engine = detail::make_device_copy_engine(emulated, "emulated");
  detail::SnapshotArena arena(0);
  unsigned char* staging = arena.reserve(std::size_t{4} << 20, *engine);
  ASSERT_TRUE(arena.pinned());
  EXPECT_FALSE(mapped_in_forked_child(staging)) << "write_async arena";
}

// The exit code of a child fork()ed now that runs `body`, or -1 when it
// did not exit within 30 s (a hang: it is killed).
template <class Body>
int exit_code_of_forked_child(Body body) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(body());
  int status = 0;
  for (int waited_ms = 0; waited_ms < 30000; waited_ms += 10) {
    if (::waitpid(child, &status, WNOHANG) == child) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(child, SIGKILL);
  (void)::waitpid(child, &status, 0);
  return -1;
}

// A DataLoader worker is a fork()ed child holding a copy of the rank's
// writer, but not its background thread nor its write ring (kept out of
// children): every use there is a UsageError naming the fork, and close()
// and the destructor return at once (joining the parent's thread would hang,
// touching the ring would crash), while a writer the child makes works.
TEST(ForkedChild, RefusesTheParentsWriterAndLeavesItBehind) {
  testing::TempDir tmp;
  auto writer = std::make_unique<CheckpointWriter>(CheckpointWriterConfig{}, RankInfo{0, 1});
  const StateDict sd = model(1.5f);
  (void)writer->write_async(tmp / "parent", sd).get();  // the background thread runs from here on
  const std::string child_dir = tmp / "child";
  const int code = exit_code_of_forked_child([&] {
    try {
      (void)writer->write(child_dir, sd);
      return 3;
    } catch (const UsageError& e) {
      if (std::string(e.what()).find("fork()ed") == std::string::npos) return 4;
    }
    try {
      writer->close();
      writer.reset();
      CheckpointWriter own(CheckpointWriterConfig{}, RankInfo{0, 1});
      (void)own.write(child_dir, sd);
    } catch (...) {
      return 5;
    }
    return 0;
  });
  EXPECT_EQ(code, 0) << "3: the parent's writer wrote in the child; 4: the error does not name the fork; "
                        "5: close, destruction or the child's own writer failed; -1: the child hung or died";
  EXPECT_TRUE(at::equal(read_back(child_dir, "w"), at::full({256, 256}, 1.5f)));
  (void)writer->write(tmp / "parent", model(2.5f));  // the parent's writer is untouched
  EXPECT_TRUE(at::equal(read_back(tmp / "parent", "w"), at::full({256, 256}, 2.5f)));
}

// A CPU-only state dict on a GPU host: staged by memcpy into unpinned
// memory, with no CUDA stream, event, allocation or host registration (which
// would make a context on the current device and pin the staging memory).
TEST(WriteAsync, ACpuOnlyStateDictTouchesNoDeviceWhereOneIsVisible) {
  testing::TempDir tmp;
  testing::EmulatedDevice emulated;
  CheckpointWriter writer = detail::WriterInternals::make(
      CheckpointWriterConfig{}, RankInfo{0, 1}, nullptr, nullptr, nullptr,
      detail::make_device_copy_engine(emulated, "emulated"), /*engine_for_device_plans_only=*/true);
  (void)writer.write_async(tmp / "async", model(1.0f)).get();
  (void)writer.write(tmp / "sync", model(2.0f));
  EXPECT_EQ(emulated.host_registrations(), 0) << "staging memory pinned for CPU tensors";
  EXPECT_TRUE(emulated.contexts().empty());
  EXPECT_EQ(emulated.live_resources(), 0);
  EXPECT_TRUE(at::equal(read_back(tmp / "async", "w"), at::full({256, 256}, 1.0f)));
}

}  // namespace
}  // namespace ckptw
