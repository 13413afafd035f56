// What it measures, on a CUDA device (exits 77 without one), one run, one
// state dict of --gib GiB in 64 float32 tensors on cuda:0:
//  * d2h_peak_gbps: at::Tensor::copy_ of one device buffer of that size into
//    pinned host memory (cudaMemcpy D2H on pinned memory), median of 3;
//  * stage_gbps: the state dict's bytes over the time write_async() blocks
//    (the capture: planning, device-to-host copies on ckptw's stream into its
//    pinned staging memory), median of 3 after a warm-up that pays the pinning;
//    blocking_over_d2h is that time over the pure D2H time of the same bytes;
//    stage_copy_gbps: the same bytes over the copies alone (WriteResult::
//    stage_secs: planning and pickling left out);
//  * small_gbps, small_copy_gbps: the same for 10,000 storages of 4 KiB
//    (packed by the kernel); small_over_large = small_copy_gbps over
//    stage_copy_gbps (the packing's target), small_blocking_over_large the
//    same for the blocking times (10,000 records' planning included);
//  * stage_crc_on_gpu_gbps: stage_gbps with crc_on_gpu (CRC kernels queued
//    on the staging stream before each copy), one run after a warm-up;
//  * write_gbps: write() of the state dict into --dir, fsync included, end to
//    end; async_write_gbps: the same through write_async() up to the commit.
// The staging figures need no disk: their writes go to --stage-dir (default
// --dir; the device check gives it a tmpfs), so only the two end-to-end
// writes wait for the disk. Every write replaces the previous one in its
// directory, so each holds at most two files of the state dict's size;
// --dir/small keeps the 10,000 small storages' checkpoint for torch.load.
// Prints one JSON object. Used by scripts/device-check.sh. `--device cpu` runs
// the same steps on CPU tensors (host memcpy for the "D2H" figures), so that
// CI runs this program's every step where no GPU is.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "ckptw/ckptw.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct AsyncTimes {
  double blocked;    // until write_async() returned
  double copies;     // of that, the copies into staging memory (WriteResult::stage_secs)
  double committed;  // until its future was ready
};

bool on_gpu = true;

void synchronize() {
  if (on_gpu) torch::cuda::synchronize();
}

AsyncTimes write_async_times(ckptw::CheckpointWriter& writer, const std::string& dir, const ckptw::StateDict& sd) {
  synchronize();
  auto t = std::chrono::steady_clock::now();
  std::future<ckptw::WriteResult> f = writer.write_async(dir, sd);
  const double blocked = seconds_since(t);
  const ckptw::WriteResult result = f.get();
  return AsyncTimes{blocked, result.stage_secs, seconds_since(t)};
}

struct StagingMedians {
  double blocked;  // median time write_async() blocked
  double copies;   // median WriteResult::stage_secs
};

// One warm-up write_async() of `sd` (it pays any growth and pinning of the
// staging memory), then the medians of three.
StagingMedians staging_medians(ckptw::CheckpointWriter& writer, const std::string& dir, const ckptw::StateDict& sd) {
  (void)write_async_times(writer, dir, sd);
  std::vector<double> blocked;
  std::vector<double> copies;
  for (int i = 0; i < 3; ++i) {
    const AsyncTimes times = write_async_times(writer, dir, sd);
    blocked.push_back(times.blocked);
    copies.push_back(times.copies);
  }
  return StagingMedians{median(blocked), median(copies)};
}

}  // namespace

