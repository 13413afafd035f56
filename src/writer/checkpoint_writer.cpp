#include "ckptw/checkpoint_writer.hpp"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "ckptw/error.hpp"
#include "commit/atomic_file.hpp"
#include "commit/barrier_guard.hpp"
#include "commit/manifest.hpp"
#include "commit/manifest_file.hpp"
#include "io/io_backend.hpp"
#include "plan/state_dict_plan.hpp"
#include "util/stopwatch.hpp"
#include "io/buffer_ring.hpp"
#include "stage/copy_engine.hpp"
#include "stage/host_pin.hpp"
#include "stage/snapshot_arena.hpp"
#include "stage/stage_records.hpp"
#include "writer/image_streamer.hpp"
#include "writer/published_file.hpp"
#include "writer/segment_plan.hpp"
#include "writer/writer_config.hpp"
#include "writer/writer_internals.hpp"

namespace ckptw {
namespace {

// What write_file() streams: the file's plan and, beside it, the state of
// its staging (the file image, copies and device CRCs still in flight).
struct StagedPlan {
  detail::FilePlan plan;
  detail::Staging staging;
};

}  // namespace

class CheckpointWriter::Impl {
 public:
  Impl(CheckpointWriterConfig config, RankInfo rank_info, std::shared_ptr<Barrier> barrier,
       std::shared_ptr<WriterHook> hook, std::unique_ptr<detail::IoBackend> io,
       std::unique_ptr<detail::CopyEngine> engine = nullptr, bool engine_for_every_plan = false)
      : engine_for_every_plan_(engine_for_every_plan),
        config_(config),
        rank_info_(rank_info),
        barrier_(std::move(barrier)),
        hook_(std::move(hook)),
        io_(io ? std::move(io) : detail::make_backend(config.io_backend, config.queue_depth)),
        ring_(std::make_unique<detail::BufferRing>(config.ring_buffers, config.write_buffer_bytes)),
        engine_(std::move(engine)) {
    for (unsigned i = 0; i < config.snapshot_sets; ++i) {
      arenas_.push_back(std::make_unique<detail::SnapshotArena>(config.staging_budget_bytes / config.snapshot_sets));
      free_arenas_.push_back(i);
    }
    staging_memory_.resize(arenas_.size());
  }

  // The commit protocol (docs/commit.md). With a barrier that can vote and
  // more than one rank:
  //   1. plan; rank 0 removes the old manifest       -> vote "planned"
  //   2. write, fsync, publish own file; pre_commit   -> vote "written" (+ size, checksum)
  //   3. rank 0 writes the manifest under a temp name -> vote "manifest ready"
  //   4. rank 0 renames the manifest (the commit point)  -> vote "committed"
  //   5. post_commit.
  // Every rank joins every vote even after a local failure, so a failing rank
  // never leaves the others hanging, and all ranks see the same outcome.
  // Rank 0 removes the old manifest before the first vote completes, so no
  // rank publishes a new file while an old manifest still claims the
  // directory: it never looks committed while holding a mix of files.
  // The last vote makes the other ranks wait for rank 0's rename to be
  // durable, so no rank reports a commit that is not on disk.
  // `hook`: this write's hooks; null: the writer's.
  WriteResult write(const std::string& path, const detail::PlanInput& input, const HookArgs& kwargs,
                    const std::shared_ptr<WriterHook>& hook) {
    check_writable(path, "write()");
    wait_for_background_write();
    // Planned in the protocol's first phase, so that bad input on one rank
    // aborts every rank through the vote.
    detail::FinishCopiesOnExit finish_copies;
    return protocol(path, kwargs, hook ? hook.get() : hook_.get(), [&](WriteResult& result) {
      return plan_and_stage_device_records(file_path(path), input, result, finish_copies);
    });
  }

