// Fault injection for the writer's I/O: an IoBackend that wraps a real one
// (io_uring or POSIX), logs every operation, fails the k-th one in a chosen
// way, and can simulate a power loss.
//
// A FaultDisk is one simulated machine shared by the backends of all ranks
// of a test: it holds the fault plan, the operation logs and the crash model.
//
// Crash model (after LevelDB's FaultInjectionTestEnv and ALICE): at the crash
// every later operation fails with EIO without touching the disk (the process
// is "dead"; descriptors are still closed so the test does not leak them).
// apply_crash() then rolls the real directory tree back to what a power loss
// at that moment may leave, taking the worst case for every unsynced change:
//   - file data not fsynced since it was written is lost: a file's content
//     returns to what it held at its last fsync (empty if never synced);
//   - directory entries created, renamed or removed since the directory's
//     last fsync are undone, newest first (a rename over an existing file
//     restores that file's durable content under its name).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/io_backend.hpp"

namespace ckptw::testing {

enum class FaultKind {
  kNone,
  kError,       ///< the operation fails with `error` (not executed, or for writes: result replaced)
  kShortWrite,  ///< a data write reports fewer bytes than asked (`short_write`)
  kTransient,   ///< `repeat` data writes in a row fail with `error` (EAGAIN/EINTR), then succeed
  kCrash,       ///< power loss just before the operation
};

enum class ShortWrite { kZero, kOne, kAllButOne, kRandom };

struct Fault {
  FaultKind kind = FaultKind::kNone;
  int rank = 0;              ///< whose operation log `op` indexes
  std::size_t op = 0;        ///< index in that rank's log
  int error = 0;             ///< kError, kTransient: the errno
  ShortWrite short_write = ShortWrite::kOne;
  int repeat = 1;            ///< kTransient
  std::uint32_t seed = 1;    ///< kShortWrite kRandom

  /// e.g. "rank 1 op 7 (fsync): ENOSPC"
  std::string describe() const;
};

struct OpRecord {
  std::string name;  ///< "create", "write", "fsync", "rename", ...
  std::string path;  ///< the path involved (for data writes: the file written)
  long result = 0;   ///< what the writer saw: count or -errno
};

class FaultDisk {
 public:
  /// `root`: the directory tree the crash model may roll back.
  FaultDisk(std::string root, Fault fault);
  ~FaultDisk();

  /// Wraps `inner` as rank `rank`'s backend. The FaultDisk must outlive it.
  std::unique_ptr<detail::IoBackend> wrap(int rank, std::unique_ptr<detail::IoBackend> inner);

  bool fault_fired() const;
  bool crashed() const;
  /// Rolls the tree back to its durable state (see above). Only after a crash.
  void apply_crash();
  std::vector<OpRecord> log(int rank) const;

  // Used by the wrapping backends.
  struct Decision {
    bool execute = true;  ///< run the real operation
    long result = 0;      ///< when !execute: what to report
  };
  /// Called before a metadata operation; logs it and applies the fault.
  Decision before(int rank, const std::string& name, const std::string& path);
  void after(int rank, long result);
  /// Called with the raw result of each data write; returns what the queue sees.
  long on_write(int rank, const std::string& path, long result);

  // Journal of the changes the crash model may undo.
  void created(int fd, const std::string& path);
  void synced(int fd);
  void renaming(const std::string& from, const std::string& to);
  void unlinking(const std::string& path);
  void made_directory(const std::string& path);
  void removed_directory(const std::string& path);
  void synced_directory(const std::string& path);
  void closing(int fd);
  /// The rename or unlink just journaled failed: nothing changed.
  void drop_last_change();

 private:
  struct Change {
    enum Kind { kCreate, kRename, kUnlink, kMkdir, kRmdir } kind;
    std::string path;             // created/unlinked/dir path, or rename target
    std::string from;             // rename source
    bool had_previous = false;    // rename target / unlinked file existed
    std::string previous;         // its durable content
    bool durable = false;         // its directory was fsynced since
  };
  std::size_t next_index(int rank, const std::string& name, const std::string& path);
  bool matches(int rank, std::size_t index) const;
  std::string durable_content_of(const std::string& path) const;

  const std::string root_;
  const Fault fault_;
  mutable std::mutex mutex_;
  std::map<int, std::vector<OpRecord>> logs_;
  bool fired_ = false;
  bool crashed_ = false;
  int transient_left_ = 0;
  std::uint32_t random_state_;
  std::map<int, std::uint64_t> fd_inode_;               // open descriptors of created files
  std::map<std::uint64_t, std::string> durable_data_;   // inode -> content at its last fsync
  std::vector<Change> journal_;                         // namespace changes, oldest first
};

/// Live descriptors and threads of this process, for leak checks.
std::size_t open_descriptor_count();
/// Threads this process started. io_uring's kernel workers ("iou-wrk-*",
/// "iou-sqp-*") are left out: they show in /proc/self/task but belong to the
/// kernel and exit some milliseconds after their ring is closed, so counting
/// them makes the check a race. A ring left open is still caught: its
/// descriptor stays in open_descriptor_count().
std::size_t thread_count();
/// thread_count() once it is `expected`, or what it is after a second: a
/// joined thread can still be listed for a moment (pthread_join returns when
/// the thread has cleared its tid, before the kernel has released its task).
std::size_t thread_count_settling_to(std::size_t expected);

}  // namespace ckptw::testing
