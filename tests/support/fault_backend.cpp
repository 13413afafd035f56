#include "support/fault_backend.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <sys/stat.h>

#include "commit/atomic_file.hpp"

namespace ckptw::testing {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void overwrite(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("crash model: cannot restore " + path);
}

std::uint64_t inode_of_fd(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

const char* errno_name(int error) {
  switch (error) {
    case EIO: return "EIO";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    default: return "errno";
  }
}

class FaultBackend final : public detail::IoBackend {
 public:
  FaultBackend(FaultDisk& disk, int rank, std::unique_ptr<detail::IoBackend> inner)
      : disk_(disk), rank_(rank), inner_(std::move(inner)) {
    inner_->set_write_result_filter(
        [this](long result, std::size_t) { return disk_.on_write(rank_, writing_, result); });
  }

  IoBackendKind kind() const override { return inner_->kind(); }

  int create_exclusive(const std::string& path, bool direct, int* fd, bool* direct_used) override {
    auto d = disk_.before(rank_, "create", path);
    if (!d.execute) return static_cast<int>(d.result);
    int rc = inner_->create_exclusive(path, direct, fd, direct_used);
    disk_.after(rank_, rc);
    if (rc == 0) {
      paths_[*fd] = path;
      disk_.created(*fd, path);
    }
    return rc;
  }
  int preallocate(int fd, std::uint64_t size) override {
    return run("preallocate", paths_[fd], [&] { return inner_->preallocate(fd, size); });
  }
  int truncate(int fd, std::uint64_t size) override {
    return run("truncate", paths_[fd], [&] { return inner_->truncate(fd, size); });
  }
  int write_at(int fd, const void* data, std::size_t size, std::uint64_t offset) override {
    writing_ = paths_[fd];
    return inner_->write_at(fd, data, size, offset);  // each pwrite is logged by the filter
  }
  int fsync(int fd) override {
    int rc = run("fsync", paths_[fd], [&] { return inner_->fsync(fd); });
    if (rc == 0) disk_.synced(fd);
    return rc;
  }
  int close(int fd) override {
    auto d = disk_.before(rank_, "close", paths_[fd]);
    // The descriptor goes away whatever is reported (as on Linux, and as
    // when a crashed process's descriptors are closed by the kernel).
    disk_.closing(fd);
    int rc = inner_->close(fd);
    paths_.erase(fd);
    if (!d.execute) return static_cast<int>(d.result);
    disk_.after(rank_, rc);
    return rc;
  }
  int rename(const std::string& from, const std::string& to) override {
    auto d = disk_.before(rank_, "rename", to);
    if (!d.execute) return static_cast<int>(d.result);
    disk_.renaming(from, to);
    int rc = inner_->rename(from, to);
    disk_.after(rank_, rc);
    if (rc < 0) disk_.drop_last_change();
    for (auto& [fd, path] : paths_) {
      if (rc == 0 && path == from) path = to;
    }
    return rc;
  }
  int unlink(const std::string& path) override {
    auto d = disk_.before(rank_, "unlink", path);
    if (!d.execute) return static_cast<int>(d.result);
    disk_.unlinking(path);
    int rc = inner_->unlink(path);
    disk_.after(rank_, rc);
    if (rc < 0) disk_.drop_last_change();
    return rc;
  }
  int fsync_directory(const std::string& path) override {
    int rc = run("fsync_directory", path, [&] { return inner_->fsync_directory(path); });
    if (rc == 0) disk_.synced_directory(path);
    return rc;
  }
  int make_directory(const std::string& path) override {
    int rc = run("mkdir", path, [&] { return inner_->make_directory(path); });
    if (rc == 0) disk_.made_directory(path);
    return rc;
  }
  int remove_directory(const std::string& path) override {
    int rc = run("rmdir", path, [&] { return inner_->remove_directory(path); });
    if (rc == 0) disk_.removed_directory(path);
    return rc;
  }
  int list_directory(const std::string& path, std::vector<std::string>* names) override {
    return run("list", path, [&] { return inner_->list_directory(path, names); });
  }
  int open_for_read(const std::string& path, bool direct, int* fd, bool* direct_used) override {
    int rc = run("open_read", path, [&] { return inner_->open_for_read(path, direct, fd, direct_used); });
    if (rc == 0) paths_[*fd] = path;
    return rc;
  }
  long read_at(int fd, void* data, std::size_t size, std::uint64_t offset, std::size_t min_size) override {
    auto d = disk_.before(rank_, "read", paths_[fd]);
    if (!d.execute) return d.result;
    long rc = inner_->read_at(fd, data, size, offset, min_size);
    disk_.after(rank_, rc);
    return rc;
  }
  void set_staging_memory(std::vector<detail::MemoryRegion> regions) override {
    inner_->set_staging_memory(std::move(regions));
  }
  std::uint64_t registered_writes() const override { return inner_->registered_writes(); }

  std::unique_ptr<detail::WriteQueue> open_queue(int fd, detail::BufferRing& ring, unsigned depth) override {
    writing_ = paths_[fd];  // read by queue threads, which start after this
    return inner_->open_queue(fd, ring, depth);
  }

 private:
  template <typename Op>
  int run(const char* name, const std::string& path, Op op) {
    auto d = disk_.before(rank_, name, path);
    if (!d.execute) return static_cast<int>(d.result);
    int rc = op();
    disk_.after(rank_, rc);
    return rc;
  }

  FaultDisk& disk_;
  const int rank_;
  std::unique_ptr<detail::IoBackend> inner_;
  std::map<int, std::string> paths_;  // descriptor -> current name of its file
  std::string writing_;               // the file data writes currently go to
};

}  // namespace

std::string Fault::describe() const {
  std::string what;
  switch (kind) {
    case FaultKind::kNone: return "no fault";
    case FaultKind::kError: what = errno_name(error); break;
    case FaultKind::kCrash: what = "crash"; break;
    case FaultKind::kTransient: what = std::string(errno_name(error)) + " x" + std::to_string(repeat); break;
    case FaultKind::kShortWrite:
      what = short_write == ShortWrite::kZero        ? "short write 0"
             : short_write == ShortWrite::kOne       ? "short write 1"
             : short_write == ShortWrite::kAllButOne ? "short write len-1"
                                                     : "short write random (seed " + std::to_string(seed) + ")";
      break;
  }
  return "rank " + std::to_string(rank) + " op " + std::to_string(op) + ": " + what;
}

FaultDisk::FaultDisk(std::string root, Fault fault)
    : root_(std::move(root)), fault_(fault), random_state_(fault.seed ? fault.seed : 1) {}

FaultDisk::~FaultDisk() = default;

std::unique_ptr<detail::IoBackend> FaultDisk::wrap(int rank, std::unique_ptr<detail::IoBackend> inner) {
  return std::make_unique<FaultBackend>(*this, rank, std::move(inner));
}

bool FaultDisk::fault_fired() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fired_;
}

