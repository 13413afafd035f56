// The checks every CheckpointWriter's config and rank pass before anything
// is allocated.
#pragma once

#include "ckptw/config.hpp"
#include "ckptw/types.hpp"

namespace ckptw::detail {

/// Throws ckptw::UsageError naming the first field out of range.
void validate_writer_config(const CheckpointWriterConfig& config, const RankInfo& rank_info);

}  // namespace ckptw::detail
