// CheckpointWriter: writes one rank's state dict as `{path}/checkpoint_{rank}.pt`
// in the format torch.save produces, then runs the commit protocol.
//
// Thread safety: one CheckpointWriter may be used from one thread at a time.
#pragma once

#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ckptw/barrier.hpp"
#include "ckptw/config.hpp"
#include "ckptw/export.hpp"
#include "ckptw/hooks.hpp"
#include "ckptw/types.hpp"
#include "ckptw/value.hpp"

namespace ckptw {

namespace detail {
struct WriterInternals;
}

/// What one write() did, for logs and benchmarks.
struct CKPTW_EXPORT WriteResult {
  std::string file;                ///< final path of this rank's file
  std::string manifest;            ///< commit manifest path; empty when none was written (see write())
  std::uint64_t bytes_written = 0; ///< size of the file
  std::uint64_t tensor_count = 0;  ///< tensors in the state dict
  std::uint64_t storage_count = 0; ///< distinct storages written (shared ones once)
  std::string io_backend;          ///< backend that wrote the file: "uring" or "posix"
  bool direct_io = false;          ///< whether the file was written with O_DIRECT
  double plan_secs = 0;            ///< walking the state dict, laying out the file (write_async: the
                                   ///< whole capture, stage_secs included)
  double stage_secs = 0;           ///< write_async: copying the tensors into staging memory, until the
                                   ///< last device copy landed; 0 for write(), whose copies overlap the
                                   ///< file's writes (write_secs)
  double write_secs = 0;           ///< copying, checksumming and writing the bytes
  double sync_secs = 0;            ///< fsync of the file, rename, fsync of the directory (the file's
                                   ///< publication; a multi-rank commit's manifest is not in it)
  // The CPU the write thread used (the caller's for write() and save(), the
  // background thread's for write_async()): the kernel's own I/O threads and
  // device copies are not in them.
  double plan_cpu_secs = 0;        ///< in plan_secs
  double write_cpu_secs = 0;       ///< in write_secs and sync_secs; copy_crc_secs is part of it
  double copy_crc_secs = 0;        ///< of write_secs: copying payloads into the write buffers and computing
                                   ///< their CRC-32s, which never waits (so it is CPU time on an idle core)
  double pre_commit_secs = 0;      ///< pre_commit hook
  double barrier_secs = 0;         ///< waiting for the other ranks
  double post_commit_secs = 0;     ///< post_commit hook
  double total_secs = 0;           ///< the whole write() call
};

/// One write of a front end that converts its own objects into a Value (the
/// Python binding does), with what that write's hooks need.
struct CKPTW_EXPORT WriteRequest {
  /// What to save.
  Value::Ptr value;
  /// Why the front end could not make `value`, in its place: the write then
  /// fails inside the commit protocol with this exception (every rank that
  /// votes throws CommitAborted naming this one), instead of leaving the other
  /// ranks waiting for a timeout as throwing before write() would.
  std::exception_ptr conversion_error;
  /// Passed to the hooks.
  HookArgs kwargs = make_state_dict();
  /// Runs this write's pre_commit and post_commit instead of the writer's
  /// commit_hook (null: the writer's). A front end binds its per-write state
  /// into it: the Python binding's holds the caller's keyword arguments as the
  /// Python objects they are, and keeps the first exception a hook raised so
  /// that the caller gets it back unchanged.
  std::shared_ptr<WriterHook> hook;
};

/// One piece of a file that CheckpointWriter::save_segments() writes.
struct CKPTW_EXPORT FileSegment {
  /// When set: written as torch.save(archive, stream) writes it into a stream
  /// (archive folder "archive", offsets from the archive's first byte).
  Value::Ptr archive;
  /// Otherwise: these bytes, as they are.
  std::string bytes;
};

/// Where save_segments() put one segment.
struct CKPTW_EXPORT SegmentWritten {
  std::uint64_t offset = 0;  ///< in the file
  std::uint64_t length = 0;
  std::uint32_t crc32 = 0;   ///< of every byte of the segment
};

struct CKPTW_EXPORT SegmentsWriteResult {
  WriteResult write;
  std::vector<SegmentWritten> segments;  ///< one per FileSegment, in order
};

class CKPTW_EXPORT CheckpointWriter {
 public:
  /// @param barrier      optional; when set, every write() waits on it before post_commit
  /// @param commit_hook  optional; pre_commit/post_commit callbacks
  /// Throws ckptw::UsageError when the config is invalid.
  CheckpointWriter(CheckpointWriterConfig config, RankInfo rank_info,
                   std::shared_ptr<Barrier> barrier = nullptr,
                   std::shared_ptr<WriterHook> commit_hook = nullptr);
  ~CheckpointWriter();

  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  CheckpointWriter(CheckpointWriter&&) noexcept;
  CheckpointWriter& operator=(CheckpointWriter&&) noexcept;