  // One file at exactly `file` (its directory must exist, as for
  // torch.save), under a temporary name until it is complete; no hooks,
  // barrier or manifest. `plan` fills in the counts and returns the file's
  // size; `stream` writes it.
  WriteResult save_file(const std::string& file, const char* what,
                        const std::function<std::uint64_t(WriteResult&)>& plan, const detail::StreamFile& stream) {
    check_writable(file, what);
    wait_for_background_write();
    detail::Stopwatch total;
    detail::Stopwatch phase;
    detail::ThreadCpuStopwatch cpu;
    WriteResult result;
    result.file = file;
    result.io_backend = io_->name();
    const std::uint64_t file_size = plan(result);
    detail::remove_stale_temp_files(*io_, detail::parent_directory(file),
                                    {detail::temp_prefix_for(detail::base_name(file))});
    result.plan_secs = phase.lap();
    result.plan_cpu_secs = cpu.lap();
    (void)write_file(file_size, result, stream, [](const detail::Vote&) {});
    result.write_secs = phase.lap() - result.sync_secs;
    result.write_cpu_secs = cpu.lap();
    result.total_secs = total.elapsed();
    return result;
  }

  // torch.save(value, file).
  WriteResult save(const std::string& file, const detail::PlanInput& input) {
    detail::FinishCopiesOnExit finish_copies;
    StagedPlan staged;
    return save_file(
        file, "save()",
        [&](WriteResult& result) {
          staged = plan_and_stage_device_records(file, input, result, finish_copies);
          return staged.plan.file_size;
        },
        stream_staged(staged));
  }

  SegmentsWriteResult save_segments(const std::string& file, const std::vector<FileSegment>& segments) {
    detail::SegmentPlan planned;
    SegmentsWriteResult out;
    detail::FinishCopiesOnExit finish_copies;
    out.write = save_file(
        file, "save_segments()",
        [&](WriteResult& result) {
          planned = detail::plan_segments(segments, detail::plan_options(config_, "archive"));
          for (detail::FilePlan& archive : planned.archives) {
            const int device = archive.first_device();
            if (device < 0) continue;  // a host-only file needs no copy engine
            finish_copies.engine = &engine();
            // Device storages stream through the ring a buffer at a time: page-locked (tried once, held
            // for the writer's life), each piece is a DMA, not a copy through the driver's bounce buffer.
            if (!std::exchange(ring_pin_tried_, true)) {
              (void)ring_pin_.pin(engine(), ring_->data(0), ring_->count() * ring_->buffer_bytes(), device);
            }
            (void)detail::stream_device_records(archive, engine(), detail::stage_options(config_));
          }
          result.tensor_count = planned.tensor_count;
          result.storage_count = planned.storage_count;
          return planned.file_size;
        },
        [&](detail::ImageStreamer& streamer, detail::WriteQueue& queue, const detail::TempFile& temp) {
          detail::ImageStreamer::Result streamed{planned.file_size, 0, 0};
          for (const auto& landed : streamer.stream_segments(planned.pieces, queue, temp.temp_path(), temp.direct(),
                                                             &streamed.copy_crc_secs)) {
            out.segments.push_back(SegmentWritten{landed.offset, landed.length, landed.crc32});
          }
          return streamed;
        });
    return out;
  }

  // Captures every payload into a free snapshot set on the caller's thread,
  // then queues the protocol for the background thread, which runs queued
  // writes in call order and frees each set when its write is done. A
  // capture failure (bad input) runs the protocol too, failing at "plan", so
  // other ranks are not left waiting; *capture_error tells the caller it
  // happened.
  std::future<WriteResult> write_async(const std::string& path, const detail::PlanInput& input,
                                       const HookArgs& kwargs, const std::shared_ptr<WriterHook>& hook,
                                       std::exception_ptr* capture_error) {
    check_writable(path, "write_async()");
    detail::require_own_collectives(barrier_.get(), path);
    auto job = std::make_unique<Job>();
    job->path = path;
    job->kwargs = kwargs;
    job->hook = hook ? hook : hook_;
    job->arena = take_free_arena();
    detail::Stopwatch capture;
    const detail::ThreadCpuStopwatch capture_cpu;
    try {
      job->staged.plan = make_plan(detail::archive_folder_for(file_path(path)), input, job->planned);
      const double planned = capture.elapsed();
      job->staged.staging = detail::stage_records(job->staged.plan, detail::StageWhat::kAllRecords,
                                                  *arenas_[job->arena], engine_for(job->staged.plan), detail::stage_options(config_));
      job->planned.stage_secs = capture.elapsed() - planned;
    } catch (...) {
      job->capture_error = std::current_exception();
      job->staged = StagedPlan();
    }
    note_staging_memory(job->arena);
    job->planned.plan_secs = capture.elapsed();
    job->planned.plan_cpu_secs = capture_cpu.elapsed();
    if (capture_error) *capture_error = job->capture_error;
    std::future<WriteResult> future = job->result.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
      if (!worker_.joinable()) worker_ = std::thread([this] { run_background_writes(); });
    }
    changed_.notify_all();
    return future;
  }

