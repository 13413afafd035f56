// State dicts of LibTorch objects, laid out as Python's: a module's
// parameters and buffers, an optimizer's state and param groups.
#pragma once

#include "ckptw/export.hpp"
#include "ckptw/types.hpp"

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Optimizer;
}

namespace ckptw {

/// The module's parameters and buffers under Python-style names
/// (`layer.0.weight`), in the order nn.Module.state_dict() lists them:
/// for each module, its parameters, then its buffers, then its children,
/// recursively. Tensors are detached and share storage with the module.
/// Like nn.Module.state_dict(), undefined (None) parameters and buffers are skipped.
/// module.state_dict() also carries `_metadata` (module versions) as an
/// attribute of its OrderedDict; LibTorch modules have no versions, so this
/// is a plain dict, and Python's load_state_dict accepts it without them.
CKPTW_EXPORT StateDict state_dict(const torch::nn::Module& module);

/// optimizer.state_dict() as Python's torch.optim lays it out, for LibTorch's
/// SGD, Adam and AdamW: {"state": {i: {...}}, "param_groups": [{"lr": ...,
/// ..., "params": [i, ...]}]}, parameters numbered across the groups in
/// order (so in model.parameters() order for one group), Adam's `step` a
/// float32 scalar tensor, SGD's `momentum_buffer`. A Python process that
/// builds the same model and optimizer resumes with load_state_dict().
/// Tensors are detached and share storage with the optimizer's. Throws
/// ckptw::UsageError for another optimizer.
CKPTW_EXPORT c10::IValue optimizer_state_dict(const torch::optim::Optimizer& optimizer);

}  // namespace ckptw
