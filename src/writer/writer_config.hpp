// The checks every CheckpointWriter's config and rank pass before anything
// is allocated, and what the config tells the planner and the stager.
#pragma once

#include <string>

#include "ckptw/config.hpp"
#include "ckptw/types.hpp"
#include "plan/state_dict_plan.hpp"
#include "stage/stage_records.hpp"

namespace ckptw::detail {

/// Throws ckptw::UsageError naming the first field out of range.
void validate_writer_config(const CheckpointWriterConfig& config, const RankInfo& rank_info);

/// The planner's options for an archive whose folder is `folder`.
PlanOptions plan_options(const CheckpointWriterConfig& config, const std::string& folder);

StageOptions stage_options(const CheckpointWriterConfig& config);

}  // namespace ckptw::detail
