// Access to CheckpointWriter internals that are not public API: the fault
// tests build writers over an injected (fault-injecting) I/O backend or copy
// engine; AsyncCheckpointer learns whether a capture failed.
#pragma once


#include <exception>
#include <future>
#include <memory>

#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/value.hpp"
#include "io/io_backend.hpp"
#include "stage/copy_engine.hpp"

namespace ckptw::detail {

/// What a write saves: a state dict, or any Value. The state dict becomes a
/// Value while planning, inside the commit protocol, so that bad input on one
/// rank aborts every rank through the vote.
/// `error`: the front end could not make the Value (WriteRequest's
/// conversion_error); planning rethrows it, inside the protocol, so the
/// other ranks learn of it through the vote instead of waiting for a timeout.
struct PlanInput {
  const StateDict* state_dict = nullptr;
  Value::Ptr value;
  std::exception_ptr error;
  Value::Ptr root() const {
    if (error) std::rethrow_exception(error);
    return value ? value : to_value(*state_dict);
  }
};

struct WriterInternals {
  /// A CheckpointWriter whose every system call goes through `io` and whose
  /// captures go through `engine` (nullptr: the default for this machine).
  /// `engine` stages every plan, unless `engine_for_device_plans_only`: then,
  /// as the default GPU engine, only plans holding device storages, and a
  /// host engine the others.
  static CheckpointWriter make(CheckpointWriterConfig config, RankInfo rank_info, std::shared_ptr<Barrier> barrier,
                               std::shared_ptr<WriterHook> hook, std::unique_ptr<IoBackend> io,
                               std::unique_ptr<CopyEngine> engine = nullptr, bool engine_for_device_plans_only = false);

  /// write_async() that also says whether the capture failed (bad input);
  /// the failure reaches the future too, through the commit protocol.
  static std::future<WriteResult> write_async(CheckpointWriter& writer, const std::string& path,
                                              const StateDict& state_dict, const HookArgs& kwargs,
                                              std::exception_ptr* capture_error);

  /// How many times the writer's staging memory was (re)allocated.
  static unsigned staging_allocations(const CheckpointWriter& writer);
};

}  // namespace ckptw::detail
