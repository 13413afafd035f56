// What it measures, per stage, warm caches:
//  * BM_Crc32Isal / BM_Crc32Zlib: CRC-32 of a 64 MiB buffer (the checksum every
//    record needs), ISA-L as ckptw uses it against zlib as torch's miniz does.
//    CPU only, no I/O.
//  * BM_RingCopy/<how>: a 256 MiB payload into a ring of 4 x 8 MiB buffers
//    with its CRC-32, as the writer's ring path does: 0 = memcpy each chunk,
//    then CRC over the copy (before 2026-12-02); 1 = crc32_copy (CRC from the
//    source per 64 KiB piece, non-temporal copy); 2 = memcpy alone, no CRC
//    (the floor of a copy). CPU only; bytes/s of one core, i.e.
//    1 / (CPU-seconds per GB).
//  * BM_PlanSmallTensors: the encoder: planning (pickle + layout) of a state
//    dict of N small tensors, i.e. the per-tensor overhead before any byte is
//    written. CPU only; reported as records (tensors) per second.
//  * BM_BackendWrite/<backend>/<buffer KiB>/<queue depth>: writing 256 MiB of
//    pre-filled ring buffers to a file in $CKPTW_BENCH_DIR (default /tmp) with
//    O_DIRECT where possible, fsync included: the I/O engine alone, no copy,
//    no CRC. Real time; bytes/s.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <zlib.h>

#include "checksum/crc32.hpp"
#include "ckptw/types.hpp"
#include "commit/atomic_file.hpp"
#include "io/io_backend.hpp"
#include "plan/state_dict_plan.hpp"
#include "io/buffer_ring.hpp"

namespace {

std::vector<unsigned char> random_bytes(std::size_t n) {
  std::vector<unsigned char> data(n);
  std::mt19937_64 rng(1);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  return data;
}

void BM_Crc32Isal(benchmark::State& state) {
  auto data = random_bytes(64 << 20);
  for (auto _ : state) benchmark::DoNotOptimize(ckptw::detail::crc32_update(0, data.data(), data.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Crc32Isal)->Unit(benchmark::kMillisecond);

void BM_Crc32Zlib(benchmark::State& state) {
  auto data = random_bytes(64 << 20);
  for (auto _ : state) benchmark::DoNotOptimize(crc32(0, data.data(), static_cast<uInt>(data.size())));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Crc32Zlib)->Unit(benchmark::kMillisecond);

void BM_RingCopy(benchmark::State& state) {
  const auto payload = random_bytes(256 << 20);
  ckptw::detail::BufferRing ring(4, 8 << 20);
  const int64_t how = state.range(0);
  std::uint32_t crc = 0;
  for (auto _ : state) {
    std::size_t buffer = 0;
    for (std::size_t done = 0; done < payload.size(); done += ring.buffer_bytes(), buffer = (buffer + 1) % ring.count()) {
      unsigned char* dst = ring.data(buffer);
      if (how == 1) {
        crc = ckptw::detail::crc32_copy(dst, payload.data() + done, ring.buffer_bytes(), crc);
      } else {
        std::memcpy(dst, payload.data() + done, ring.buffer_bytes());
        if (how == 0) crc = ckptw::detail::crc32_update(crc, dst, ring.buffer_bytes());
      }
      benchmark::ClobberMemory();
    }
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(payload.size()));
}
BENCHMARK(BM_RingCopy)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

void BM_PlanSmallTensors(benchmark::State& state) {
  ckptw::StateDict sd = ckptw::make_state_dict();
  for (int64_t i = 0; i < state.range(0); ++i) sd.insert("layer." + std::to_string(i) + ".bias", at::ones({256}));
  ckptw::detail::PlanOptions options;
  for (auto _ : state) benchmark::DoNotOptimize(ckptw::detail::plan_state_dict(sd, options));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_PlanSmallTensors)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_BackendWrite(benchmark::State& state) {
  using namespace ckptw::detail;
  const auto kind = static_cast<ckptw::IoBackendKind>(state.range(0));
  const std::size_t buffer_bytes = static_cast<std::size_t>(state.range(1)) << 10;
  const auto depth = static_cast<unsigned>(state.range(2));
  const std::uint64_t total = std::uint64_t{256} << 20;
  std::unique_ptr<IoBackend> io;
  try {
    io = make_backend(kind, depth);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  BufferRing ring(depth + 1, buffer_bytes);
  const char* base = std::getenv("CKPTW_BENCH_DIR");
  const std::string path = std::string(base && *base ? base : "/tmp") + "/ckptw-bench-backend.bin";
  for (auto _ : state) {
    TempFile file(*io, path, /*direct=*/true);
    (void)io->preallocate(file.fd(), total);
    {
      auto queue = io->open_queue(file.fd(), ring, depth);
      std::vector<std::size_t> free;
      for (std::size_t i = 0; i < ring.count(); ++i) free.push_back(i);
      for (std::uint64_t offset = 0; offset < total; offset += buffer_bytes) {
        if (free.empty()) free.push_back(queue->wait_any());
        queue->submit(free.back(), buffer_bytes, offset);
        free.pop_back();
      }
      while (queue->in_flight() > 0) (void)queue->wait_any();
      if (queue->error() < 0) {
        state.SkipWithError("write failed");
        break;
      }
    }
    file.publish(true);
  }
  ::unlink(path.c_str());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(total));
  state.SetLabel(io->name());
}
BENCHMARK(BM_BackendWrite)
    ->ArgNames({"backend", "buffer_kib", "depth"})
    ->ArgsProduct({{static_cast<int64_t>(ckptw::IoBackendKind::kPosix), static_cast<int64_t>(ckptw::IoBackendKind::kUring)},
                   {1024, 8192, 32768},
                   {1, 3, 8}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
