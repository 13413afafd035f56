// The NCCL barrier's deadline and abort logic, on CPU, through a fake
// transport: never completes, completes late, reports an async error.
// ProcessGroupBarrier over fake c10d backends: which GPU its votes go on,
// that a timeout never aborts the (trainer's) communicator, and that
// write_async refuses to vote over the trainer's own group. Also the vote
// encoding and the manifest.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "ckptw/barriers.hpp"
#include "ckptw/build_info.hpp"
#include "ckptw/checkpoint_writer.hpp"
#include "ckptw/error.hpp"
#include "support/test_support.hpp"
#include "commit/manifest.hpp"
#include "commit/polled_collective.hpp"

namespace ckptw::detail {
namespace {

class FakeTransport : public CollectiveTransport {
 public:
  enum class Mode { kNever, kAfter, kAsyncError };
  FakeTransport(Mode mode, std::chrono::milliseconds after = {}) : mode_(mode), after_(after) {}

  void start(const std::string& message) override {
    started_ = std::chrono::steady_clock::now();
    message_ = message;
    ++starts;
  }
  Progress poll(std::string* error) override {
    ++polls;
    if (aborted) return Progress::kFailed;
    switch (mode_) {
      case Mode::kNever:
        return Progress::kPending;
      case Mode::kAfter:
        return std::chrono::steady_clock::now() - started_ >= after_ ? Progress::kDone : Progress::kPending;
      case Mode::kAsyncError:
        *error = "NCCL async error: remote process exited";
        return Progress::kFailed;
    }
    return Progress::kPending;
  }
  std::vector<std::string> result() override { return {message_, "peer"}; }
  void abort() noexcept override { aborted = true; }

  int starts = 0;
  int polls = 0;
  bool aborted = false;

 private:
  Mode mode_;
  std::chrono::milliseconds after_;
  std::chrono::steady_clock::time_point started_;
  std::string message_;
};

// A c10d backend under any name whose all-gathers never complete (a rank
// that never joins), counting what the barrier asks of its Work.
class StalledBackend final : public c10d::Backend {
 public:
  struct Calls {
    std::atomic<int> allgathers{0};
    std::atomic<int> aborts{0};
  };
  class StalledWork final : public c10d::Work {
   public:
    explicit StalledWork(std::shared_ptr<Calls> calls) : calls_(std::move(calls)) {}
    bool isCompleted() override { return false; }
    void abort() override { ++calls_->aborts; }

   private:
    std::shared_ptr<Calls> calls_;
  };

  StalledBackend(std::string name, int rank, int size) : c10d::Backend(rank, size), name_(std::move(name)) {}
  const std::string getBackendName() const override { return name_; }
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>&, std::vector<at::Tensor>&,
                                           const c10d::AllgatherOptions&) override {
    ++calls->allgathers;
    return c10::make_intrusive<StalledWork>(calls);
  }

  std::shared_ptr<Calls> calls = std::make_shared<Calls>();

