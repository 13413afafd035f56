// Faults from the real system, on both backends: a full tmpfs mounted by the
// test (data blocks, and inodes for the manifest), bad paths as an
// unprivileged user, hooks that throw, and a barrier that times out.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "commit/manifest.hpp"
#include "io/io_backend.hpp"
#include "read/verify.hpp"
#include "support/store_backend.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

using testing::TempDir;

StateDict tensor_of(std::int64_t floats, float value) {
  StateDict sd = make_state_dict();
  sd.insert("w", at::full({floats}, value, at::kFloat));
  return sd;
}

class RealFaults : public ::testing::TestWithParam<IoBackendKind> {
 protected:
  void SetUp() override {
    if (GetParam() == IoBackendKind::kUring) {
      if (std::string why = testing::io_uring_unavailable_reason(); !why.empty()) {
        GTEST_SKIP() << "io_uring unavailable here: " << why;
      }
    }
  }
  CheckpointWriterConfig config() const {
    CheckpointWriterConfig c;
    c.io_backend = GetParam();
    c.write_barrier_timeout_secs = 2;
    return c;
  }
};

// A tmpfs of its own, so that ENOSPC is real and does not touch the host.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& where, const std::string& options) : where_(where) {
    ::mkdir(where.c_str(), 0755);
    if (::mount("tmpfs", where.c_str(), "tmpfs", 0, options.c_str()) != 0) error_ = errno;
  }
  ~TmpfsMount() {
    if (error_ == 0) ::umount2(where_.c_str(), MNT_DETACH);
  }
  int error() const { return error_; }

 private:
  std::string where_;
  int error_ = 0;
};

#define MOUNT_OR_SKIP(mount)                                                                             \
  if ((mount).error() != 0) {                                                                            \
    GTEST_SKIP() << "SKIPPED LOUDLY: cannot mount a tmpfs here (" << std::strerror((mount).error())      \
                 << "); the real-ENOSPC test needs root with CAP_SYS_ADMIN, as CI has";                  \
  }

TEST_P(RealFaults, FullDiskFailsTheDataWriteAndTheOlderCheckpointStaysCommitted) {
  TempDir tmp;
  TmpfsMount mount(tmp / "mnt", "size=3m");
  MOUNT_OR_SKIP(mount);
  const std::string dir = tmp / "mnt/ckpt";
  CheckpointWriter writer(config(), RankInfo{0, 1});
  (void)writer.write(dir, tensor_of(256 << 10, 1.0f));  // 1 MiB
  const std::string old_file = testing::read_file(dir + "/checkpoint_0.pt");
  try {
    (void)writer.write(dir, tensor_of(1 << 20, 2.0f));  // 4 MiB: does not fit
    FAIL() << "a 4 MiB checkpoint fitted into a 3 MiB tmpfs";
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOSPC) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir + "/.checkpoint_0.pt.ckptw-tmp."), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::list_dir(dir), (std::vector<std::string>{"checkpoint_0.pt", kManifestFileName}));
  EXPECT_EQ(testing::read_file(dir + "/checkpoint_0.pt"), old_file);
  auto verdicts = detail::verify_path(dir);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_TRUE(verdicts[0].ok) << verdicts[0].detail;
  // Space freed: the same writer works again.
  (void)writer.write(dir, tensor_of(256 << 10, 3.0f));
  EXPECT_TRUE(detail::verify_path(dir).at(0).ok);
}

// Out of inodes when the manifest is created: the new manifest is prepared
// before the old one is withdrawn, so the older checkpoint stays committed.
TEST_P(RealFaults, NoInodeForTheManifestFailsBeforeTheOlderCheckpointIsTouched) {
  TempDir tmp;
  // root + ckpt + checkpoint_0.pt + manifest = 4 inodes; the rewrite's temp
  // file takes the 5th, so its temp manifest finds none.
  TmpfsMount mount(tmp / "mnt", "size=8m,nr_inodes=5");
  MOUNT_OR_SKIP(mount);
  const std::string dir = tmp / "mnt/ckpt";
  CheckpointWriter writer(config(), RankInfo{0, 1});
  (void)writer.write(dir, tensor_of(1024, 1.0f));
  const std::string old_file = testing::read_file(dir + "/checkpoint_0.pt");
  const std::string old_manifest = testing::read_file(dir + "/" + kManifestFileName);
  try {
    (void)writer.write(dir, tensor_of(1024, 2.0f));
    FAIL() << "the manifest found an inode";
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOSPC) << e.what();
    EXPECT_NE(std::string(e.what()).find(".checkpoint_manifest.json.ckptw-tmp."), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::list_dir(dir), (std::vector<std::string>{"checkpoint_0.pt", kManifestFileName}));
  EXPECT_EQ(testing::read_file(dir + "/checkpoint_0.pt"), old_file);
  EXPECT_EQ(testing::read_file(dir + "/" + kManifestFileName), old_manifest);
  EXPECT_TRUE(detail::verify_path(dir).at(0).ok);
}

