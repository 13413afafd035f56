// Building a StateDict from a LibTorch module.
#pragma once

#include "ckptw/export.hpp"
#include "ckptw/types.hpp"

namespace torch::nn {
class Module;
}

namespace ckptw {

/// The module's parameters and buffers under Python-style names
/// (`layer.0.weight`), in the order nn.Module.state_dict() lists them:
/// for each module, its parameters, then its buffers, then its children,
/// recursively. Tensors are detached and share storage with the module.
/// Like nn.Module.state_dict(), undefined (None) parameters and buffers are skipped.
CKPTW_EXPORT StateDict state_dict(const torch::nn::Module& module);

}  // namespace ckptw