 private:
  std::string name_;
};

// NCCL groups: the group's bound device, else the one asked for, never
// LOCAL_RANK (an invalid ordinal under a per-rank CUDA_VISIBLE_DEVICES, and
// the same GPU for every rank of a node when Python's RankInfo leaves it 0).
TEST(ProcessGroupBarrier, VotesGoOnTheGroupsBoundDeviceNotLocalRank) {
  RankInfo rank{1, 8};
  rank.local_rank = 5;
  auto bound = c10::make_intrusive<StalledBackend>("nccl", 1, 8);
  bound->setBoundDeviceId(c10::Device(c10::kCUDA, 3));
  EXPECT_EQ(ProcessGroupBarrier(rank, bound).device(), c10::Device(c10::kCUDA, 3));

  ProcessGroupBarrier::Options options;
  options.device = c10::Device(c10::kCUDA, 2);
  auto unbound = c10::make_intrusive<StalledBackend>("nccl", 1, 8);
  EXPECT_EQ(ProcessGroupBarrier(rank, unbound, options).device(), c10::Device(c10::kCUDA, 2));
  options.device = c10::Device(c10::kCUDA);
  EXPECT_THROW(ProcessGroupBarrier(rank, unbound, options), UsageError) << "a device without an index";

  auto gloo = c10::make_intrusive<StalledBackend>("gloo", 1, 8);
  gloo->setBoundDeviceId(c10::Device(c10::kCUDA, 3));
  EXPECT_EQ(ProcessGroupBarrier(rank, gloo).device(), c10::Device(c10::kCPU)) << "Gloo votes with CPU tensors";
}

// The trainer's communicator belongs to the trainer: on NCCL, Work::abort()
// aborts it, and training would die with the checkpoint.
TEST(ProcessGroupBarrier, ATimeoutBreaksTheBarrierWithoutAbortingTheCollective) {
  auto backend = c10::make_intrusive<StalledBackend>("gloo", 0, 2);
  ProcessGroupBarrier barrier(RankInfo{0, 2}, backend, std::chrono::milliseconds(50));
  EXPECT_THROW(barrier.all_gather("vote", std::chrono::milliseconds(50)), TimeoutError);
  EXPECT_EQ(backend->calls->allgathers.load(), 1);
  EXPECT_EQ(backend->calls->aborts.load(), 0);
  EXPECT_THROW(barrier.all_gather("again", std::chrono::milliseconds(50)), UsageError) << "broken after a timeout";
  EXPECT_EQ(backend->calls->allgathers.load(), 1);
}

// write_async votes on ckptw's background thread: over the trainer's own
// group its all-gather would meet the training thread's collectives out of
// order. Refused at the call, before anything is written or gathered; a
// barrier over a group of its own is accepted.
TEST(ProcessGroupBarrier, WriteAsyncRefusesTheTrainersOwnGroup) {
  testing::TempDir tmp;
  StateDict sd = make_state_dict();
  sd.insert("w", at::ones({4}));
  auto shared_backend = c10::make_intrusive<StalledBackend>("gloo", 0, 2);
  auto shared = std::make_shared<ProcessGroupBarrier>(RankInfo{0, 2}, shared_backend);
  EXPECT_TRUE(shared->shares_callers_collectives());
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 2}, shared);
  try {
    (void)writer.write_async(tmp / "c", sd);
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("own_group=True"), std::string::npos) << e.what();
  }
  EXPECT_EQ(shared_backend->calls->allgathers.load(), 0);
  EXPECT_FALSE(std::filesystem::exists(tmp / "c"));

  ProcessGroupBarrier::Options own;
  own.dedicated_group = true;
  EXPECT_FALSE(ProcessGroupBarrier(RankInfo{0, 2}, c10::make_intrusive<StalledBackend>("gloo", 0, 2), own)
                   .shares_callers_collectives());
}

// NCCL_COMM_BLOCKING=1 overrides the non-blocking config of ckptw's own
// communicator, which would then block with no deadline: refused at once,
// before any store, id or CUDA call.
TEST(NcclBarrier, RefusesAnEnvironmentThatMakesItsCommunicatorBlocking) {
  if (build_info().nccl_version == "none") GTEST_SKIP() << "built without NCCL";
  ::setenv("NCCL_COMM_BLOCKING", "1", 1);
  NcclBarrier::Options options;
  options.store.master_address = "127.0.0.1";
  options.store.master_port = 1;  // nothing listens: a refusal must come before any connection
  options.timeout_secs = 1;
  try {
    NcclBarrier barrier(RankInfo{0, 2}, options);
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL_COMM_BLOCKING=1"), std::string::npos) << e.what();
  } catch (const Error& e) {
    ADD_FAILURE() << "not refused up front: " << e.what();
  }
  ::unsetenv("NCCL_COMM_BLOCKING");
}

TEST(PolledAllGather, NeverCompletingTimesOutOnTimeAbortsAndBreaksTheBarrier) {
  FakeTransport transport(FakeTransport::Mode::kNever);
  BarrierGuard guard("NcclBarrier 'test'");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(polled_all_gather(transport, guard, "1", std::chrono::milliseconds(200)), TimeoutError);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(200));
  EXPECT_LT(waited, std::chrono::milliseconds(2000));
  EXPECT_TRUE(transport.aborted);
  EXPECT_GT(transport.polls, 5);  // polled, not one blocking wait
  // Reuse fails fast instead of starting a collective the other ranks never join.
  EXPECT_THROW(polled_all_gather(transport, guard, "1", std::chrono::milliseconds(200)), UsageError);
  EXPECT_EQ(transport.starts, 1);
}