// Bad paths, as an unprivileged user: each is an IoError with the errno and
// the path, and leaves nothing behind.
TEST_P(RealFaults, BadPathsAreIoErrorsNamingErrnoAndPathAsUnprivilegedUser) {
  TempDir tmp;
  ::chmod(tmp.path().c_str(), 0777);
  std::ofstream(tmp / "a_file") << "x";
  ::symlink((tmp / "missing").c_str(), (tmp / "dangling").c_str());
  ::mkdir((tmp / "read_only").c_str(), 0555);
  const StateDict sd = tensor_of(16, 1.0f);
  const CheckpointWriterConfig cfg = config();
  struct Case {
    std::string path;
    int expected_errno;
    std::string named;
  };
  const std::vector<Case> cases = {
      {tmp / "dangling/ckpt", ENOENT, tmp / "dangling"},   // parent is a dangling symlink
      {tmp / "a_file/ckpt", ENOTDIR, tmp / "a_file/ckpt"},  // a file where a directory should be
      {tmp / "read_only/ckpt", EACCES, tmp / "read_only/ckpt"},
      {tmp / std::string(300, 'n'), ENAMETOOLONG, tmp / std::string(300, 'n')},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path.substr(tmp.path().size()).substr(0, 40));
    int code = testing::run_in_child(
        [&] {
          try {
            CheckpointWriter writer(cfg, RankInfo{0, 1});
            (void)writer.write(c.path, sd);
            return 1;
          } catch (const IoError& e) {
            if (e.errno_value() != c.expected_errno) {
              std::fprintf(stderr, "errno %d, expected %d: %s\n", e.errno_value(), c.expected_errno, e.what());
              return 2;
            }
            if (std::string(e.what()).find(c.named) == std::string::npos) {
              std::fprintf(stderr, "does not name %s: %s\n", c.named.c_str(), e.what());
              return 3;
            }
            return 0;
          }
        },
        /*as_nobody=*/true);
    if (code == 98) GTEST_SKIP() << "cannot drop privileges to nobody here";
    EXPECT_EQ(code, 0);
  }
  EXPECT_EQ(testing::list_dir(tmp.path()), (std::vector<std::string>{"a_file", "dangling", "read_only"}));
  EXPECT_TRUE(testing::list_dir(tmp / "read_only").empty());
}

struct ThrowingHook : WriterHook {
  bool throw_pre;
  bool throw_post;
  ThrowingHook(bool pre, bool post) : throw_pre(pre), throw_post(post) {}
  void pre_commit(const std::string&, const HookArgs&) override {
    if (throw_pre) throw std::runtime_error("pre_commit refused");
  }
  void post_commit(const std::string&, const HookArgs&) override {
    if (throw_post) throw std::runtime_error("post_commit failed");
  }
};

// Rank 1's pre_commit throws: it votes no, neither rank commits, and the
// thrown error reaches rank 1's caller; then post_commit throwing on rank 0
// is reported while the commit stands.
TEST_P(RealFaults, ThrowingHooksOnTwoRanks) {
  TempDir tmp;
  const auto stores = testing::loopback_store_pair();
  auto run = [&](const std::string& dir, const std::string& prefix, bool pre1, bool post0, std::string* what) {
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        try {
          TcpStoreBarrier::Options options;
          options.prefix = prefix;
          auto barrier = std::make_shared<TcpStoreBarrier>(RankInfo{r, 2}, stores[r], options);
          auto hook = std::make_shared<ThrowingHook>(r == 1 && pre1, r == 0 && post0);
          CheckpointWriter writer(config(), RankInfo{r, 2}, barrier, hook);
          (void)writer.write(dir, tensor_of(64, static_cast<float>(r)));
        } catch (const std::exception& e) {
          what[r] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
  };
  std::string pre_what[2];
  run(tmp / "pre", "pre", true, false, pre_what);
  for (const std::string& w : pre_what) EXPECT_NE(w.find("rank 1 failed (rank 1: pre_commit)"), std::string::npos) << w;
  EXPECT_NE(pre_what[1].find("pre_commit refused"), std::string::npos) << pre_what[1];
  EXPECT_FALSE(testing::exists(tmp / "pre/" + kManifestFileName));

  std::string post_what[2];
  run(tmp / "post", "post", false, true, post_what);
  EXPECT_NE(post_what[0].find("post_commit failed"), std::string::npos) << post_what[0];
  EXPECT_EQ(post_what[1], "");
  EXPECT_TRUE(detail::verify_path(tmp / "post").at(0).ok);
}

// Rank 1 never arrives: rank 0 gives up within the deadline with an error
// naming it, and nothing is committed.
TEST_P(RealFaults, BarrierTimeoutNamesTheMissingRankAndCommitsNothing) {
  TempDir tmp;
  const auto stores = testing::loopback_store_pair();
  TcpStoreBarrier::Options options;
  options.prefix = "timeout";
  auto barrier = std::make_shared<TcpStoreBarrier>(RankInfo{0, 2}, stores[0], options);
  CheckpointWriter writer(config(), RankInfo{0, 2}, barrier);
  const auto started = std::chrono::steady_clock::now();
  try {
    (void)writer.write(tmp / "ckpt", tensor_of(64, 1.0f));
    FAIL() << "committed without rank 1";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GE(waited, 2.0);
  EXPECT_LT(waited, 2.0 + 5.0);
  EXPECT_FALSE(testing::exists(tmp / "ckpt/" + kManifestFileName));
}

INSTANTIATE_TEST_SUITE_P(Backends, RealFaults, ::testing::Values(IoBackendKind::kPosix, IoBackendKind::kUring),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace ckptw
