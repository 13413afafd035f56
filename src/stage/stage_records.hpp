// Capturing a plan's payloads into the snapshot arena: device storages (and,
// for write_async, every storage) are copied into pinned host memory through
// the copy engine, and the plan's records are repointed at the copies.
#pragma once

#include "plan/file_plan.hpp"
#include "stage/copy_engine.hpp"
#include "stage/snapshot_arena.hpp"

namespace ckptw::detail {

enum class StageWhat { kDeviceRecords, kAllRecords };

/// Copies the payloads `what` selects into `arena` (laid out in record order,
/// large ones page-aligned), each device's copies ordered after the work
/// already queued on that device's current stream, and waits for them. With
/// kAllRecords the plan no longer refers to the caller's tensors afterwards
/// (their memory may change or go). Returns the bytes staged.
std::uint64_t stage_records(FilePlan& plan, StageWhat what, SnapshotArena& arena, CopyEngine& engine);

}  // namespace ckptw::detail
