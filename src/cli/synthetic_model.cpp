#include "cli/synthetic_model.hpp"

#include <algorithm>
#include <string>

#include <ATen/ATen.h>

namespace ckptw::cli {
namespace {

// splitmix64: fast, seedable, and identical on every platform.
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

at::Tensor random_tensor(at::IntArrayRef shape, SplitMix& rng) {
  at::Tensor t = at::empty(shape, at::kFloat);
  float* p = t.data_ptr<float>();
  const std::int64_t n = t.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    // uniform in [-0.05, 0.05): finite, so tensors compare equal after a round trip.
    p[i] = static_cast<float>(static_cast<double>(rng.next() >> 40) / 16777216.0 - 0.5) * 0.1f;
  }
  return t;
}

}  // namespace

SyntheticModel make_synthetic_model(std::uint64_t target_bytes, std::uint64_t seed) {
  constexpr std::uint64_t kFloat = 4;
  constexpr std::int64_t kPositions = 1024;
  // Hidden size: 1024 for large models, smaller (a multiple of 64) when the
  // target cannot hold the embeddings plus one block at that width.
  std::int64_t hidden = 1024;
  auto embedding_params = [](std::int64_t d) { return (32 * d + kPositions) * d + 2 * d; };
  auto block_params = [](std::int64_t d) { return 12 * d * d + 13 * d; };
  while (hidden > 64 &&
         static_cast<std::uint64_t>(embedding_params(hidden) + block_params(hidden)) * kFloat > target_bytes) {
    hidden -= 64;
  }
  const std::int64_t vocab = 32 * hidden;
  const std::uint64_t fixed = static_cast<std::uint64_t>(embedding_params(hidden)) * kFloat;
  const std::uint64_t per_block = static_cast<std::uint64_t>(block_params(hidden)) * kFloat;
  const int layers = static_cast<int>(std::max<std::uint64_t>(
      1, target_bytes > fixed ? (target_bytes - fixed + per_block / 2) / per_block : 1));

  SplitMix rng{seed};
  SyntheticModel model;
  model.hidden = static_cast<int>(hidden);
  model.layers = layers;
  auto add = [&](const std::string& name, at::IntArrayRef shape) {
    at::Tensor t = random_tensor(shape, rng);
    model.payload_bytes += t.nbytes();
    model.state_dict.insert(name, t);
    return t;
  };
  const std::int64_t d = hidden;
  at::Tensor wte = add("transformer.wte.weight", {vocab, d});
  add("transformer.wpe.weight", {kPositions, d});
  for (int i = 0; i < layers; ++i) {
    const std::string p = "transformer.h." + std::to_string(i) + ".";
    add(p + "ln_1.weight", {d});
    add(p + "ln_1.bias", {d});
    add(p + "attn.c_attn.weight", {d, 3 * d});
    add(p + "attn.c_attn.bias", {3 * d});
    add(p + "attn.c_proj.weight", {d, d});
    add(p + "attn.c_proj.bias", {d});
    add(p + "ln_2.weight", {d});
    add(p + "ln_2.bias", {d});
    add(p + "mlp.c_fc.weight", {d, 4 * d});
    add(p + "mlp.c_fc.bias", {4 * d});
    add(p + "mlp.c_proj.weight", {4 * d, d});
    add(p + "mlp.c_proj.bias", {d});
  }
  add("transformer.ln_f.weight", {d});
  add("transformer.ln_f.bias", {d});
  model.state_dict.insert("lm_head.weight", wte);  // tied: same storage, stored once
  return model;
}

}  // namespace ckptw::cli
