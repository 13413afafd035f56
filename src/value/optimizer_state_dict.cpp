#include "ckptw/module.hpp"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "ckptw/error.hpp"

namespace ckptw {
namespace {

using c10::impl::GenericDict;
using c10::impl::GenericList;

GenericDict string_dict() { return GenericDict(c10::StringType::get(), c10::AnyType::get()); }

// Python keeps `step` as a float32 scalar tensor (torch.optim's
// _get_scalar_dtype() on CPU, capturable=False).
at::Tensor python_step(int64_t step) { return at::scalar_tensor(static_cast<double>(step), at::kFloat); }

c10::IValue betas(const std::tuple<double, double>& b) {
  return c10::ivalue::Tuple::create({c10::IValue(std::get<0>(b)), c10::IValue(std::get<1>(b))});
}

// One param group's hyper-parameters, in the order Python's state_dict()
// lists them (the optimizer's defaults, then "params"), and one parameter's
// state, for each optimizer LibTorch and Python both have.
template <typename Options, typename State>
struct AdamLayout {
  bool decoupled;
  static const Options* options(const torch::optim::OptimizerParamGroup& g) {
    return dynamic_cast<const Options*>(&g.options());
  }
  void group(const Options& o, GenericDict& out) const {
    out.insert("lr", o.lr());
    out.insert("betas", betas(o.betas()));
    out.insert("eps", o.eps());
    out.insert("weight_decay", o.weight_decay());
    out.insert("amsgrad", o.amsgrad());
    out.insert("maximize", false);
    out.insert("foreach", c10::IValue());
    out.insert("capturable", false);
    out.insert("differentiable", false);
    out.insert("fused", c10::IValue());
    out.insert("decoupled_weight_decay", decoupled);
  }
  static bool state(const torch::optim::OptimizerParamState& s, GenericDict& out) {
    const auto* st = dynamic_cast<const State*>(&s);
    if (st == nullptr) return false;
    out.insert("step", python_step(st->step()));
    out.insert("exp_avg", st->exp_avg().detach());
    out.insert("exp_avg_sq", st->exp_avg_sq().detach());
    if (st->max_exp_avg_sq().defined()) out.insert("max_exp_avg_sq", st->max_exp_avg_sq().detach());
    return true;
  }
};

struct SgdLayout {
  static const torch::optim::SGDOptions* options(const torch::optim::OptimizerParamGroup& g) {
    return dynamic_cast<const torch::optim::SGDOptions*>(&g.options());
  }
  void group(const torch::optim::SGDOptions& o, GenericDict& out) const {
    out.insert("lr", o.lr());
    out.insert("momentum", o.momentum());
    out.insert("dampening", o.dampening());
    out.insert("weight_decay", o.weight_decay());
    out.insert("nesterov", o.nesterov());
    out.insert("maximize", false);
    out.insert("foreach", c10::IValue());
    out.insert("differentiable", false);
    out.insert("fused", c10::IValue());
  }
  static bool state(const torch::optim::OptimizerParamState& s, GenericDict& out) {
    const auto* st = dynamic_cast<const torch::optim::SGDParamState*>(&s);
    if (st == nullptr) return false;
    out.insert("momentum_buffer", st->momentum_buffer().defined() ? c10::IValue(st->momentum_buffer().detach())
                                                                   : c10::IValue());
    return true;
  }
};

// {"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]},
// parameters numbered across the groups in order, as Python numbers them.
template <typename Layout>
c10::IValue state_dict_of(const torch::optim::Optimizer& optimizer, const Layout& layout, const char* name) {
  GenericDict state(c10::IntType::get(), c10::AnyType::get());
  GenericList groups(c10::AnyType::get());
  int64_t index = 0;
  for (const auto& group : optimizer.param_groups()) {
    const auto* options = Layout::options(group);
    if (options == nullptr) throw UsageError(std::string("a param group of this ") + name + " has other options");
    GenericDict packed = string_dict();
    layout.group(*options, packed);
    c10::List<int64_t> params;
    for (const at::Tensor& p : group.params()) {
      auto it = optimizer.state().find(p.unsafeGetTensorImpl());
      if (it != optimizer.state().end()) {
        GenericDict entry = string_dict();
        if (!Layout::state(*it->second, entry)) {
          throw UsageError(std::string("parameter ") + std::to_string(index) + " of this " + name +
                           " has another optimizer's state");
        }
        state.insert(index, entry);
      }
      params.push_back(index++);
    }
    packed.insert("params", params);
    groups.push_back(packed);
  }
  GenericDict out = string_dict();
  out.insert("state", state);
  out.insert("param_groups", groups);
  return out;
}

}  // namespace

c10::IValue optimizer_state_dict(const torch::optim::Optimizer& optimizer) {
  // AdamW before Adam: neither derives from the other in LibTorch, but be exact.
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) {
    return state_dict_of(optimizer, AdamLayout<torch::optim::AdamWOptions, torch::optim::AdamWParamState>{true},
                         "AdamW");
  }
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) {
    return state_dict_of(optimizer, AdamLayout<torch::optim::AdamOptions, torch::optim::AdamParamState>{false},
                         "Adam");
  }
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return state_dict_of(optimizer, SgdLayout{}, "SGD");
  throw UsageError("optimizer_state_dict supports LibTorch's SGD, Adam and AdamW (their state maps onto "
                   "torch.optim's); this optimizer is another");
}

}  // namespace ckptw
