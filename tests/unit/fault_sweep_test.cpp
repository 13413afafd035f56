// Fault sweeps (docs/reliability.md): every operation of a reference save ×
// every fault × both backends, checked against the promise that a checkpoint
// is committed completely or not at all.
//
// Two scenarios:
//  - two ranks (threads, a real TCPStore on loopback) save `step_2` next to a
//    committed `step_1`: after any fault the save fails on every rank with a
//    clear error or succeeds completely; `step_1` is untouched; `step_2` holds
//    no manifest and no temp file after a failure; nothing leaks.
//  - one rank rewrites its committed directory in place.
// A crash at any operation (FaultDisk's power-loss model) must leave each
// final name holding the old or the new complete file, a manifest only over a
// complete matching set, and the next save must clean up and commit.
//
// CKPTW_FAULT_SEED changes the seed of the random short writes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "commit/manifest.hpp"
#include "io/io_backend.hpp"
#include "support/fault_backend.hpp"
#include "support/store_backend.hpp"
#include "support/test_support.hpp"
#include "writer/writer_internals.hpp"

namespace ckptw {
namespace {

namespace fs = std::filesystem;
using testing::Fault;
using testing::FaultDisk;
using testing::FaultKind;
using testing::ShortWrite;
using DirState = std::map<std::string, std::string>;  // file name -> content

DirState snapshot(const std::string& dir) {
  DirState state;
  if (!fs::exists(dir)) return state;
  for (const auto& entry : fs::directory_iterator(dir)) {
    state[entry.path().filename().string()] = testing::read_file(entry.path().string());
  }
  return state;
}

const char* kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::kError: return "errno";
    case FaultKind::kShortWrite: return "short write";
    case FaultKind::kTransient: return "EAGAIN/EINTR";
    case FaultKind::kCrash: return "crash";
    case FaultKind::kNone: break;
  }
  return "none";
}

std::string describe_counts(const std::map<std::string, int>& counts) {
  std::string text;
  for (const auto& [kind, n] : counts) text += (text.empty() ? "" : ", ") + kind + " " + std::to_string(n);
  return text;
}

bool is_temp_name(const std::string& name) { return name.find(".ckptw-tmp.") != std::string::npos; }

// A few tensors, about 400 KiB per rank, so that with 64 KiB ring buffers the
// file takes several data writes, the ring is reused, and a buffered file
// writes the 384 KiB payload in place in six chunks.
StateDict model(int rank, int version) {
  StateDict sd = make_state_dict();
  const double base = rank * 1000 + version * 100;
  sd.insert("embed.weight", at::arange(base, base + 96 * 1024, at::kFloat).reshape({384, 256}));
  sd.insert("layer.bias", at::full({300}, base, at::kDouble));
  sd.insert("step", at::scalar_tensor(version, at::kLong));
  sd.insert("tied", sd.at("embed.weight").toTensor()[3]);
  return sd;
}

CheckpointWriterConfig small_ring_config(IoBackendKind kind) {
  CheckpointWriterConfig config;
  config.io_backend = kind;
  config.write_buffer_bytes = 64 << 10;
  config.ring_buffers = 4;
  config.queue_depth = 3;
  config.write_barrier_timeout_secs = 60;
  return config;
}

struct Outcome {
  bool ok = false;
  std::string what;
  bool post_commit = false;
};

struct PostCommitFlag : WriterHook {
  bool* ran;
  explicit PostCommitFlag(bool* r) : ran(r) {}
  void pre_commit(const std::string&, const HookArgs&) override {}
  void post_commit(const std::string&, const HookArgs&) override { *ran = true; }
};

// Backend × O_DIRECT × call: buffered files take the in-place payload path;
// write_async writes the captured file image straight from staging memory.
struct SweepParam {
  IoBackendKind kind;
  bool direct;
  bool async = false;
};