  unsigned staging_allocations() const {
    unsigned total = 0;
    for (const auto& arena : arenas_) total += arena->allocations();
    return total;
  }

  // Every set, so that no capture up to `bytes` allocates or pins.
  void reserve(std::size_t bytes) {
    check_open("reserve()");
    wait_for_background_write();
    for (std::size_t i = 0; i < arenas_.size(); ++i) {
      NoteStagingMemoryOnExit note{this, i};
      (void)arenas_[i]->reserve(bytes, engine());
    }
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    if (worker_.joinable()) worker_.join();  // a queued write finishes first: never abandon files half-written
  }

  // Where one write's plan comes from: planned inside the protocol (write)
  // or captured before it (write_async).
  using PlanStep = std::function<StagedPlan(WriteResult&)>;

  WriteResult protocol(const std::string& path, const HookArgs& kwargs, WriterHook* hook,
                       const PlanStep& make_plan_step) {
    detail::Stopwatch total;
    detail::Stopwatch phase;
    detail::ThreadCpuStopwatch cpu;
    WriteResult result;
    result.file = file_path(path);
    result.io_backend = io_->name();
    const bool voting = barrier_ && barrier_->supports_all_gather() && rank_info_.global_world_size > 1;
    const bool rank0 = rank_info_.global_rank == 0;
    const std::string manifest_path = path + "/" + kManifestFileName;

    std::exception_ptr failure;
    std::string failed_phase;
    auto attempt = [&](const char* phase_name, const std::function<void()>& step) {
      if (failure) return;
      try {
        step();
      } catch (...) {
        failure = std::current_exception();
        failed_phase = phase_name;
      }
    };

    // 1. Plan first: invalid input fails before anything touches the disk.
    StagedPlan staged;
    std::vector<std::string> created;
    // A write that does not commit removes the directories it created (if
    // they ended up empty): a failed save leaves nothing behind.
    bool committed = false;
    struct RemoveCreatedUnlessCommitted {
      detail::IoBackend& io;
      const std::vector<std::string>& created;
      const bool& committed;
      ~RemoveCreatedUnlessCommitted() {
        if (!committed) detail::remove_created_directories(io, created);
      }
    } remove_created{*io_, created, committed};
    attempt("plan", [&] {
      staged = make_plan_step(result);
      created = detail::make_directories(*io_, path);
      detail::remove_stale_temp_files(*io_, path, own_temp_prefixes(rank0));
      if (rank0 && rank_info_.global_world_size > 1) detail::remove_manifest(*io_, manifest_path, path);
    });
    result.plan_secs += phase.lap();  // write_async: after its capture, set by make_plan_step
    result.plan_cpu_secs += cpu.lap();
    if (voting) {
      vote(failure, failed_phase, detail::encode_vote(!failure, 0, 0, failed_phase), path, result);
    }
    if (failure) std::rethrow_exception(failure);

    // 2. This rank's file, published under its final name.
    std::uint32_t directory_crc = 0;
    std::unique_ptr<detail::TempFile> single_rank_manifest;
    // A single rank prepares its manifest before touching the previous
    // checkpoint (a full disk or quota then fails the save while the old one
    // is still committed) and removes the old manifest just before the rename
    // replaces the file it describes: what remains between removing the old
    // manifest and publishing the new one is renames and fsyncs.
    attempt("write", [&] {
      directory_crc = write_file(staged.plan.file_size, result, stream_staged(staged), [&](const detail::Vote& written) {
        if (rank_info_.global_world_size != 1) return;
        single_rank_manifest = detail::prepare_manifest(*io_, manifest_path, {written});
        detail::remove_manifest(*io_, manifest_path, path);
      });
    });
    staged = StagedPlan();  // releases the state dict's tensors before the hooks and votes
    result.write_secs = phase.lap() - result.sync_secs;
    result.write_cpu_secs = cpu.lap();
    attempt("pre_commit", [&] {
      if (hook) hook->pre_commit(path, kwargs);
    });
    result.pre_commit_secs = phase.lap();

    if (voting) {
      std::vector<detail::Vote> votes = vote(
          failure, failed_phase, detail::encode_vote(!failure, result.bytes_written, directory_crc, failed_phase),
          path, result);
      // 3. The manifest, prepared by rank 0 and made visible only once every
      //    rank has confirmed it is ready.
      std::unique_ptr<detail::TempFile> manifest;
      attempt("manifest", [&] {
        if (rank0) manifest = detail::prepare_manifest(*io_, manifest_path, votes);
      });
      vote(failure, failed_phase, detail::encode_vote(!failure, 0, 0, failed_phase), path, result);
      // 4. The commit point, confirmed to every rank.
      attempt("commit", [&] {
        if (rank0) detail::publish_manifest(*io_, *manifest, config_.fsync);
      });
      vote(failure, failed_phase, detail::encode_vote(!failure, 0, 0, failed_phase), path, result);
      result.manifest = manifest_path;
    } else {
      if (failure) std::rethrow_exception(failure);
      if (barrier_) barrier_->execute_barrier();  // the seed's plain barrier
      if (single_rank_manifest) {
        detail::publish_manifest(*io_, *single_rank_manifest, config_.fsync);
        result.manifest = manifest_path;
      }
    }
    committed = true;
    result.barrier_secs = phase.lap();

    // 5. After the commit: a failing post_commit is the caller's to handle;
    //    the checkpoint stays committed.
    if (hook) hook->post_commit(path, kwargs);
    result.post_commit_secs = phase.lap();
    result.total_secs = total.elapsed();
    return result;
  }

