// The GPU path on a real device (label gpu; every test skips with the reason
// when no CUDA device is visible, as on the CI machine). Run on an H200 by
// scripts/device-check.sh.
#include <gtest/gtest.h>

#include <chrono>

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#if CKPTW_TEST_HAS_C10D_NCCL
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#define CKPTW_TEST_HAS_CUDART 1
#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define CKPTW_TEST_HAS_TORCH_ALLOCATOR 1
#endif
#endif

#include "ckptw/ckptw.hpp"
#include "read/pt_inspect.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

#define REQUIRE_GPU(n)                                                                                  \
  if (static_cast<int>(torch::cuda::device_count()) < (n)) {                                           \
    GTEST_SKIP() << "needs " << (n) << " CUDA device(s), found " << torch::cuda::device_count()         \
                 << " (GPU tests run in scripts/device-check.sh)";                                      \
  }

at::TensorOptions on(int device) { return at::TensorOptions().device(at::kCUDA, device); }

StateDict gpu_model(float value, int device = 0) {
  StateDict sd = make_state_dict();
  at::Tensor w = at::full({1024, 1024}, value, on(device));
  sd.insert("w", w);
  sd.insert("w_t", w.t());  // non-contiguous view: its storage is copied whole, like torch.save
  sd.insert("bias", at::full({77}, value, on(device).dtype(at::kBFloat16)));
  sd.insert("cpu_step", at::scalar_tensor(5, at::kLong));
  return sd;
}

std::vector<std::string> locations(const std::string& file) {
  std::vector<std::string> out;
  for (const auto& t : detail::inspect_pt(file).tensors) out.push_back(t.tensor.location);
  return out;
}

TEST(Gpu, WriteRecordsTheDeviceLikeTorchSaveAndReadsBack) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  const StateDict sd = gpu_model(3.0f);
  (void)writer.write(tmp / "c", sd);
  EXPECT_EQ(locations(tmp / "c/checkpoint_0.pt"), (std::vector<std::string>{"cuda:0", "cuda:0", "cuda:0", "cpu"}));
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(tmp / "c");
  EXPECT_TRUE(at::equal(r.state_dict.at("w").toTensor().cpu(), sd.at("w").toTensor().cpu()));
  EXPECT_TRUE(at::equal(r.state_dict.at("w_t").toTensor().cpu(), sd.at("w_t").toTensor().cpu()));
  EXPECT_TRUE(at::equal(r.state_dict.at("bias").toTensor().cpu(), sd.at("bias").toTensor().cpu()));

  CheckpointWriterConfig as_cpu;
  as_cpu.record_device_as_cpu = true;
  (void)CheckpointWriter(as_cpu, RankInfo{0, 1}).write(tmp / "cpu", sd);
  EXPECT_EQ(locations(tmp / "cpu/checkpoint_0.pt"), (std::vector<std::string>{"cpu", "cpu", "cpu", "cpu"}));
}

// The producer's stream is busy when write_async is called: the capture must
// wait for the kernels already queued (values 1), and must be complete when
// write_async returns (the update queued right after must not leak in).
TEST(Gpu, WriteAsyncCapturesAfterQueuedKernelsAndBeforeLaterOnes) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  at::Tensor big = at::randn({4096, 4096}, on(0));
  at::Tensor w = at::zeros({4096, 4096}, on(0));
  for (int i = 0; i < 20; ++i) big = at::mm(big, big).div_(4096);  // keeps the stream busy
  w.add_(big.sum().mul(0)).fill_(1.0f);                             // queued after the matmuls
  StateDict sd = make_state_dict();
  sd.insert("w", w);
  std::future<WriteResult> written = writer.write_async(tmp / "c", sd);
  w.fill_(2.0f);
  (void)written.get();
  at::Tensor saved = CheckpointReader(RankInfo{0, 1}).read(tmp / "c").state_dict.at("w").toTensor().cpu();
  EXPECT_TRUE(at::equal(saved, at::ones({4096, 4096})));
}

// save_segments() (ckptw.dcp's data files): device storages stream through
// the ring on ckptw's stream, after the kernels already queued on the
// caller's stream; recorded as host tensors (record_device_as_cpu, as DCP's
// writer saves tensor.cpu()), the file is byte for byte the one made from
// the same tensors in host memory.
TEST(Gpu, SaveSegmentsStreamsDeviceStoragesAfterQueuedKernels) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  CheckpointWriterConfig config;
  config.record_device_as_cpu = true;
  config.write_buffer_bytes = 1 << 20;  // the 64 MiB storage crosses in 64 pieces
  CheckpointWriter writer(config, RankInfo{0, 1});
  at::Tensor big = at::randn({4096, 4096}, on(0));
  at::Tensor w = at::zeros({4096, 4096}, on(0));
  for (int i = 0; i < 20; ++i) big = at::mm(big, big).div_(4096);  // keeps the stream busy
  w.add_(big.sum().mul(0)).fill_(1.0f);                             // queued after the matmuls
  std::vector<FileSegment> on_device(3);
  on_device[0].bytes = "a bytes item";
  on_device[1].archive = Value::tensor(w);
  on_device[2].archive = Value::tensor(at::arange(77, on(0).dtype(at::kBFloat16)));
  (void)writer.save_segments(tmp / "device.distcp", on_device);
  std::vector<FileSegment> on_host(3);
  on_host[0].bytes = "a bytes item";
  on_host[1].archive = Value::tensor(at::ones({4096, 4096}));
  on_host[2].archive = Value::tensor(at::arange(77, at::TensorOptions().dtype(at::kBFloat16)));
  (void)writer.save_segments(tmp / "host.distcp", on_host);
  EXPECT_TRUE(testing::read_file(tmp / "device.distcp") == testing::read_file(tmp / "host.distcp"))
      << "the device tensors' file differs from their host copies' (a copy ran before the queued kernels?)";
}

