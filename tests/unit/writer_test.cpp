// CheckpointWriter: the seed's contract, the atomic-commit fixes, and clear
// errors that leave nothing on disk.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <cstdlib>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "ckptw/ckptw.hpp"
#include "read/pt_inspect.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

using testing::TempDir;

StateDict small_state_dict() {
  StateDict sd = make_state_dict();
  sd.insert("w", at::arange(6, at::kFloat).reshape({2, 3}));
  sd.insert("b", at::ones({3}, at::kDouble));
  return sd;
}

struct RecordingHook : WriterHook {
  std::vector<std::string>* events;
  explicit RecordingHook(std::vector<std::string>* e) : events(e) {}
  void pre_commit(const std::string& path, const HookArgs& kwargs) override {
    events->push_back("pre:" + path + ":" + kwargs.at("extra").toStringRef());
  }
  void post_commit(const std::string& path, const HookArgs& kwargs) override {
    events->push_back("post:" + path + ":" + kwargs.at("extra").toStringRef());
  }
};

struct RecordingBarrier : Barrier {
  std::vector<std::string>* events;
  std::string file;
  explicit RecordingBarrier(std::vector<std::string>* e, std::string f) : events(e), file(std::move(f)) {}
  void execute_barrier() override {
    // The rank's file must already be durable under its final name.
    events->push_back(testing::exists(file) ? "barrier:file-present" : "barrier:file-missing");
  }
};

TEST(RankInfo, FromEnvDefaultsAndValidates) {
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  RankInfo info = RankInfo::from_env();
  EXPECT_EQ(info.global_rank, 0);
  EXPECT_EQ(info.global_world_size, 1);
  setenv("RANK", "3", 1);
  setenv("WORLD_SIZE", "4", 1);
  info = RankInfo::from_env();
  EXPECT_EQ(info.global_rank, 3);
  EXPECT_EQ(info.global_world_size, 4);
  setenv("RANK", "4", 1);
  EXPECT_THROW(RankInfo::from_env(), UsageError);
  setenv("RANK", "x", 1);
  EXPECT_THROW(RankInfo::from_env(), UsageError);
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
}

TEST(CheckpointWriterConfig, DefaultsMatchSeedAndTorch) {
  CheckpointWriterConfig config;
  EXPECT_EQ(config.write_barrier_timeout_secs, 600);
  EXPECT_EQ(config.storage_alignment, 64u);
  EXPECT_TRUE(config.fsync);
}

TEST(CheckpointWriter, RejectsInvalidConfigAndRank) {
  CheckpointWriterConfig bad;
  bad.storage_alignment = 48;
  EXPECT_THROW(CheckpointWriter(bad, RankInfo{0, 1}), UsageError);
  bad = CheckpointWriterConfig{};
  bad.write_barrier_timeout_secs = 0;
  EXPECT_THROW(CheckpointWriter(bad, RankInfo{0, 1}), UsageError);
  EXPECT_THROW(CheckpointWriter(CheckpointWriterConfig{}, RankInfo{2, 2}), UsageError);
}

TEST(CheckpointWriter, WritesRankFileThenPreCommitBarrierPostCommit) {
  TempDir tmp;
  const std::string dir = tmp / "step_1/nested";
  std::vector<std::string> events;
  auto barrier = std::make_shared<RecordingBarrier>(&events, dir + "/checkpoint_2.pt");
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{2, 4}, barrier,
                          std::make_shared<RecordingHook>(&events));
  HookArgs kwargs = make_state_dict();
  kwargs.insert("extra", "value");
  WriteResult result = writer.write(dir, small_state_dict(), kwargs);
  writer.close();

  EXPECT_EQ(result.file, dir + "/checkpoint_2.pt");
  EXPECT_EQ(result.tensor_count, 2u);
  EXPECT_EQ(result.storage_count, 2u);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], "pre:" + dir + ":value");
  EXPECT_EQ(events[1], "barrier:file-present");
  EXPECT_EQ(events[2], "post:" + dir + ":value");
  EXPECT_EQ(testing::read_file(result.file).size(), result.bytes_written);
  EXPECT_EQ(testing::list_dir(dir), std::vector<std::string>{"checkpoint_2.pt"});
}

