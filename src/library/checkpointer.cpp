#include "ckptw/checkpointer.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "ckptw/error.hpp"
#include "writer/writer_internals.hpp"

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

// The writer's write_async does the work: the capture on the caller's
// thread, the write and commit on the writer's background thread.
class AsyncCheckpointer::Impl {
 public:
  Impl(std::shared_ptr<CheckpointWriter> writer, std::shared_ptr<CheckpointReader> reader, ReadOptions read,
       int close_timeout_secs)
      : writer_(std::move(writer)), reader_(std::move(reader)), read_(std::move(read)),
        close_timeout_(close_timeout_secs) {}

  AsyncSave save(const std::string& path, const StateDict& state_dict, const HookArgs& kwargs) {
    if (closed_) throw UsageError("save() on a closed AsyncCheckpointer", path);
    std::exception_ptr capture_error;
    std::shared_future<WriteResult> written =
        detail::WriterInternals::write_async(*writer_, path, state_dict, kwargs, &capture_error).share();
    std::promise<void> staged;
    if (capture_error) {
      staged.set_exception(capture_error);
    } else {
      staged.set_value();
    }
    last_write_ = written;
    return AsyncSave{staged.get_future().share(), written};
  }

  ReadResult load(const std::string& path, const std::optional<StateDict>& tmpl, std::optional<c10::Device> map_location,
                  std::optional<bool> strict) {
    return reader_->read(path, tmpl, with_overrides(read_, map_location, strict));
  }

  void close() {
    if (closed_) return;
    if (last_write_.valid() &&
        last_write_.wait_for(std::chrono::seconds(close_timeout_)) != std::future_status::ready) {
      throw TimeoutError("AsyncCheckpointer::close: the in-flight save did not finish within " +
                         std::to_string(close_timeout_) + " s");
    }
    closed_ = true;
    writer_->close();
  }

 private:
  std::shared_ptr<CheckpointWriter> writer_;
  std::shared_ptr<CheckpointReader> reader_;
  ReadOptions read_;
  int close_timeout_;
  std::shared_future<WriteResult> last_write_;
  bool closed_ = false;
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