TEST(Gpu, TenThousandSmallStoragesArePackedAndLandIntact) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  for (int i = 0; i < 10000; ++i) sd.insert("p" + std::to_string(i), at::full({1024}, static_cast<float>(i), on(0)));
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write_async(tmp / "c", sd).get();
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(tmp / "c");
  for (int i = 0; i < 10000; i += 997) {
    EXPECT_TRUE(at::equal(r.state_dict.at("p" + std::to_string(i)).toTensor().cpu(),
                          at::full({1024}, static_cast<float>(i))))
        << i;
  }
  // at::equal throws across devices: both sides go to the host, after
  // checking that the reader put each tensor back where the file says.
  int wrong = 0;
  int off_device = 0;
  for (int i = 0; i < 10000; ++i) {
    const at::Tensor loaded = r.state_dict.at("p" + std::to_string(i)).toTensor();
    off_device += loaded.device() != c10::Device(c10::kCUDA, 0);
    wrong += !at::equal(loaded.cpu(), sd.at("p" + std::to_string(i)).toTensor().cpu());
  }
  EXPECT_EQ(off_device, 0);
  EXPECT_EQ(wrong, 0);
}

#if CKPTW_TEST_HAS_TORCH_ALLOCATOR
// The pack scratch (64 MiB, held while the writer lives) is taken from torch's
// caching allocator, which frees its cached blocks and retries when device
// memory is short, and shows in torch's own memory statistics.
TEST(Gpu, StagingScratchComesFromTorchsCachingAllocator) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  for (int i = 0; i < 100; ++i) sd.insert("p" + std::to_string(i), at::full({256}, 1.0f, on(0)));
  auto allocated = [] {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;  // 0: aggregate
  };
  const auto before = allocated();
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(tmp / "c", sd);
  EXPECT_GE(allocated() - before, std::int64_t{64} << 20) << "the pack scratch did not come from torch's allocator";
}
#endif

// CRCs computed on the GPU must be ISA-L's: the files with and without
// crc_on_gpu are byte-identical, over sizes around every slice boundary.
TEST(Gpu, CrcOnGpuMatchesIsaL) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  const std::int64_t sizes[] = {1, 127, 128, 129, 16383, 16384, 16385, 3 * 16384 + 77, (10 << 20) + 3};
  for (std::int64_t n : sizes) {
    sd.insert("r" + std::to_string(n), at::randint(0, 256, {n}, on(0).dtype(at::kByte)));
  }
  CheckpointWriterConfig gpu_crc;
  gpu_crc.crc_on_gpu = true;
  gpu_crc.crc_on_gpu_min_bytes = 0;  // every size on the GPU, the small ones too
  (void)CheckpointWriter(gpu_crc, RankInfo{0, 1}).write(tmp / "gpu", sd);
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "host", sd);
  EXPECT_EQ(testing::read_file(tmp / "gpu/checkpoint_0.pt"), testing::read_file(tmp / "host/checkpoint_0.pt"));
  detail::InspectedFile inspected = detail::inspect_pt(tmp / "gpu/checkpoint_0.pt");
  EXPECT_NO_THROW(detail::verify_record_crcs(tmp / "gpu/checkpoint_0.pt", inspected.index));
}

// Reading onto the GPU: through a ring of pinned chunks, as map_location says or, without
// it, as the file's locations say (torch.load's rules).
TEST(Gpu, ReaderPutsTensorsWhereMapLocationOrTheFileSays) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  StateDict cpu_sd = make_state_dict();
  cpu_sd.insert("w", at::arange(24 << 20, at::kFloat));  // 96 MiB: six pinned chunks, the ring of four reused
  cpu_sd.insert("b", at::arange(7, at::kDouble));
  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "cpu", cpu_sd);
  ReadOptions to_gpu;
  to_gpu.map_location = c10::Device(c10::kCUDA, 0);
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(tmp / "cpu", std::nullopt, to_gpu);
  EXPECT_TRUE(r.state_dict.at("w").toTensor().is_cuda());
  EXPECT_TRUE(at::equal(r.state_dict.at("w").toTensor().cpu(), cpu_sd.at("w").toTensor()));
  EXPECT_TRUE(at::equal(r.state_dict.at("b").toTensor().cpu(), cpu_sd.at("b").toTensor()));

  (void)CheckpointWriter(CheckpointWriterConfig{}, RankInfo{0, 1}).write(tmp / "gpu", gpu_model(2.0f));
  ReadResult as_saved = CheckpointReader(RankInfo{0, 1}).read(tmp / "gpu");
  EXPECT_TRUE(as_saved.state_dict.at("w").toTensor().is_cuda());
  EXPECT_FALSE(as_saved.state_dict.at("cpu_step").toTensor().is_cuda());
  ReadOptions to_cpu;
  to_cpu.map_location = c10::Device(c10::kCPU);
  EXPECT_FALSE(CheckpointReader(RankInfo{0, 1}).read(tmp / "gpu", std::nullopt, to_cpu).state_dict.at("w").toTensor().is_cuda());
}