TEST(CheckpointWriter, FileListsTensorsAndPassesCrcCheck) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  WriteResult result = writer.write(tmp.path(), small_state_dict());
  detail::InspectedFile file = detail::inspect_pt(result.file);
  EXPECT_EQ(file.index.folder, "checkpoint_0");
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].key_path, "w");
  EXPECT_EQ(file.tensors[0].tensor.dtype, "float32");
  EXPECT_EQ(file.tensors[0].tensor.sizes, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(file.tensors[1].tensor.dtype, "float64");
  for (const auto& r : file.index.records) EXPECT_EQ(r.payload_offset % 64, 0u) << r.name;
  EXPECT_NO_THROW(detail::verify_record_crcs(result.file, file.index));
}

TEST(CheckpointWriter, ResultSplitsTimeAndCpuByPhase) {
  // 64 MiB: enough copy and CRC work to register on every clock, on each
  // backend, with and without O_DIRECT (the ring) and in place (buffered).
  StateDict sd = make_state_dict();
  sd.insert("w", at::rand({16, 1024, 1024}));
  for (IoBackendKind backend : {IoBackendKind::kPosix, IoBackendKind::kUring}) {
    for (bool direct : {true, false}) {
      TempDir tmp;
      CheckpointWriterConfig config;
      config.io_backend = backend;
      config.direct_io = direct;
      CheckpointWriter writer(config, RankInfo{0, 1});
      const WriteResult r = writer.write(tmp.path(), sd);
      const std::string how = r.io_backend + (direct ? " direct" : " buffered");
      EXPECT_GT(r.sync_secs, 0) << how;  // fsync is on by default
      EXPECT_GT(r.write_secs, 0) << how;
      EXPECT_GE(r.plan_secs + r.write_secs + r.sync_secs, 0.99 * (r.total_secs - r.pre_commit_secs - r.barrier_secs -
                                                                   r.post_commit_secs) - 1e-3)
          << how << ": the phases cover the call";
      EXPECT_GT(r.copy_crc_secs, 0) << how;
      EXPECT_LE(r.copy_crc_secs, r.write_secs) << how;
      EXPECT_GT(r.write_cpu_secs, 0) << how;
      EXPECT_GE(r.plan_cpu_secs, 0) << how;
      EXPECT_LE(r.plan_cpu_secs + r.write_cpu_secs, r.total_secs + 0.05) << how << ": one thread's CPU";
    }
  }
}

TEST(CheckpointWriter, RewriteReplacesAtomicallyAndLeavesNoTempFiles) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  StateDict first = small_state_dict();
  (void)writer.write(tmp.path(), first);
  StateDict second = make_state_dict();
  second.insert("only", at::full({1000}, 3.0));
  WriteResult result = writer.write(tmp.path(), second);
  detail::InspectedFile file = detail::inspect_pt(result.file);
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors[0].key_path, "only");
  EXPECT_EQ(result.manifest, tmp / "checkpoint_manifest.json");
  EXPECT_EQ(testing::list_dir(tmp.path()), (std::vector<std::string>{"checkpoint_0.pt", "checkpoint_manifest.json"}));
}

struct ThrowingPostCommit : WriterHook {
  void pre_commit(const std::string&, const HookArgs&) override {}
  void post_commit(const std::string&, const HookArgs&) override { throw std::runtime_error("notify failed"); }
};

TEST(CheckpointWriter, PostCommitErrorReachesTheCallerAndTheCommitStands) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1}, nullptr, std::make_shared<ThrowingPostCommit>());
  EXPECT_THROW((void)writer.write(tmp.path(), small_state_dict()), std::runtime_error);
  EXPECT_TRUE(testing::exists(tmp / "checkpoint_manifest.json"));
  EXPECT_NO_THROW(detail::inspect_pt(tmp / "checkpoint_0.pt"));
}

struct ThrowingPreCommit : WriterHook {
  void pre_commit(const std::string&, const HookArgs&) override { throw std::runtime_error("upload failed"); }
  void post_commit(const std::string&, const HookArgs&) override { ADD_FAILURE() << "post_commit after a failed pre_commit"; }
};

