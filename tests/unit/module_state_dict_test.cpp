#include <gtest/gtest.h>

#include <torch/torch.h>

#include "ckptw/module.hpp"

namespace ckptw {
namespace {

TEST(ModuleStateDict, PythonStyleNamesParametersThenBuffersThenChildren) {
  torch::nn::Sequential model(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3));
  StateDict sd = state_dict(*model);
  std::vector<std::string> keys;
  for (const auto& entry : sd) keys.push_back(entry.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                            "1.running_var", "1.num_batches_tracked"}));
  // Detached, sharing storage with the module.
  at::Tensor w = sd.at("0.weight").toTensor();
  EXPECT_FALSE(w.requires_grad());
  EXPECT_EQ(w.data_ptr(), model[0]->as<torch::nn::Linear>()->weight.data_ptr());
}

}  // namespace
}  // namespace ckptw