  void close() {
    if (closed_) return;
    std::unique_lock<std::mutex> lock(mutex_);
    const int timeout = config_.close_timeout_secs;
    if (!changed_.wait_for(lock, std::chrono::seconds(timeout), [this] { return jobs_.empty() && !busy_; })) {
      throw TimeoutError("close(): the writes in flight did not finish within close_timeout_secs (" +
                         std::to_string(timeout) + " s)");
    }
    closed_ = true;
    ring_pin_.release();
    ring_.reset();
  }

  const bool engine_for_every_plan_;  // an injected engine stages CPU-only plans too (tests)
  CheckpointWriterConfig config_;
  RankInfo rank_info_;
  // A fork()ed child has a copy of this object but not worker_, the ring
  // (MADV_DONTFORK) nor the CUDA state: only the maker may use it.
  const pid_t made_in_ = ::getpid();
  bool made_in_this_process() const noexcept { return made_in_ == ::getpid(); }

 private:
  struct Job {
    std::string path;
    HookArgs kwargs = make_state_dict();
    std::shared_ptr<WriterHook> hook;  // this write's, or the writer's
    StagedPlan staged;
    WriteResult planned;              // counts and capture time, filled before the protocol
    std::size_t arena = 0;            // the snapshot set holding the captured payloads
    std::exception_ptr capture_error;
    std::promise<WriteResult> result;
  };

  void check_open(const char* what, const std::string& path = {}) const {
    if (closed_) throw UsageError(std::string(what) + " on a closed CheckpointWriter", path);
  }

  void check_writable(const std::string& path, const char* what) const {
    check_open(what, path);
    if (path.empty()) throw UsageError("checkpoint path is empty");
  }

  std::string file_path(const std::string& dir) const {
    return dir + "/" + rank_file_name(rank_info_.global_rank);
  }

  // The plan of `file`, its device storages being copied to the host
  // through the first staging set (pinned, reused), not one pageable copy
  // per storage; the file's writes start as soon as the first copies land.
  StagedPlan plan_and_stage_device_records(const std::string& file, const detail::PlanInput& input,
                                           WriteResult& result, detail::FinishCopiesOnExit& finish_copies) {
    StagedPlan staged;
    staged.plan = make_plan(detail::archive_folder_for(file), input, result);
    detail::CopyEngine& copies = engine_for(staged.plan);
    finish_copies.engine = &copies;
    NoteStagingMemoryOnExit note{this, 0};  // also when staging fails after growing the set
    staged.staging =
        detail::stage_records(staged.plan, detail::StageWhat::kDeviceRecords, *arenas_.front(), copies, detail::stage_options(config_));
    return staged;
  }