  /// Writes `state_dict` to `{path}/checkpoint_{global_rank}.pt`, creating `path`
  /// if needed, then runs pre_commit(path, kwargs), the barrier, and
  /// post_commit(path, kwargs), in that order.
  ///
  /// Commit: with one rank, or with a barrier that supports all_gather(), the
  /// ranks vote and either all commit or none does: when every rank wrote its
  /// file and ran pre_commit, rank 0 writes `{path}/checkpoint_manifest.json`
  /// (the commit point) and every rank runs post_commit; otherwise every rank
  /// throws ckptw::CommitAborted naming the failed ranks, nobody runs
  /// post_commit and no manifest exists. A rank that dies or hangs makes the
  /// others throw ckptw::TimeoutError after write_barrier_timeout_secs. With a
  /// barrier that only has execute_barrier() (the seed's), no manifest is
  /// written for more than one rank. post_commit throwing propagates; the
  /// commit stands.
  ///
  /// The file is written under a temporary name in the same directory, fsynced,
  /// renamed over the final name and the directory fsynced, so the final name
  /// holds either the previous complete file or the new complete file. On any
  /// failure before the rename the temporary file is removed and the previous
  /// file is untouched.
  ///
  /// Tensors must be dense (strided) CPU or CUDA tensors. CUDA storages are
  /// copied to the host through the staging memory and recorded with their
  /// device ("cuda:0"), as torch.save does, unless record_device_as_cpu.
  /// Throws ckptw::FormatError naming the key path for values that cannot be
  /// encoded, ckptw::IoError naming the path and errno for failed system calls.
  [[nodiscard]] WriteResult write(const std::string& path, const StateDict& state_dict,
                                  const HookArgs& kwargs);
  /// write() with empty HookArgs.
  [[nodiscard]] WriteResult write(const std::string& path, const StateDict& state_dict);

  /// write() in the background. Returns once every tensor's bytes are
  /// captured into the writer's staging memory (device tensors copied on the
  /// writer's own CUDA stream(s), ordered after the work already queued on
  /// each tensor's current stream; CPU tensors copied), so the caller may
  /// change or free its tensors at once. The file, hooks and commit protocol
  /// then run on the writer's background thread, one at a time, in call
  /// order. With snapshot_sets = 1 a call first waits for the previous write
  /// to finish; with 2 it captures into the free set while the previous
  /// write runs, and waits only when both sets are taken. write() waits for
  /// every background write. Every failure, bad input included, surfaces on
  /// the returned future only (after the commit protocol has told the other
  /// ranks); the next write works. Staging memory is allocated (and pinned
  /// when a CUDA device is present) once per set and reused; it grows to the
  /// largest state dict, up to the set's share of staging_budget_bytes.
  [[nodiscard]] std::future<WriteResult> write_async(const std::string& path, const StateDict& state_dict,
                                                     const HookArgs& kwargs);
  [[nodiscard]] std::future<WriteResult> write_async(const std::string& path, const StateDict& state_dict);

