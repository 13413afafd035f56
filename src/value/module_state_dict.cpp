#include "ckptw/module.hpp"

#include <torch/nn/module.h>

namespace ckptw {
namespace {

// nn.Module.state_dict() order: own parameters, own buffers, then each child
// under "<child name>.", recursively.
void collect(const torch::nn::Module& module, const std::string& prefix, StateDict& out) {
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    if (item.value().defined()) out.insert(prefix + item.key(), item.value().detach());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    if (item.value().defined()) out.insert(prefix + item.key(), item.value().detach());
  }
  for (const auto& child : module.named_children()) {
    collect(*child.value(), prefix + child.key() + ".", out);
  }
}

}  // namespace

StateDict state_dict(const torch::nn::Module& module) {
  StateDict out = make_state_dict();
  collect(module, "", out);
  return out;
}

}  // namespace ckptw