  // `folder`: the archive's (detail::archive_folder_for its file).
  detail::FilePlan make_plan(const std::string& folder, const detail::PlanInput& input, WriteResult& result) const {
    detail::FilePlan plan = detail::plan_value(input.root(), detail::plan_options(config_, folder));
    result.tensor_count = plan.tensor_count;
    result.storage_count = plan.storage_count;
    return plan;
  }

  // The engine for staging with a GPU when one is visible (reserve() pins
  // with it: the caller asked for staging memory up front).
  detail::CopyEngine& engine() {
    if (!engine_) engine_ = detail::make_copy_engine();
    return *engine_;
  }

  // The engine that stages `plan`: the GPU one only when the plan holds
  // device storages. A CPU-only state dict on a GPU host is staged by
  // memcpy into unpinned memory, creating no CUDA context and pinning
  // nothing (cudaHostRegister would make a context on the current device).
  detail::CopyEngine& engine_for(const detail::FilePlan& plan) {
    if (engine_for_every_plan_ || plan.holds_device_storages()) return engine();
    if (!host_engine_) host_engine_ = detail::make_host_copy_engine();
    return *host_engine_;
  }

  void wait_for_background_write() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return jobs_.empty() && !busy_; });
  }

  // A snapshot set no queued or running write holds; waits for one.
  std::size_t take_free_arena() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !free_arenas_.empty(); });
    const std::size_t arena = free_arenas_.back();
    free_arenas_.pop_back();
    return arena;
  }

  // Records where snapshot set `index` lives now, by the thread that just
  // (re)allocated it; write_file() declares the sets to the I/O backend
  // before each queue, so io_uring registers them (and re-registers after a
  // set grew) and never serves a write from a stale range.
  void note_staging_memory(std::size_t index) {
    std::lock_guard<std::mutex> lock(mutex_);
    staging_memory_[index] = detail::MemoryRegion{arenas_[index]->data(), arenas_[index]->capacity()};
  }

  struct NoteStagingMemoryOnExit {
    Impl* impl;
    std::size_t index;
    ~NoteStagingMemoryOnExit() { impl->note_staging_memory(index); }
  };

  std::vector<detail::MemoryRegion> staging_memory() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<detail::MemoryRegion> regions;
    for (const auto& region : staging_memory_) {
      if (region.data != nullptr) regions.push_back(region);
    }
    return regions;
  }

  void run_background_writes() {
    while (true) {
      std::unique_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        busy_ = true;
      }
      try {
        job->result.set_value(protocol(job->path, job->kwargs, job->hook.get(), [&job](WriteResult& result) {
          if (job->capture_error) std::rethrow_exception(job->capture_error);
          result.tensor_count = job->planned.tensor_count;
          result.storage_count = job->planned.storage_count;
          result.plan_secs = job->planned.plan_secs;
          result.plan_cpu_secs = job->planned.plan_cpu_secs;
          result.stage_secs = job->planned.stage_secs;
          return std::move(job->staged);
        }));
      } catch (...) {
        job->result.set_exception(std::current_exception());
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        free_arenas_.push_back(job->arena);  // the protocol no longer refers to the captured payloads
        busy_ = false;
      }
      changed_.notify_all();
    }
  }

  std::uint32_t write_file(std::uint64_t file_size, WriteResult& result, const detail::StreamFile& stream,
                           const std::function<void(const detail::Vote&)>& before_publish) {
    return detail::write_published_file(*io_, *ring_, config_, staging_memory(), file_size, result, stream,
                                        before_publish);
  }

  detail::StreamFile stream_staged(const StagedPlan& staged) {
    return [this, &staged](detail::ImageStreamer& streamer, detail::WriteQueue& queue, const detail::TempFile& file) {
      return streamer.stream(staged.plan, queue, file.temp_path(), file.direct(), &staged.staging,
                             &engine_for(staged.plan));
    };
  }

  // Temp-name prefixes this rank owns in the checkpoint directory: leftovers
  // of its own killed writes. Other ranks' and foreign files are left alone.
  std::vector<std::string> own_temp_prefixes(bool rank0) const {
    std::vector<std::string> prefixes{
        detail::temp_prefix_for(rank_file_name(rank_info_.global_rank))};
    if (rank0) prefixes.push_back(detail::temp_prefix_for(kManifestFileName));
    return prefixes;
  }

  // One all-gather of the ranks' votes under the barrier deadline. Throws
  // CommitAborted on every rank when any rank voted no; this rank's own
  // failure, if any, is named in the message.
  std::vector<detail::Vote> vote(const std::exception_ptr& failure, const std::string& failed_phase,
                                 const std::string& message, const std::string& path, WriteResult& result) {
    detail::Stopwatch waited;
    std::vector<std::string> messages =
        barrier_->all_gather(message, std::chrono::seconds(config_.write_barrier_timeout_secs));
    result.barrier_secs += waited.elapsed();
    return detail::tally_votes(messages, failure, failed_phase, path);
  }

  std::shared_ptr<Barrier> barrier_;
  std::shared_ptr<WriterHook> hook_;
  std::unique_ptr<detail::IoBackend> io_;
  std::unique_ptr<detail::BufferRing> ring_;  // allocated once, reused by every write
  // Created at the first capture that needs each; both outlive arenas_,
  // which remember the engine that pinned them.
  std::unique_ptr<detail::CopyEngine> engine_;
  std::unique_ptr<detail::CopyEngine> host_engine_;
  detail::HostPin ring_pin_;  // after engine_ and ring_: released before either goes
  bool ring_pin_tried_ = false;
  // Snapshot sets (config.snapshot_sets), reused by every write; write()
  // stages through the first once no background write runs.
  std::vector<std::unique_ptr<detail::SnapshotArena>> arenas_;
  bool closed_ = false;

  // Background writes (write_async), run one at a time by worker_ in call order.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Job>> jobs_;           // captured, not yet started
  std::vector<std::size_t> free_arenas_;            // sets no queued or running write holds
  std::vector<detail::MemoryRegion> staging_memory_;  // where each set lives (note_staging_memory)
  bool busy_ = false;                               // worker_ is writing
  bool stopping_ = false;
  std::thread worker_;        // started by the first write_async
};