  /// write() and write_async() of any Value, torch.save's object: what a
  /// StateDict cannot say (int-keyed dicts inside string-keyed ones,
  /// collections.OrderedDict with its _metadata, shared objects) is pickled
  /// as torch.save pickles it, so a file read with CheckpointReader::read_value
  /// and written again has torch.save's bytes.
  [[nodiscard]] WriteResult write(const std::string& path, const Value::Ptr& value, const HookArgs& kwargs);
  [[nodiscard]] WriteResult write(const std::string& path, const Value::Ptr& value);
  [[nodiscard]] std::future<WriteResult> write_async(const std::string& path, const Value::Ptr& value,
                                                     const HookArgs& kwargs);
  [[nodiscard]] std::future<WriteResult> write_async(const std::string& path, const Value::Ptr& value);

  /// write() and write_async() of a WriteRequest. Throws ckptw::UsageError
  /// when it has neither a value nor a conversion_error.
  [[nodiscard]] WriteResult write(const std::string& path, const WriteRequest& request);
  [[nodiscard]] std::future<WriteResult> write_async(const std::string& path, const WriteRequest& request);

  /// torch.save(value, file): writes `value` to exactly `file` (not a
  /// checkpoint directory), the bytes torch.save would write there (its
  /// archive folder is the file's name without extension). The directory
  /// must exist. Written under a temporary name, fsynced (config.fsync) and
  /// renamed, so `file` holds the previous or the new complete file; on
  /// failure the temporary file is removed. No hooks, barrier or manifest.
  /// Waits for background writes first. Throws as write() does.
  WriteResult save(const std::string& file, const Value::Ptr& value);
  /// save() of a file made of several segments back to back: raw bytes, and
  /// whole archives, each with the bytes torch.save writes into a stream at
  /// that point (a torch.distributed.checkpoint data file is one: its bytes
  /// items, then one torch.save archive per tensor item). Committed as save()
  /// commits; returns where each segment landed and its CRC-32. Device
  /// storages are copied on ckptw's stream, after the work already queued
  /// on the calling thread's current stream, one ring buffer at a time and
  /// straight into it: a file of any size holds no host memory beyond the
  /// ring (and is recorded at its device unless config.record_device_as_cpu,
  /// as torch.save records it). Throws as write() does.
  SegmentsWriteResult save_segments(const std::string& file, const std::vector<FileSegment>& segments);
  /// Allocates (and, where a GPU is visible, pins) `bytes` of staging memory
  /// in every snapshot set now, so that no write_async() of up to `bytes`
  /// pays for it. Throws ckptw::UsageError beyond a set's share of
  /// staging_budget_bytes. Without reserve(), a state dict of CPU tensors
  /// only is staged into unpinned memory and creates no CUDA context, even
  /// where a GPU is visible; pinning happens at the first capture with
  /// device tensors.
  void reserve(std::size_t bytes);

  /// Waits for the writes in flight (at most close_timeout_secs, else
  /// ckptw::TimeoutError and the writer stays open), then releases the
  /// writer's buffers. Idempotent; writing after close() throws
  /// ckptw::UsageError.
  ///
  /// fork(): a writer belongs to the process that made it. In a child
  /// fork()ed from that process (a DataLoader worker) every call but close()
  /// throws ckptw::UsageError, and close() and the destructor release
  /// nothing there: the writer's threads, write ring (kept out of children)
  /// and CUDA state are the parent's. Make a new writer in the child.
  void close();

  const CheckpointWriterConfig& config() const noexcept;
  const RankInfo& rank_info() const noexcept;

 private:
  friend struct detail::WriterInternals;  // tests inject an I/O backend
  class Impl;
  explicit CheckpointWriter(std::unique_ptr<Impl> impl);
  // The Impl, when `what` may run on it in this process; else ckptw::UsageError.
  Impl& usable(const char* what, const std::string& path = {}) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckptw
