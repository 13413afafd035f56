// A deterministic GPT-like state dict for `ckptw synth` and `ckptw bench`:
// a token embedding (tied to lm_head, as GPT-2 does), a position embedding,
// and transformer blocks of large matrices and many small vectors
// (LayerNorm weights, biases), float32, filled from a seeded PRNG.
#pragma once

#include <cstdint>

#include "ckptw/types.hpp"

namespace ckptw::cli {

struct SyntheticModel {
  StateDict state_dict = make_state_dict();
  std::uint64_t payload_bytes = 0;  ///< bytes of distinct storages (what the file must carry)
  int hidden = 0;
  int layers = 0;
};

/// Builds a model whose distinct storages add up to about `target_bytes`
/// (within one transformer block). Same seed and size, same bytes.
SyntheticModel make_synthetic_model(std::uint64_t target_bytes, std::uint64_t seed);

}  // namespace ckptw::cli