TEST(PolledAllGather, LateCompletionWithinTheDeadlineSucceeds) {
  FakeTransport transport(FakeTransport::Mode::kAfter, std::chrono::milliseconds(100));
  BarrierGuard guard("NcclBarrier 'test'");
  auto messages = polled_all_gather(transport, guard, "1 42 7", std::chrono::seconds(5));
  EXPECT_EQ(messages, (std::vector<std::string>{"1 42 7", "peer"}));
  EXPECT_FALSE(transport.aborted);
  EXPECT_NO_THROW(guard.check_usable());
}

TEST(PolledAllGather, CompletionAfterTheDeadlineIsATimeout) {
  FakeTransport transport(FakeTransport::Mode::kAfter, std::chrono::milliseconds(400));
  BarrierGuard guard("NcclBarrier 'test'");
  EXPECT_THROW(polled_all_gather(transport, guard, "1", std::chrono::milliseconds(100)), TimeoutError);
  EXPECT_TRUE(transport.aborted);
}

TEST(PolledAllGather, AsyncErrorAbortsAndNamesTheCause) {
  FakeTransport transport(FakeTransport::Mode::kAsyncError);
  BarrierGuard guard("NcclBarrier 'test'");
  try {
    polled_all_gather(transport, guard, "1", std::chrono::seconds(5));
    FAIL();
  } catch (const TimeoutError&) {
    FAIL() << "an async error is not a timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("remote process exited"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(transport.aborted);
  EXPECT_THROW(guard.check_usable(), UsageError);
}

TEST(PolledAllGather, OversizedMessageIsAUsageError) {
  FakeTransport transport(FakeTransport::Mode::kNever);
  BarrierGuard guard("b");
  EXPECT_THROW(polled_all_gather(transport, guard, std::string(65, 'x'), std::chrono::seconds(1)), UsageError);
}

TEST(Vote, RoundTrips) {
  Vote ok = decode_vote(encode_vote(true, 123456789012ull, 4000000000u, ""));
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.bytes, 123456789012ull);
  EXPECT_EQ(ok.directory_crc32, 4000000000u);
  Vote failed = decode_vote(encode_vote(false, 0, 0, "pre_commit"));
  EXPECT_FALSE(failed.ok);
  EXPECT_EQ(failed.failed_phase, "pre_commit");
  EXPECT_FALSE(decode_vote("").ok);  // a rank that sent nothing did not succeed
  EXPECT_LE(encode_vote(true, UINT64_MAX, UINT32_MAX, "").size(), Barrier::kMaxMessageBytes);
}

TEST(Manifest, RoundTripsAndRejectsMalformedText) {
  Manifest m;
  m.world_size = 2;
  m.files = {{0, "checkpoint_0.pt", 100, 1}, {1, "checkpoint_1.pt", 200, 2}};
  Manifest back = decode_manifest(encode_manifest(m), "m.json");
  ASSERT_EQ(back.files.size(), 2u);
  EXPECT_EQ(back.files[1].bytes, 200u);
  EXPECT_THROW(decode_manifest("{", "m.json"), FormatError);
  EXPECT_THROW(decode_manifest(R"({"format":"ckptw-manifest","version":1,"world_size":3,"files":[]})", "m.json"),
               FormatError);
}

TEST(BarrierConfig, ParsesTypesAndBuildsNoneAsNull) {
  EXPECT_EQ(parse_barrier_type("tcp_store"), BarrierType::kTcpStore);
  EXPECT_THROW(parse_barrier_type("dist_barrier"), UsageError);
  EXPECT_EQ(create_barrier_from_config(BarrierConfig{}, RankInfo{0, 1}), nullptr);
  BarrierConfig pg;
  pg.type = BarrierType::kProcessGroup;
  EXPECT_THROW(create_barrier_from_config(pg, RankInfo{0, 1}), UsageError);
}

}  // namespace
}  // namespace ckptw::detail
