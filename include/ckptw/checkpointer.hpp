// Checkpointers: the seed's save/load front end over a CheckpointWriter and a
// CheckpointReader, synchronous or asynchronous.
#pragma once

#include <future>
#include <memory>
#include <optional>
#include <string>

#include "ckptw/barriers.hpp"
#include "ckptw/checkpoint_reader.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/export.hpp"

namespace ckptw {

/// One configuration for writer, barrier, reader and the async machinery.
struct CKPTW_EXPORT CheckpointerConfig {
  CheckpointWriterConfig writer;  ///< includes write_barrier_timeout_secs
  BarrierConfig barrier;          ///< kNone by default
  ReadOptions read;               ///< defaults for load()
  /// close() waits at most this long for an in-flight asynchronous save, then
  /// throws ckptw::TimeoutError. Default 600.
  int close_timeout_secs = 600;
};

/// save() writes and commits before it returns.
class CKPTW_EXPORT SyncCheckpointer {
 public:
  SyncCheckpointer(std::shared_ptr<CheckpointWriter> writer, std::shared_ptr<CheckpointReader> reader,
                   ReadOptions read_defaults = ReadOptions());
  ~SyncCheckpointer();

  WriteResult save(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs);
  WriteResult save(const std::string& path, const StateDict& state_dict);
  /// `map_location` and `strict` override the configured ReadOptions.
  ReadResult load(const std::string& path, const std::optional<StateDict>& state_dict_template = std::nullopt,
                  std::optional<c10::Device> map_location = std::nullopt, std::optional<bool> strict = std::nullopt);
  void close();

 private:
  std::shared_ptr<CheckpointWriter> writer_;
  std::shared_ptr<CheckpointReader> reader_;
  ReadOptions read_defaults_;
};

/// The two futures of an asynchronous save. Each must be consumed (get() or
/// wait()) by the caller; they stay valid after the checkpointer is closed.
struct CKPTW_EXPORT AsyncSave {
  /// Ready when every tensor's bytes are captured: the caller may change its tensors.
  std::shared_future<void> stage;
  /// Ready when the checkpoint is committed (hooks and barrier included), or
  /// holds the error that stopped it.
  std::shared_future<WriteResult> write;
};

/// save() captures the state dict (a copy of every storage, views and
/// sharing kept) and returns; writing, hooks and the barrier run on a
/// background thread. One write is in flight at a time: save() first waits
/// for the previous one (with the writer's snapshot_sets = 2, it captures
/// while the previous write runs and waits only when both sets are taken).
/// A failed save reports on its own future only; the next save works.
class CKPTW_EXPORT AsyncCheckpointer {
 public:
  AsyncCheckpointer(std::shared_ptr<CheckpointWriter> writer, std::shared_ptr<CheckpointReader> reader,
                    ReadOptions read_defaults = ReadOptions(), int close_timeout_secs = 600);
  ~AsyncCheckpointer();

  [[nodiscard]] AsyncSave save(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs);
  [[nodiscard]] AsyncSave save(const std::string& path, const StateDict& state_dict);
  ReadResult load(const std::string& path, const std::optional<StateDict>& state_dict_template = std::nullopt,
                  std::optional<c10::Device> map_location = std::nullopt, std::optional<bool> strict = std::nullopt);
  /// Waits for the in-flight save (at most close_timeout_secs, else
  /// ckptw::TimeoutError) and closes the writer. Idempotent.
  void close();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// Writer, barrier (from config.barrier) and reader for this rank; RankInfo
/// defaults to RankInfo::from_env().
CKPTW_EXPORT std::unique_ptr<SyncCheckpointer> make_sync_checkpointer(
    const CheckpointerConfig& config, std::optional<RankInfo> rank_info = std::nullopt,
    std::shared_ptr<WriterHook> hook = nullptr);
CKPTW_EXPORT std::unique_ptr<AsyncCheckpointer> make_async_checkpointer(
    const CheckpointerConfig& config, std::optional<RankInfo> rank_info = std::nullopt,
    std::shared_ptr<WriterHook> hook = nullptr);

}  // namespace ckptw
