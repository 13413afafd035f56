// What it measures, per stage, on the CPU, warm cache, no I/O:
//  * BM_Crc32Isal / BM_Crc32Zlib: CRC-32 of a 64 MiB buffer (the checksum every
//    record needs), ISA-L as ckptw uses it against zlib as torch's miniz does.
//  * BM_PlanSmallTensors: planning (pickle + layout) of a state dict of N
//    small tensors, the per-tensor overhead before any byte is written.
// Throughput is reported as bytes/s (SetBytesProcessed) or items/s.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <zlib.h>

#include "checksum/crc32.hpp"
#include "ckptw/types.hpp"
#include "plan/state_dict_plan.hpp"

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

void BM_PlanSmallTensors(benchmark::State& state) {
  ckptw::StateDict sd = ckptw::make_state_dict();
  for (int64_t i = 0; i < state.range(0); ++i) sd.insert("layer." + std::to_string(i) + ".bias", at::ones({256}));
  ckptw::detail::PlanOptions options;
  for (auto _ : state) benchmark::DoNotOptimize(ckptw::detail::plan_state_dict(sd, options));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_PlanSmallTensors)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