bool FaultDisk::crashed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return crashed_;
}

std::vector<OpRecord> FaultDisk::log(int rank) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = logs_.find(rank);
  return it == logs_.end() ? std::vector<OpRecord>{} : it->second;
}

std::size_t FaultDisk::next_index(int rank, const std::string& name, const std::string& path) {
  auto& log = logs_[rank];
  log.push_back(OpRecord{name, path, 0});
  return log.size() - 1;
}

bool FaultDisk::matches(int rank, std::size_t index) const {
  return fault_.kind != FaultKind::kNone && !fired_ && rank == fault_.rank && index == fault_.op;
}

FaultDisk::Decision FaultDisk::before(int rank, const std::string& name, const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::size_t index = next_index(rank, name, path);
  Decision d;
  if (!crashed_ && matches(rank, index)) {
    if (fault_.kind == FaultKind::kError) {
      fired_ = true;
      d = Decision{false, -fault_.error};
    } else if (fault_.kind == FaultKind::kCrash) {
      fired_ = true;
      crashed_ = true;
    }
  }
  if (crashed_) d = Decision{false, -EIO};
  if (!d.execute) logs_[rank][index].result = d.result;
  return d;
}

void FaultDisk::after(int rank, long result) {
  std::lock_guard<std::mutex> lock(mutex_);
  logs_[rank].back().result = result;
}

long FaultDisk::on_write(int rank, const std::string& path, long result) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::size_t index = next_index(rank, "write", path);
  long seen = result;
  if (crashed_) {
    seen = -EIO;
  } else if (transient_left_ > 0 && rank == fault_.rank) {
    --transient_left_;
    seen = -fault_.error;
  } else if (matches(rank, index)) {
    fired_ = true;
    switch (fault_.kind) {
      case FaultKind::kError: seen = -fault_.error; break;
      case FaultKind::kCrash:
        crashed_ = true;
        seen = -EIO;
        break;
      case FaultKind::kTransient:
        transient_left_ = fault_.repeat - 1;
        seen = -fault_.error;
        break;
      case FaultKind::kShortWrite:
        if (result > 0) {
          const auto n = static_cast<std::size_t>(result);
          switch (fault_.short_write) {
            case ShortWrite::kZero: seen = 0; break;
            case ShortWrite::kOne: seen = 1; break;
            case ShortWrite::kAllButOne: seen = static_cast<long>(n - 1); break;
            case ShortWrite::kRandom:
              random_state_ = random_state_ * 1664525u + 1013904223u;
              seen = static_cast<long>(random_state_ % n);
              break;
          }
        }
        break;
      case FaultKind::kNone: break;
    }
  }
  logs_[rank][index].result = seen;
  return seen;
}

