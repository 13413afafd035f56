// The plan of a file of several segments (CheckpointWriter::save_segments):
// raw bytes and whole torch.save archives back to back, as a
// torch.distributed.checkpoint data file holds them.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "ckptw/checkpoint_writer.hpp"
#include "plan/state_dict_plan.hpp"
#include "writer/image_streamer.hpp"

namespace ckptw::detail {

struct SegmentPlan {
  std::deque<FilePlan> archives;  ///< a deque: `pieces` point into it
  std::vector<ImageStreamer::Segment> pieces;  ///< one per FileSegment; raw ones point into the caller's bytes
  std::uint64_t file_size = 0;
  std::uint64_t tensor_count = 0;
  std::uint64_t storage_count = 0;
};

/// Plans every archive segment with `options` (its folder included). The
/// caller's `segments` must outlive the plan. Records of device storages
/// point at device memory, as plan_value() leaves them. Throws as
/// plan_value() does.
SegmentPlan plan_segments(const std::vector<FileSegment>& segments, const PlanOptions& options);

}  // namespace ckptw::detail