CheckpointWriter::CheckpointWriter(CheckpointWriterConfig config, RankInfo rank_info,
                                   std::shared_ptr<Barrier> barrier,
                                   std::shared_ptr<WriterHook> commit_hook) {
  detail::validate_writer_config(config, rank_info);
  impl_ = std::make_unique<Impl>(config, rank_info, std::move(barrier), std::move(commit_hook), nullptr);
}

namespace detail {

CheckpointWriter WriterInternals::make(CheckpointWriterConfig config, RankInfo rank_info,
                                       std::shared_ptr<Barrier> barrier, std::shared_ptr<WriterHook> hook,
                                       std::unique_ptr<IoBackend> io, std::unique_ptr<CopyEngine> engine,
                                       bool engine_for_device_plans_only) {
  detail::validate_writer_config(config, rank_info);
  const bool every_plan = engine != nullptr && !engine_for_device_plans_only;
  return CheckpointWriter(std::make_unique<CheckpointWriter::Impl>(
      config, rank_info, std::move(barrier), std::move(hook), std::move(io), std::move(engine), every_plan));
}

unsigned WriterInternals::staging_allocations(const CheckpointWriter& writer) {
  return writer.impl_ ? writer.impl_->staging_allocations() : 0;
}

std::future<WriteResult> WriterInternals::write_async(CheckpointWriter& writer, const std::string& path,
                                                      const StateDict& state_dict, const HookArgs& kwargs,
                                                      std::exception_ptr* capture_error) {
  return writer.usable("write_async()", path)
      .write_async(path, PlanInput{&state_dict, nullptr, nullptr}, kwargs, nullptr, capture_error);
}

}  // namespace detail

CheckpointWriter::CheckpointWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// A fork()ed child leaves the Impl (its destructor would join a thread this
// process does not run), as it leaves the parent's other memory.
CheckpointWriter::~CheckpointWriter() {
  if (impl_ && !impl_->made_in_this_process()) (void)impl_.release();
}
CheckpointWriter::CheckpointWriter(CheckpointWriter&&) noexcept = default;
CheckpointWriter& CheckpointWriter::operator=(CheckpointWriter&& other) noexcept {
  if (this == &other) return *this;
  if (impl_ && !impl_->made_in_this_process()) (void)impl_.release();
  impl_ = std::move(other.impl_);
  return *this;
}