TEST(CheckpointWriter, PreCommitErrorMeansNoCommit) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1}, nullptr, std::make_shared<ThrowingPreCommit>());
  EXPECT_THROW((void)writer.write(tmp.path(), small_state_dict()), std::runtime_error);
  EXPECT_FALSE(testing::exists(tmp / "checkpoint_manifest.json"));
}

// A front end's write (the Python binding's): its own hook runs instead of
// the writer's, with its kwargs, for write() and write_async() alike.
TEST(WriteRequest, RunsItsOwnHookInsteadOfTheWriters) {
  TempDir tmp;
  std::vector<std::string> writers_events;
  std::vector<std::string> request_events;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1}, nullptr,
                          std::make_shared<RecordingHook>(&writers_events));
  WriteRequest request;
  request.value = Value::tensor(at::arange(4, at::kFloat));
  request.kwargs.insert("extra", "mine");
  request.hook = std::make_shared<RecordingHook>(&request_events);
  (void)writer.write(tmp / "sync", request);
  (void)writer.write_async(tmp / "async", request).get();
  EXPECT_TRUE(writers_events.empty());
  EXPECT_EQ(request_events, (std::vector<std::string>{"pre:" + tmp / "sync" + ":mine", "post:" + tmp / "sync" + ":mine",
                                                      "pre:" + tmp / "async" + ":mine",
                                                      "post:" + tmp / "async" + ":mine"}));
  request.hook = nullptr;  // the writer's hook, then
  (void)writer.write(tmp / "default", request);
  EXPECT_EQ(writers_events.size(), 2u);
}

// The front end could not make the value: the write fails inside the
// protocol with that very exception (other ranks learn of it through the
// vote), no hook runs, and nothing is left on disk.
TEST(WriteRequest, ConversionErrorFailsTheWriteWithItAndLeavesNothing) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1}, nullptr, std::make_shared<ThrowingPreCommit>());
  WriteRequest request;
  request.conversion_error = std::make_exception_ptr(std::invalid_argument("cannot convert 'opt.state'"));
  EXPECT_THROW((void)writer.write(tmp / "sync", request), std::invalid_argument);
  EXPECT_THROW((void)writer.write_async(tmp / "async", request).get(), std::invalid_argument);
  EXPECT_TRUE(testing::list_dir(tmp.path()).empty());
  EXPECT_THROW((void)writer.write(tmp / "empty", WriteRequest{}), UsageError);
  EXPECT_THROW((void)writer.write_async(tmp / "empty", WriteRequest{}), UsageError);
}

TEST(CheckpointWriter, WriteAfterCloseIsAUsageError) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  writer.close();
  writer.close();  // idempotent
  EXPECT_THROW((void)writer.write(tmp.path(), small_state_dict()), UsageError);
}

// Each bad value fails with a FormatError naming its key path, before the
// directory is even created.
TEST(CheckpointWriter, BadInputNamesKeyPathAndLeavesNothing) {
  struct Case {
    std::string name;
    std::function<void(StateDict&)> fill;
    std::string key_path;
  };
  std::vector<Case> cases = {
      {"undefined", [](StateDict& sd) { sd.insert("model", at::Tensor()); }, "model"},
      {"sparse", [](StateDict& sd) { sd.insert("s", at::eye(3).to_sparse()); }, "s"},
      {"quantized",
       [](StateDict& sd) { sd.insert("q", at::quantize_per_tensor(at::ones({2}), 0.1, 0, at::kQInt8)); }, "q"},
      {"meta", [](StateDict& sd) { sd.insert("m", at::empty({2}, at::TensorOptions().device(at::kMeta))); }, "m"},
      {"nested list",
       [](StateDict& sd) {
         c10::List<at::Tensor> layers;
         layers.push_back(at::ones({1}));
         layers.push_back(at::Tensor());
         c10::impl::GenericDict inner(c10::StringType::get(), c10::AnyType::get());
         inner.insert("layers", layers);
         sd.insert("model", inner);
       },
       "model.layers[1]"},
      {"tensor key",
       [](StateDict& sd) {
         c10::impl::GenericDict inner(c10::TensorType::get(), c10::AnyType::get());
         inner.insert(at::ones({1}), 3);
         sd.insert("state", inner);
       },
       "state"},
      {"unsupported object",
       [](StateDict& sd) { sd.insert("stream", c10::IValue(c10::Stream(c10::Stream::DEFAULT, c10::Device(c10::kCPU)))); },
       "stream"},
  };
  for (const auto& c : cases) {
    TempDir tmp;
    const std::string dir = tmp / "ckpt";
    StateDict sd = make_state_dict();
    sd.insert("ok", at::ones({2}));
    c.fill(sd);
    CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
    try {
      (void)writer.write(dir, sd);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.key_path(), c.key_path) << c.name << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(c.key_path), std::string::npos) << e.what();
    }
    EXPECT_FALSE(testing::exists(dir)) << c.name;
  }
}