TEST(Gpu, TensorsOnTwoDevices) {
  REQUIRE_GPU(2);
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  sd.insert("a", at::full({1000}, 1.0f, on(0)));
  sd.insert("b", at::full({1000}, 2.0f, on(1)));
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write_async(tmp / "c", sd).get();
  EXPECT_EQ(locations(tmp / "c/checkpoint_0.pt"), (std::vector<std::string>{"cuda:0", "cuda:1"}));
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(tmp / "c");
  EXPECT_TRUE(at::equal(r.state_dict.at("b").toTensor().cpu(), at::full({1000}, 2.0f)));
}

TEST(Gpu, NcclBarrierWithOneRankGathersAndCommits) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  NcclBarrier::Options options;
  options.store.master_address = "127.0.0.1";
  options.store.master_port = 29731;
  options.timeout_secs = 60;
  auto barrier = std::make_shared<NcclBarrier>(RankInfo{0, 1}, options);
  EXPECT_EQ(barrier->all_gather("vote", std::chrono::seconds(30)), (std::vector<std::string>{"vote"}));
#if CKPTW_TEST_HAS_CUDART
  // Polling the completion event saw it not ready at least once, as a rule:
  // that must not stay behind as this thread's last CUDA error, which the
  // trainer's next launch check would report.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
#endif
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1}, barrier);
  (void)writer.write(tmp / "c", gpu_model(1.0f));
  EXPECT_TRUE(testing::exists(tmp / "c/checkpoint_manifest.json"));
}

#if CKPTW_TEST_HAS_C10D_NCCL
// ProcessGroupBarrier over torch's own NCCL backend (a group of one rank):
// the votes go on the group's GPU, a write commits through it, and a write
// from ckptw's thread is refused over the trainer's group but allowed over a
// dedicated one.
TEST(Gpu, ProcessGroupBarrierOverNcclVotesOnTheGroupsDevice) {
  REQUIRE_GPU(1);
  testing::TempDir tmp;
  auto store = c10::make_intrusive<c10d::HashStore>();
  auto make_group = [&](const std::string& prefix) {
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>(prefix, store), 0, 1);
  };
  ProcessGroupBarrier::Options options;
  options.timeout = std::chrono::seconds(60);
  auto barrier = std::make_shared<ProcessGroupBarrier>(RankInfo{0, 1}, make_group("train"), options);
  EXPECT_EQ(barrier->device(), c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(barrier->all_gather("vote", std::chrono::seconds(30)), (std::vector<std::string>{"vote"}));
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1}, barrier);
  (void)writer.write(tmp / "c", gpu_model(1.0f));
  EXPECT_TRUE(testing::exists(tmp / "c/checkpoint_manifest.json"));
  EXPECT_THROW((void)writer.write_async(tmp / "d", gpu_model(2.0f)), UsageError);

  options.dedicated_group = true;
  auto own = std::make_shared<ProcessGroupBarrier>(RankInfo{0, 1}, make_group("ckptw"), options);
  CheckpointWriter async_writer(CheckpointWriterConfig{}, RankInfo{0, 1}, own);
  (void)async_writer.write_async(tmp / "e", gpu_model(3.0f)).get();
  ReadResult r = CheckpointReader(RankInfo{0, 1}).read(tmp / "e");
  EXPECT_TRUE(at::equal(r.state_dict.at("w").toTensor().cpu(), at::full({1024, 1024}, 3.0f)));
}
#endif

// A rank that never joins: the communicator's set-up (non-blocking, polled)
// gives up at the deadline and is aborted, instead of hanging the trainer.
// Rank 1 of this world of two is never started (NCCL refuses two ranks on one GPU).
TEST(Gpu, NcclBarrierGivesUpOnAMissingRankAtTheDeadline) {
  REQUIRE_GPU(1);
  NcclBarrier::Options options;
  options.timeout_secs = 3;
  auto store = c10::make_intrusive<c10d::HashStore>();
  const auto started = std::chrono::steady_clock::now();
  EXPECT_THROW(NcclBarrier(RankInfo{0, 2}, options, store), TimeoutError);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GE(waited, 2.5);
  EXPECT_LT(waited, 3 + 10) << "the deadline was not enforced";
}

}  // namespace
}  // namespace ckptw