CheckpointWriter::Impl& CheckpointWriter::usable(const char* what, const std::string& path) const {
  if (!impl_) throw UsageError(std::string(what) + " on a moved-from CheckpointWriter", path);
  if (!impl_->made_in_this_process()) {
    throw UsageError(std::string(what) + " in a process fork()ed from the one that made this CheckpointWriter (pid " +
                         std::to_string(impl_->made_in_) +
                         "), whose threads and write ring stay there: make a new writer in this process",
                     path);
  }
  return *impl_;
}

WriteResult CheckpointWriter::write(const std::string& path, const StateDict& state_dict,
                                    const HookArgs& kwargs) {
  return usable("write()", path).write(path, detail::PlanInput{&state_dict, nullptr, nullptr}, kwargs, nullptr);
}

WriteResult CheckpointWriter::write(const std::string& path, const StateDict& state_dict) {
  return write(path, state_dict, make_state_dict());
}

std::future<WriteResult> CheckpointWriter::write_async(const std::string& path, const StateDict& state_dict,
                                                       const HookArgs& kwargs) {
  return usable("write_async()", path)
      .write_async(path, detail::PlanInput{&state_dict, nullptr, nullptr}, kwargs, nullptr, nullptr);
}

std::future<WriteResult> CheckpointWriter::write_async(const std::string& path, const StateDict& state_dict) {
  return write_async(path, state_dict, make_state_dict());
}

WriteResult CheckpointWriter::write(const std::string& path, const Value::Ptr& value, const HookArgs& kwargs) {
  Impl& impl = usable("write()", path);
  if (!value) throw UsageError("write() of a null Value", path);
  return impl.write(path, detail::PlanInput{nullptr, value, nullptr}, kwargs, nullptr);
}

WriteResult CheckpointWriter::write(const std::string& path, const Value::Ptr& value) {
  return write(path, value, make_state_dict());
}

std::future<WriteResult> CheckpointWriter::write_async(const std::string& path, const Value::Ptr& value,
                                                       const HookArgs& kwargs) {
  Impl& impl = usable("write_async()", path);
  if (!value) throw UsageError("write_async() of a null Value", path);
  return impl.write_async(path, detail::PlanInput{nullptr, value, nullptr}, kwargs, nullptr, nullptr);
}

std::future<WriteResult> CheckpointWriter::write_async(const std::string& path, const Value::Ptr& value) {
  return write_async(path, value, make_state_dict());
}

namespace {
detail::PlanInput plan_input(const WriteRequest& request, const std::string& path, const char* what) {
  if (!request.value && !request.conversion_error) {
    throw UsageError(std::string(what) + " of a WriteRequest with neither a value nor a conversion_error", path);
  }
  return detail::PlanInput{nullptr, request.value, request.conversion_error};
}
}  // namespace

WriteResult CheckpointWriter::write(const std::string& path, const WriteRequest& request) {
  return usable("write()", path).write(path, plan_input(request, path, "write()"), request.kwargs, request.hook);
}

std::future<WriteResult> CheckpointWriter::write_async(const std::string& path, const WriteRequest& request) {
  return usable("write_async()", path)
      .write_async(path, plan_input(request, path, "write_async()"), request.kwargs, request.hook, nullptr);
}

WriteResult CheckpointWriter::save(const std::string& file, const Value::Ptr& value) {
  Impl& impl = usable("save()", file);
  if (!value) throw UsageError("save() of a null Value", file);
  return impl.save(file, detail::PlanInput{nullptr, value, nullptr});
}

SegmentsWriteResult CheckpointWriter::save_segments(const std::string& file, const std::vector<FileSegment>& segments) {
  return usable("save_segments()", file).save_segments(file, segments);
}

void CheckpointWriter::reserve(std::size_t bytes) { usable("reserve()").reserve(bytes); }

void CheckpointWriter::close() {
  if (impl_ && impl_->made_in_this_process()) impl_->close();
}

const CheckpointWriterConfig& CheckpointWriter::config() const noexcept { return impl_->config_; }
const RankInfo& CheckpointWriter::rank_info() const noexcept { return impl_->rank_info_; }

}  // namespace ckptw