TEST(CheckpointWriter, PathThatIsAFileIsAnIoErrorNamingIt) {
  TempDir tmp;
  const std::string file = tmp / "plain_file";
  { std::ofstream(file) << "x"; }
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  try {
    (void)writer.write(file + "/sub", small_state_dict());
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.errno_value(), ENOTDIR) << e.what();
    EXPECT_NE(e.path().find("plain_file"), std::string::npos) << e.what();
  }
  EXPECT_EQ(testing::list_dir(tmp.path()), std::vector<std::string>{"plain_file"});
}

// Permission checks do not apply to root, so the write runs in a child
// process that drops to the unprivileged user `nobody`.
TEST(CheckpointWriter, ReadOnlyDirectoryFailsWithEaccesAndLeavesNothing) {
  TempDir tmp;
  const std::string dir = tmp / "ro";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  // Owned by root, not writable by nobody.
  StateDict sd = small_state_dict();
  int code = testing::run_in_child(
      [&] {
        try {
          CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
          (void)writer.write(dir, sd);
          return 1;
        } catch (const IoError& e) {
          return e.errno_value() == EACCES && e.path().find("/ro/") != std::string::npos ? 0 : 2;
        }
      },
      /*as_nobody=*/true);
  if (code == 98) GTEST_SKIP() << "cannot drop privileges to nobody here";
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(testing::list_dir(dir).empty());
}

// A write that fails halfway (file size limit -> EFBIG from pwrite) leaves the
// previous checkpoint intact and no temporary file.
TEST(CheckpointWriter, FailedWriteKeepsPreviousCheckpointAndRemovesTemp) {
  TempDir tmp;
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  WriteResult old = writer.write(tmp.path(), small_state_dict());
  const std::string before = testing::read_file(old.file);

  StateDict big = make_state_dict();
  big.insert("big", at::ones({4 << 20}, at::kFloat));  // 16 MiB
  int code = testing::run_in_child([&] {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{1 << 20, 1 << 20};
    setrlimit(RLIMIT_FSIZE, &limit);
    try {
      CheckpointWriter child(CheckpointWriterConfig{}, RankInfo{0, 1});
      (void)child.write(tmp.path(), big);
      return 1;
    } catch (const IoError& e) {
      return e.errno_value() == EFBIG ? 0 : 2;
    }
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(testing::read_file(old.file), before);
  // Still committed: a single rank removes the old manifest only just before its rename.
  EXPECT_EQ(testing::list_dir(tmp.path()), (std::vector<std::string>{"checkpoint_0.pt", "checkpoint_manifest.json"}));
}

// A CUDA build orders its copies with LibTorch's CUDA streams and events
// (stage/stage_records.cpp), which exist only once libtorch_cuda is loaded: a
// link that dropped it would fail the first GPU write ("not linked with
// support for cuda devices"). Loading needs no GPU, so CI checks it.
TEST(BuildInfo, ACudaBuildLoadsLibTorchsCudaDeviceGuard) {
  if (build_info().cuda_version == "none") GTEST_SKIP() << "built without CUDA";
  EXPECT_TRUE(c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA));
}

}  // namespace
}  // namespace ckptw