void FaultDisk::created(int fd, const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t inode = inode_of_fd(fd);
  fd_inode_[fd] = inode;
  durable_data_[inode] = "";  // a new file's data is lost until its first fsync
  journal_.push_back(Change{Change::kCreate, path, "", false, "", false});
}

void FaultDisk::synced(int fd) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = fd_inode_.find(fd);
  if (it == fd_inode_.end()) return;
  durable_data_[it->second] = slurp("/proc/self/fd/" + std::to_string(fd));
}

void FaultDisk::closing(int fd) {
  std::lock_guard<std::mutex> lock(mutex_);
  fd_inode_.erase(fd);
}

std::string FaultDisk::durable_content_of(const std::string& path) const {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    auto it = durable_data_.find(st.st_ino);
    if (it != durable_data_.end()) return it->second;
  }
  return slurp(path);  // files the test made before the faulty save count as durable
}

void FaultDisk::renaming(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mutex_);
  const bool existed = fs::is_regular_file(to);
  journal_.push_back(Change{Change::kRename, to, from, existed, existed ? durable_content_of(to) : "", false});
}

void FaultDisk::unlinking(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  const bool existed = fs::is_regular_file(path);
  journal_.push_back(Change{Change::kUnlink, path, "", existed, existed ? durable_content_of(path) : "", false});
}

void FaultDisk::drop_last_change() {
  std::lock_guard<std::mutex> lock(mutex_);
  journal_.pop_back();
}

void FaultDisk::made_directory(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  journal_.push_back(Change{Change::kMkdir, path, "", false, "", false});
}

void FaultDisk::removed_directory(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  journal_.push_back(Change{Change::kRmdir, path, "", false, "", false});
}

void FaultDisk::synced_directory(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Change& change : journal_) {
    if (detail::parent_directory(change.path) == path) change.durable = true;
  }
}

void FaultDisk::apply_crash() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!crashed_) throw std::logic_error("apply_crash() without a crash");
  std::error_code ignored;
  // Unsynced data first, while every file the writer created still has the
  // inode the model knows: it returns to its content at its last fsync.
  for (auto entry = fs::recursive_directory_iterator(root_, ignored); entry != fs::recursive_directory_iterator();
       entry.increment(ignored)) {
    if (!entry->is_regular_file()) continue;
    struct stat st {};
    if (::stat(entry->path().c_str(), &st) != 0) continue;
    auto data = durable_data_.find(st.st_ino);
    if (data != durable_data_.end() && slurp(entry->path()) != data->second) overwrite(entry->path(), data->second);
  }
  // Then the directory entries not yet made durable, newest first.
  for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
    const Change& c = *it;
    if (c.durable) continue;
    switch (c.kind) {
      case Change::kCreate: fs::remove(c.path, ignored); break;
      case Change::kRename:
        fs::rename(c.path, c.from, ignored);
        if (c.had_previous) overwrite(c.path, c.previous);
        break;
      case Change::kUnlink:
        if (c.had_previous) overwrite(c.path, c.previous);
        break;
      case Change::kMkdir: fs::remove_all(c.path, ignored); break;
      case Change::kRmdir: fs::create_directory(c.path, ignored); break;
    }
  }
}

std::size_t open_descriptor_count() {
  std::size_t n = 0;
  for (auto it = fs::directory_iterator("/proc/self/fd"); it != fs::directory_iterator(); ++it) ++n;
  return n;
}

std::size_t thread_count() {
  std::size_t n = 0;
  for (const fs::directory_entry& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm_file(task.path() / "comm");
    std::string comm;
    if (!std::getline(comm_file, comm)) continue;  // exited since the listing
    if (comm.rfind("iou-", 0) != 0) ++n;
  }
  return n;
}

std::size_t thread_count_settling_to(std::size_t expected) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::size_t n = thread_count();
  while (n != expected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = thread_count();
  }
  return n;
}

}  // namespace ckptw::testing
