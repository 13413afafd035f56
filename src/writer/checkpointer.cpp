#include "ckptw/checkpointer.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "ckptw/error.hpp"
#include "stage/snapshot.hpp"

namespace ckptw {
namespace {

ReadOptions with_overrides(ReadOptions options, std::optional<c10::Device> map_location, std::optional<bool> strict) {
  if (map_location) options.map_location = map_location;
  if (strict) options.strict = *strict;
  return options;
}

}  // namespace

SyncCheckpointer::SyncCheckpointer(std::shared_ptr<CheckpointWriter> writer, std::shared_ptr<CheckpointReader> reader,
                                   ReadOptions read_defaults)
    : writer_(std::move(writer)), reader_(std::move(reader)), read_defaults_(std::move(read_defaults)) {}

SyncCheckpointer::~SyncCheckpointer() = default;

WriteResult SyncCheckpointer::save(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs) {
  return writer_->write(path, state_dict, kwargs);
}

WriteResult SyncCheckpointer::save(const std::string& path, const StateDict& state_dict) {
  return writer_->write(path, state_dict);
}

ReadResult SyncCheckpointer::load(const std::string& path, const std::optional<StateDict>& state_dict_template,
                                  std::optional<c10::Device> map_location, std::optional<bool> strict) {
  return reader_->read(path, state_dict_template, with_overrides(read_defaults_, map_location, strict));
}

void SyncCheckpointer::close() { writer_->close(); }

// One background thread runs the writes, one at a time. The caller's thread
// snapshots the state dict, so its tensors are free once save() returns.
class AsyncCheckpointer::Impl {
 public:
  Impl(std::shared_ptr<CheckpointWriter> writer, std::shared_ptr<CheckpointReader> reader, ReadOptions read,
       int close_timeout_secs)
      : writer_(std::move(writer)), reader_(std::move(reader)), read_(std::move(read)),
        close_timeout_(close_timeout_secs), worker_([this] { run(); }) {}

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    worker_.join();  // finishes a queued write first: never abandon files half-written
  }

  AsyncSave save(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs) {
    if (closed_) throw UsageError("save() on a closed AsyncCheckpointer", path);
    // One write in flight: wait for the previous one (its outcome belongs to its own future).
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] { return !job_ && !busy_; });
    }
    std::promise<void> staged;
    AsyncSave handles{staged.get_future().share(), {}};
    Job job;
    job.path = path;
    job.kwargs = kwargs;
    try {
      job.state_dict = detail::snapshot_state_dict(state_dict);
      staged.set_value();
    } catch (...) {
      staged.set_exception(std::current_exception());
      std::promise<WriteResult> failed;
      failed.set_exception(std::current_exception());
      handles.write = failed.get_future().share();
      return handles;
    }
    handles.write = job.result.get_future().share();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
    }
    changed_.notify_all();
    return handles;
  }

  ReadResult load(const std::string& path, const std::optional<StateDict>& tmpl, std::optional<c10::Device> map_location,
                  std::optional<bool> strict) {
    return reader_->read(path, tmpl, with_overrides(read_, map_location, strict));
  }

  void close() {
    if (closed_) return;
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, std::chrono::seconds(close_timeout_), [this] { return !job_ && !busy_; })) {
      throw TimeoutError("AsyncCheckpointer::close: the in-flight save did not finish within " +
                         std::to_string(close_timeout_) + " s");
    }
    closed_ = true;
    writer_->close();
  }

 private:
  struct Job {
    std::string path;
    StateDict state_dict = make_state_dict();
    HookArgs kwargs = make_state_dict();
    std::promise<WriteResult> result;
  };

  void run() {
    while (true) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return stopping_ || job_.has_value(); });
        if (!job_) return;
        job = std::move(*job_);
        job_.reset();
        busy_ = true;
      }
      try {
        job.result.set_value(writer_->write(job.path, job.state_dict, job.kwargs));
      } catch (...) {
        job.result.set_exception(std::current_exception());
      }
      job.state_dict = make_state_dict();  // drop the snapshot before signalling: bounded memory
      {
        std::lock_guard<std::mutex> lock(mutex_);
        busy_ = false;
      }
      changed_.notify_all();
    }
  }

  std::shared_ptr<CheckpointWriter> writer_;
  std::shared_ptr<CheckpointReader> reader_;
  ReadOptions read_;
  int close_timeout_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<Job> job_;  // handed to the worker, not yet started
  bool busy_ = false;       // the worker is writing
  bool stopping_ = false;
  bool closed_ = false;
  std::thread worker_;      // last: starts after every member above exists
};

AsyncCheckpointer::AsyncCheckpointer(std::shared_ptr<CheckpointWriter> writer, std::shared_ptr<CheckpointReader> reader,
                                     ReadOptions read_defaults, int close_timeout_secs)
    : impl_(std::make_unique<Impl>(std::move(writer), std::move(reader), std::move(read_defaults), close_timeout_secs)) {}

AsyncCheckpointer::~AsyncCheckpointer() = default;

AsyncSave AsyncCheckpointer::save(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs) {
  return impl_->save(path, state_dict, kwargs);
}

AsyncSave AsyncCheckpointer::save(const std::string& path, const StateDict& state_dict) {
  return impl_->save(path, state_dict, make_state_dict());
}

ReadResult AsyncCheckpointer::load(const std::string& path, const std::optional<StateDict>& tmpl,
                                   std::optional<c10::Device> map_location, std::optional<bool> strict) {
  return impl_->load(path, tmpl, map_location, strict);
}

void AsyncCheckpointer::close() { impl_->close(); }

namespace {

struct Parts {
  std::shared_ptr<CheckpointWriter> writer;
  std::shared_ptr<CheckpointReader> reader;
};

Parts make_parts(const CheckpointerConfig& config, std::optional<RankInfo> rank_info, std::shared_ptr<WriterHook> hook) {
  const RankInfo rank = rank_info ? *rank_info : RankInfo::from_env();
  auto barrier = create_barrier_from_config(config.barrier, rank);
  return Parts{std::make_shared<CheckpointWriter>(config.writer, rank, std::move(barrier), std::move(hook)),
               std::make_shared<CheckpointReader>(rank)};
}

}  // namespace

std::unique_ptr<SyncCheckpointer> make_sync_checkpointer(const CheckpointerConfig& config,
                                                         std::optional<RankInfo> rank_info,
                                                         std::shared_ptr<WriterHook> hook) {
  Parts parts = make_parts(config, rank_info, std::move(hook));
  return std::make_unique<SyncCheckpointer>(parts.writer, parts.reader, config.read);
}

std::unique_ptr<AsyncCheckpointer> make_async_checkpointer(const CheckpointerConfig& config,
                                                           std::optional<RankInfo> rank_info,
                                                           std::shared_ptr<WriterHook> hook) {
  Parts parts = make_parts(config, rank_info, std::move(hook));
  return std::make_unique<AsyncCheckpointer>(parts.writer, parts.reader, config.read, config.close_timeout_secs);
}

}  // namespace ckptw