class FaultSweep : public ::testing::TestWithParam<SweepParam> {
 protected:
  void SetUp() override {
    if (kind() == IoBackendKind::kUring) {
      if (std::string why = testing::io_uring_unavailable_reason(); !why.empty()) {
        GTEST_SKIP() << "io_uring unavailable here: " << why;
      }
    }
    stores_ = testing::loopback_store_pair();
    for (int r = 0; r < 2; ++r) {
      old_[r] = model(r, 1);
      new_[r] = model(r, 2);
    }
  }

  IoBackendKind kind() const { return GetParam().kind; }
  std::string name() const {
    return std::string(to_string(kind())) + (GetParam().direct ? "" : " buffered") +
           (GetParam().async ? " write_async" : "");
  }

  std::unique_ptr<detail::IoBackend> backend(FaultDisk* disk, int rank) {
    auto real = detail::make_backend(kind(), 3);
    return disk ? disk->wrap(rank, std::move(real)) : std::move(real);
  }

  // Saves `sds` (one per rank) to `dir` with `world` ranks, each in its own
  // thread with its own writer and barrier.
  std::vector<Outcome> save(const std::string& dir, const StateDict* sds, int world, FaultDisk* disk) {
    std::vector<Outcome> outcomes(world);
    std::vector<std::thread> threads;
    const std::string prefix = "case" + std::to_string(sequence_++);
    for (int r = 0; r < world; ++r) {
      threads.emplace_back([&, r] {
        try {
          std::shared_ptr<Barrier> barrier;
          if (world > 1) {
            TcpStoreBarrier::Options options;
            options.prefix = prefix;
            barrier = std::make_shared<TcpStoreBarrier>(RankInfo{r, world}, stores_[r], options);
          }
          auto hook = std::make_shared<PostCommitFlag>(&outcomes[r].post_commit);
          CheckpointWriterConfig config = small_ring_config(kind());
          config.direct_io = GetParam().direct;
          CheckpointWriter writer = detail::WriterInternals::make(config, RankInfo{r, world},
                                                                   barrier, hook, backend(disk, r));
          if (GetParam().async) {
            (void)writer.write_async(dir, sds[r]).get();
          } else {
            (void)writer.write(dir, sds[r]);
          }
          outcomes[r].ok = true;
        } catch (const std::exception& e) {
          outcomes[r].what = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    return outcomes;
  }

  // Every fault the sweep applies at one logged operation.
  static std::vector<Fault> faults_at(int rank, std::size_t op, const std::string& name) {
    std::vector<Fault> faults;
    for (int error : {EIO, ENOSPC, EDQUOT}) faults.push_back(Fault{FaultKind::kError, rank, op, error});
    faults.push_back(Fault{FaultKind::kCrash, rank, op});
    if (name == "write") {
      const char* seed_text = std::getenv("CKPTW_FAULT_SEED");
      const auto seed = static_cast<std::uint32_t>((seed_text ? std::strtoul(seed_text, nullptr, 10) : 1) + op);
      for (ShortWrite s : {ShortWrite::kZero, ShortWrite::kOne, ShortWrite::kAllButOne, ShortWrite::kRandom}) {
        faults.push_back(Fault{FaultKind::kShortWrite, rank, op, 0, s, 1, seed});
      }
      faults.push_back(Fault{FaultKind::kTransient, rank, op, EAGAIN, ShortWrite::kOne, 3});
      faults.push_back(Fault{FaultKind::kTransient, rank, op, EINTR, ShortWrite::kOne, 3});
    }
    return faults;
  }

  // Operations whose failure the writer absorbs by design: preallocation is
  // an optimisation, and leftover cleanup is best effort.
  static bool best_effort(const std::string& name) { return name == "preallocate" || name == "list"; }

  std::array<c10::intrusive_ptr<c10d::Store>, 2> stores_;
  StateDict old_[2] = {make_state_dict(), make_state_dict()};
  StateDict new_[2] = {make_state_dict(), make_state_dict()};
  int sequence_ = 0;
};

TEST_P(FaultSweep, TwoRanksCommitCompletelyOrNotAtAllUnderEveryFault) {
  testing::TempDir reference;
  ASSERT_TRUE(save(reference / "step_1", old_, 2, nullptr)[0].ok);
  const DirState committed_old = snapshot(reference / "step_1");
  // step_2 exists before the save: which rank's mkdir creates a missing
  // directory is a race, and the sweep needs each rank's operations in a
  // fixed order. Directory creation is swept in the one-rank test.
  fs::create_directory(reference / "step_2");
  FaultDisk log_only(reference.path(), Fault{});
  auto clean = save(reference / "step_2", new_, 2, &log_only);
  ASSERT_TRUE(clean[0].ok && clean[1].ok) << clean[0].what << clean[1].what;
  const DirState committed_new = snapshot(reference / "step_2");
  ASSERT_EQ(committed_new.size(), 3u);

  const std::size_t fds_before = testing::open_descriptor_count();
  const std::size_t threads_before = testing::thread_count();
  int cases = 0;
  std::map<std::string, int> by_kind;
  for (int rank = 0; rank < 2; ++rank) {
    const std::vector<testing::OpRecord> ops = log_only.log(rank);
    for (std::size_t op = 0; op < ops.size(); ++op) {
      for (const Fault& fault : faults_at(rank, op, ops[op].name)) {
        SCOPED_TRACE(fault.describe() + " on " + ops[op].name + " " + ops[op].path);
        ++cases;
        ++by_kind[kind_name(fault.kind)];
        testing::TempDir root;
        fs::copy(reference / "step_1", root / "step_1");
        const std::string dir = root / "step_2";
        fs::create_directory(dir);
        FaultDisk disk(root.path(), fault);
        std::vector<Outcome> out = save(dir, new_, 2, &disk);
        ASSERT_TRUE(disk.fault_fired());
        EXPECT_EQ(snapshot(root / "step_1"), committed_old) << "the previous checkpoint changed";

        if (fault.kind == FaultKind::kCrash) {
          disk.apply_crash();
          EXPECT_EQ(snapshot(root / "step_1"), committed_old);
          DirState after = snapshot(dir);
          for (const auto& [name, content] : after) {
            if (is_temp_name(name)) continue;
            ASSERT_TRUE(committed_new.count(name)) << "unexpected file " << name;
            EXPECT_EQ(content, committed_new.at(name)) << name << " is torn";
          }
          if (after.count(kManifestFileName)) {
            for (const char* name : {"checkpoint_0.pt", "checkpoint_1.pt"}) {
              EXPECT_EQ(after[name], committed_new.at(name)) << "committed with " << name << " missing";
            }
          }
          // The next save cleans up what the crash left and commits.
          auto retry = save(dir, new_, 2, nullptr);
          ASSERT_TRUE(retry[0].ok && retry[1].ok) << retry[0].what << " | " << retry[1].what;
          EXPECT_EQ(snapshot(dir), committed_new);
          continue;
        }

        const bool absorbed = fault.kind == FaultKind::kShortWrite || fault.kind == FaultKind::kTransient ||
                              best_effort(ops[op].name);
        if (absorbed) {
          EXPECT_TRUE(out[0].ok && out[1].ok) << out[0].what << " | " << out[1].what;
          EXPECT_TRUE(out[0].post_commit && out[1].post_commit);
          EXPECT_EQ(snapshot(dir), committed_new);
        } else {
          // All or none: every rank reports the failure, none ran post_commit.
          EXPECT_FALSE(out[0].ok || out[1].ok);
          EXPECT_FALSE(out[0].post_commit || out[1].post_commit);
          const std::string& own = out[rank].what;
          EXPECT_NE(own.find(std::strerror(fault.error)), std::string::npos) << own;
          // The reference ran under another root; the error names this case's path.
          std::string where = ops[op].path;
          if (where.compare(0, reference.path().size(), reference.path()) == 0) {
            where = root.path() + where.substr(reference.path().size());
          }
          if (auto tmp = where.find(".ckptw-tmp."); tmp != std::string::npos) {
            where.resize(tmp + std::strlen(".ckptw-tmp."));  // temp names differ in pid.sequence
          }
          EXPECT_NE(own.find(where), std::string::npos) << own << " does not name " << where;
          EXPECT_NE(out[1 - rank].what.find("rank " + std::to_string(rank)), std::string::npos) << out[1 - rank].what;
          // Never fsync a file again after its fsync failed (the error is
          // reported once; a retry rewrites from memory under a new name).
          if (ops[op].name == "fsync") {
            const auto log = disk.log(rank);
            for (std::size_t later = op + 1; later < log.size(); ++later) {
              EXPECT_FALSE(log[later].name == "fsync" && log[later].path == log[op].path) << "fsync retried";
            }
          }
          for (const auto& [name, content] : snapshot(dir)) {
            EXPECT_FALSE(is_temp_name(name)) << "temp file left: " << name;
            EXPECT_NE(name, kManifestFileName) << "committed after a failure";
            if (committed_new.count(name)) {
              EXPECT_EQ(content, committed_new.at(name));
            }
          }
        }
        EXPECT_EQ(testing::open_descriptor_count(), fds_before) << "descriptor leak";
        EXPECT_EQ(testing::thread_count_settling_to(threads_before), threads_before) << "thread leak";
        if (HasFatalFailure() || HasFailure()) {
          for (int r = 0; r < 2; ++r) {
            std::printf("reference rank %d:\n", r);
            for (const auto& o : log_only.log(r)) std::printf("  %s %s -> %ld\n", o.name.c_str(), o.path.c_str(), o.result);
            std::printf("this case rank %d:\n", r);
            for (const auto& o : disk.log(r)) std::printf("  %s %s -> %ld\n", o.name.c_str(), o.path.c_str(), o.result);
          }
          return;
        }
      }
    }
  }
  std::printf("[ sweep    ] %s, two ranks: %d cases (%s) over %zu + %zu operations, 0 violations\n",
              name().c_str(), cases, describe_counts(by_kind).c_str(), log_only.log(0).size(),
              log_only.log(1).size());
}

// One rank, in two layouts: rewriting its committed directory in place, and
// saving into a new nested directory. The final names hold the old or the new
// complete files, the manifest matches the file it sits next to, a failed save
// leaves no temp file (and removes the directories it created).
TEST_P(FaultSweep, OneRankKeepsOldOrNewUnderEveryFault) {
  for (const bool in_place : {true, false}) {
    SCOPED_TRACE(in_place ? "rewriting in place" : "new nested directory");
    testing::TempDir reference;
    const std::string subdir = in_place ? "ckpt" : "runs/step_9";
    const std::string ref_dir = reference / subdir;
    if (in_place) {
      ASSERT_TRUE(save(ref_dir, old_, 1, nullptr)[0].ok);
    }
    const DirState committed_old = snapshot(ref_dir);
    FaultDisk log_only(reference.path(), Fault{});
    ASSERT_TRUE(save(ref_dir, new_, 1, &log_only)[0].ok);
    const DirState committed_new = snapshot(ref_dir);
    ASSERT_EQ(committed_new.size(), 2u);

    int cases = 0;
    std::map<std::string, int> by_kind;
    const std::vector<testing::OpRecord> ops = log_only.log(0);
    // Until the old manifest is withdrawn (after the new file and manifest
    // are written and synced), a failure leaves the old checkpoint committed.
    std::size_t withdrawn = 0;
    while (withdrawn < ops.size() && !(ops[withdrawn].name == "unlink" &&
                                       ops[withdrawn].path == ref_dir + "/" + kManifestFileName)) {
      ++withdrawn;
    }
    for (std::size_t op = 0; op < ops.size(); ++op) {
      for (const Fault& fault : faults_at(0, op, ops[op].name)) {
        SCOPED_TRACE(fault.describe() + " on " + ops[op].name + " " + ops[op].path);
        ++cases;
        ++by_kind[kind_name(fault.kind)];
        testing::TempDir root;
        const std::string dir = root / subdir;
        if (in_place) {
          ASSERT_TRUE(save(dir, old_, 1, nullptr)[0].ok);
          ASSERT_EQ(snapshot(dir), committed_old);
        }
        FaultDisk disk(root.path(), fault);
        std::vector<Outcome> out = save(dir, new_, 1, &disk);
        ASSERT_TRUE(disk.fault_fired());
        if (fault.kind == FaultKind::kCrash) disk.apply_crash();
        DirState after = snapshot(dir);
        if (after.count("checkpoint_0.pt")) {
          const std::string& file = after["checkpoint_0.pt"];
          const bool is_new = file == committed_new.at("checkpoint_0.pt");
          EXPECT_TRUE(is_new || (in_place && file == committed_old.at("checkpoint_0.pt"))) << "checkpoint_0.pt is torn";
          if (after.count(kManifestFileName)) {
            EXPECT_EQ(after[kManifestFileName], (is_new ? committed_new : committed_old).at(kManifestFileName))
                << "manifest does not describe the file beside it";
          }
        } else {
          EXPECT_FALSE(in_place) << "the previous checkpoint file vanished";
          EXPECT_FALSE(after.count(kManifestFileName)) << "manifest without a file";
        }
        if (fault.kind == FaultKind::kError && !best_effort(ops[op].name)) {
          EXPECT_FALSE(out[0].ok) << "an error was swallowed";
        }
        if (out[0].ok) {
          EXPECT_EQ(after, committed_new);
        } else if (fault.kind != FaultKind::kCrash) {
          EXPECT_NE(out[0].what.find(std::strerror(fault.error)), std::string::npos) << out[0].what;
          for (const auto& entry : after) EXPECT_FALSE(is_temp_name(entry.first)) << entry.first;
          if (in_place && op < withdrawn) {
            EXPECT_EQ(after, committed_old) << "the previous checkpoint is no longer committed";
          }
          // A failure after the file's rename leaves it (complete, uncommitted);
          // otherwise the directories this save created are gone.
          if (!in_place && !after.count("checkpoint_0.pt")) {
            EXPECT_FALSE(fs::exists(root / "runs")) << "created directories left behind";
          }
        }
        auto retry = save(dir, new_, 1, nullptr);
        ASSERT_TRUE(retry[0].ok) << retry[0].what;
        EXPECT_EQ(snapshot(dir), committed_new);
        if (HasFailure()) return;
      }
    }
    std::printf("[ sweep    ] %s, one rank %s: %d cases (%s) over %zu operations (old manifest withdrawn at op %zu), "
                "0 violations\n", name().c_str(), in_place ? "rewriting in place" : "into a new nested directory",
                cases, describe_counts(by_kind).c_str(), ops.size(), withdrawn);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, FaultSweep,
                         ::testing::Values(SweepParam{IoBackendKind::kPosix, true}, SweepParam{IoBackendKind::kUring, true},
                                           SweepParam{IoBackendKind::kPosix, false},
                                           SweepParam{IoBackendKind::kUring, false},
                                           SweepParam{IoBackendKind::kPosix, true, true},
                                           SweepParam{IoBackendKind::kUring, true, true}),
                         [](const auto& info) {
                           return std::string(to_string(info.param.kind)) + (info.param.direct ? "_direct" : "_buffered") +
                                  (info.param.async ? "_async" : "");
                         });

}  // namespace
}  // namespace ckptw
