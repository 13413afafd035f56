#include <gtest/gtest.h>

#include <torch/torch.h>

#include "ckptw/error.hpp"
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

namespace ckptw {
namespace {

// Two param groups: parameters are numbered across them in order, as
// Python's Optimizer.state_dict() numbers them; only stepped ones have state.
TEST(OptimizerStateDict, PythonLayoutWithParametersNumberedAcrossGroups) {
  torch::nn::Linear a(2, 3), b(3, 1);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(a->parameters(), std::make_unique<torch::optim::AdamWOptions>(
                                           torch::optim::AdamWOptions(1e-3).amsgrad(true)));
  groups.emplace_back(b->parameters(), std::make_unique<torch::optim::AdamWOptions>(1e-2));
  torch::optim::AdamW optimizer(groups);
  b->forward(a->forward(torch::ones({4, 2}))).sum().backward();
  optimizer.step();

  const auto sd = optimizer_state_dict(optimizer).toGenericDict();
  const auto param_groups = sd.at("param_groups").toList();
  ASSERT_EQ(param_groups.size(), 2u);
  const auto first = param_groups.get(0).toGenericDict();
  const auto second = param_groups.get(1).toGenericDict();
  EXPECT_EQ(first.at("params").toIntVector(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(second.at("params").toIntVector(), (std::vector<int64_t>{2, 3}));
  EXPECT_DOUBLE_EQ(second.at("lr").toDouble(), 1e-2);
  EXPECT_TRUE(first.at("decoupled_weight_decay").toBool());
  const auto state = sd.at("state").toGenericDict();
  ASSERT_EQ(state.size(), 4u);
  const auto p0 = state.at(0).toGenericDict();
  EXPECT_EQ(p0.at("step").toTensor().scalar_type(), at::kFloat);
  EXPECT_EQ(p0.at("step").toTensor().item<float>(), 1.0f);
  EXPECT_TRUE(p0.contains("max_exp_avg_sq")) << "amsgrad";
  EXPECT_FALSE(state.at(2).toGenericDict().contains("max_exp_avg_sq"));
  EXPECT_TRUE(at::equal(p0.at("exp_avg").toTensor(),
                        dynamic_cast<torch::optim::AdamWParamState&>(
                            *optimizer.state().at(a->weight.unsafeGetTensorImpl())).exp_avg()));
}

TEST(OptimizerStateDict, AnotherOptimizerIsAUsageError) {
  torch::nn::Linear a(2, 3);
  torch::optim::RMSprop optimizer(a->parameters(), torch::optim::RMSpropOptions(0.1));
  EXPECT_THROW((void)optimizer_state_dict(optimizer), UsageError);
}

}  // namespace
}  // namespace ckptw