int main(int argc, char** argv) {
  double gib = 8;
  std::string dir = "/tmp/ckptw-gpu-bench";
  std::string stage_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--gib") gib = std::stod(argv[i + 1]);
    if (flag == "--dir") dir = argv[i + 1];
    if (flag == "--stage-dir") stage_dir = argv[i + 1];
    if (flag == "--device") on_gpu = std::string(argv[i + 1]) != "cpu";
  }
  if (on_gpu && torch::cuda::device_count() == 0) {
    std::fprintf(stderr, "gpu_stage_bench: no CUDA device, nothing to measure\n");
    return 77;
  }
  const auto bytes = static_cast<std::int64_t>(gib * (1ll << 30));
  const auto cuda = on_gpu ? at::TensorOptions().device(at::kCUDA, 0) : at::TensorOptions();

  // D2H peak into pinned memory.
  std::vector<double> d2h;
  {
    at::Tensor dev = at::ones({bytes / 4}, cuda);
    at::Tensor host = at::empty({bytes / 4}, at::TensorOptions().pinned_memory(on_gpu));
    for (int i = 0; i < 3; ++i) {
      synchronize();
      auto t = std::chrono::steady_clock::now();
      host.copy_(dev);
      d2h.push_back(seconds_since(t));
    }
  }
  const double d2h_secs = median(d2h);

  ckptw::StateDict sd = ckptw::make_state_dict();
  const std::int64_t per = bytes / 4 / 64;
  for (int i = 0; i < 64; ++i) sd.insert("layer" + std::to_string(i), at::full({per}, static_cast<float>(i), cuda));
  auto writer_owner = std::make_unique<ckptw::CheckpointWriter>(ckptw::CheckpointWriterConfig{}, ckptw::RankInfo{0, 1});
  ckptw::CheckpointWriter& writer = *writer_owner;
  const std::string ckpt = dir + "/ckpt";
  const std::string staged = (stage_dir.empty() ? dir : stage_dir) + "/ckpt";
  const StagingMedians large = staging_medians(writer, staged, sd);
  const double stage_secs = large.blocked;
  const double stage_copy_secs = large.copies;

  ckptw::StateDict small = ckptw::make_state_dict();
  for (int i = 0; i < 10000; ++i) small.insert("p" + std::to_string(i), at::full({1024}, 1.0f, cuda));
  const StagingMedians small_medians = staging_medians(writer, staged, small);
  const double small_gbps = 10000.0 * 4096 / small_medians.blocked / 1e9;
  const double small_copy_gbps = 10000.0 * 4096 / small_medians.copies / 1e9;

  synchronize();
  auto t = std::chrono::steady_clock::now();
  ckptw::WriteResult written = writer.write(ckpt, sd);
  const double write_secs = seconds_since(t);
  const AsyncTimes end_to_end = write_async_times(writer, ckpt, sd);
  // Left in place for the device check's torch.load of a ckptw file holding
  // device tensors (10,000 of them, all 1.0, recorded as cuda:0).
  (void)writer.write(dir + "/small", small);
  writer_owner.reset();  // its staging memory goes before the next writer pins its own

  ckptw::CheckpointWriterConfig crc_on_gpu;
  crc_on_gpu.crc_on_gpu = true;
  ckptw::CheckpointWriter gpu_crc_writer(crc_on_gpu, ckptw::RankInfo{0, 1});
  (void)write_async_times(gpu_crc_writer, staged, sd);
  const double stage_crc_on_gpu_secs = write_async_times(gpu_crc_writer, staged, sd).blocked;

  const double gb = static_cast<double>(bytes) / 1e9;
  std::printf(
      "{\"bytes\": %lld, \"d2h_peak_gbps\": %.3f, \"stage_gbps\": %.3f, \"stage_copy_gbps\": %.3f, "
      "\"stage_over_d2h\": %.3f, \"write_async_blocking_secs\": %.4f, \"d2h_secs\": %.4f, "
      "\"blocking_over_d2h\": %.3f, \"small_gbps\": %.3f, \"small_copy_gbps\": %.3f, \"small_over_large\": %.3f, "
      "\"small_blocking_over_large\": %.3f, \"write_gbps\": %.3f, \"async_write_gbps\": %.3f, "
      "\"stage_crc_on_gpu_gbps\": %.3f, \"file_bytes\": %llu}\n",
      static_cast<long long>(bytes), gb / d2h_secs, gb / stage_secs, gb / stage_copy_secs, d2h_secs / stage_secs,
      stage_secs, d2h_secs, stage_secs / d2h_secs, small_gbps, small_copy_gbps,
      small_copy_gbps / (gb / stage_copy_secs), small_gbps / (gb / stage_secs), gb / write_secs,
      gb / end_to_end.committed, gb / stage_crc_on_gpu_secs, static_cast<unsigned long long>(written.bytes_written));
  return 0;
}
