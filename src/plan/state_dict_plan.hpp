// Planning: a Value (or a StateDict, through to_value) becomes a FilePlan (pickle + storage records, laid out).
//
// Validates every value on the way and throws ckptw::FormatError naming the key
// path (`model.layers[3].weight`) for anything torch.save's format cannot hold
// or that ckptw does not encode. Nothing touches the disk here.
#pragma once

#include <string>

#include "ckptw/types.hpp"
#include "ckptw/value.hpp"
#include "plan/file_plan.hpp"

namespace ckptw::detail {

struct PlanOptions {
  std::string folder = "archive";  ///< archive folder (see archive_folder_for)
  std::uint32_t alignment = 64;
  /// Record every tensor's location as "cpu" instead of its device.
  bool record_device_as_cpu = false;
};

/// The FilePlan keeps the state dict's tensor memory alive until it is
/// destroyed. Records of device storages point at device memory (their
/// `device` set); stage_records() gives them host copies.
FilePlan plan_state_dict(const StateDict& state_dict, const PlanOptions& options);
/// Any Value as the root (torch.save saves any object; a state dict is a dict).
FilePlan plan_value(const Value::Ptr& root, const PlanOptions& options);

}  // namespace ckptw::detail
