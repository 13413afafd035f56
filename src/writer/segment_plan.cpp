#include "writer/segment_plan.hpp"

#include "ckptw/error.hpp"

namespace ckptw::detail {

SegmentPlan plan_segments(const std::vector<FileSegment>& segments, const PlanOptions& options) {
  SegmentPlan plan;
  for (const FileSegment& segment : segments) {
    if (!segment.archive) {
      plan.pieces.push_back({segment.bytes.data(), segment.bytes.size(), nullptr});
      plan.file_size += segment.bytes.size();
      continue;
    }
    const FilePlan& archive = plan.archives.emplace_back(plan_value(segment.archive, options));
    plan.tensor_count += archive.tensor_count;
    plan.storage_count += archive.storage_count;
    plan.pieces.push_back({nullptr, 0, &archive});
    plan.file_size += archive.file_size;
  }
  return plan;
}

}  // namespace ckptw::detail
