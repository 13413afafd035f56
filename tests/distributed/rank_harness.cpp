// One rank of a multi-process commit test. Run by tests/distributed/test_commit.py,
// one process per rank, with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set.
//
//   ckptw_rank_harness ROOT --barrier tcp_store|process_group --timeout SECS
//                       [--fail-rank R] [--kill-rank R --kill-phase PHASE]
//
// Writes ROOT/step_1 (always expected to commit), then ROOT/step_2 with the
// requested fault, then tries ROOT/step_3 to see whether the barrier refuses
// reuse after a failure. Prints one event per line on stdout:
//   hook pre_commit <path> <kwarg>  | hook post_commit <path> <kwarg>
//   committed <step>                | error <step> <ErrorType> <message>
// PHASE: before_write, mid_write, before_vote, in_vote, after_vote.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <sys/resource.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "commit/store_connect.hpp"
#include "support/store_backend.hpp"

#if CKPTW_TEST_GLOO
// Only declarations of gloo types are needed here (ProcessGroupGloo is
// constructed and run by LibTorch's own code); the wheel ships no gloo
// headers, so they come from Debian's libgloo-dev.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

namespace {

using namespace ckptw;

struct Args {
  std::string root;
  std::string barrier = "tcp_store";
  int timeout = 5;
  int fail_rank = -1;
  int kill_rank = -1;
  std::string kill_phase;
  bool same_dir = false;  // step_2 rewrites step_1's directory
};

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void die() {
  std::fflush(stdout);
  raise(SIGKILL);
  std::abort();
}

class Hook : public WriterHook {
 public:
  Hook(const Args& args, int rank, const bool* armed) : args_(args), rank_(rank), armed_(armed) {}
  void pre_commit(const std::string& path, const HookArgs& kwargs) override {
    say("hook pre_commit " + path + " " + kwargs.at("extra").toStringRef());
    if (*armed_ && rank_ == args_.kill_rank && args_.kill_phase == "before_vote") die();
  }
  void post_commit(const std::string& path, const HookArgs& kwargs) override {
    say("hook post_commit " + path + " " + kwargs.at("extra").toStringRef());
  }

 private:
  const Args& args_;
  int rank_;
  const bool* armed_;
};

// Delegates to the real barrier; kills this rank inside the write's second
// all-gather (the vote) or before its third (after the vote) when armed.
class KillingBarrier : public Barrier {
 public:
  KillingBarrier(std::shared_ptr<Barrier> inner, const Args& args, int rank, const bool* armed)
      : inner_(std::move(inner)), args_(args), rank_(rank), armed_(armed) {}
  void execute_barrier() override { inner_->execute_barrier(); }
  bool supports_all_gather() const override { return true; }
  std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout) override {
    const int call = calls_++ % 3;  // a write makes three calls: planned, written (the vote), manifest
    const bool killing = *armed_ && rank_ == args_.kill_rank;
    if (killing && call == 2 && args_.kill_phase == "after_vote") die();
    if (killing && call == 1 && args_.kill_phase == "in_vote") {
      // Join the vote (our key is set), then die before it completes.
      std::thread([this, message, timeout] { (void)inner_->all_gather(message, timeout); }).detach();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      die();
    }
    return inner_->all_gather(message, timeout);
  }

 private:
  std::shared_ptr<Barrier> inner_;
  const Args& args_;
  int rank_;
  const bool* armed_;
  int calls_ = 0;
};

StateDict model(int rank, std::int64_t elements) {
  StateDict sd = make_state_dict();
  sd.insert("weight", at::full({elements}, static_cast<float>(rank)));
  sd.insert("rank", static_cast<int64_t>(rank));
  return sd;
}

int attempt_step(CheckpointWriter& writer, const std::string& dir, const StateDict& sd, const std::string& step) {
  HookArgs kwargs = make_state_dict();
  kwargs.insert("extra", "value");
  try {
    (void)writer.write(dir, sd, kwargs);
    say("committed " + step);
    return 0;
  } catch (const CommitAborted& e) {
    say("error " + step + " CommitAborted " + e.what());
    return 1;
  } catch (const TimeoutError& e) {
    say("error " + step + " TimeoutError " + e.what());
    return 2;
  } catch (const UsageError& e) {
    say("error " + step + " UsageError " + e.what());
    return 3;
  } catch (const Error& e) {
    say("error " + step + " Error " + e.what());
    return 4;
  }
}

// Prints how long the step took on this rank's clock: the test bounds a
// failing step by it rather than by the wall time of the whole run, which
// includes process start-up on a loaded machine.
int write_step(CheckpointWriter& writer, const std::string& dir, const StateDict& sd, const std::string& step) {
  const auto started = std::chrono::steady_clock::now();
  const int code = attempt_step(writer, dir, sd, step);
  say("elapsed " + step + " " +
      std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  args.root = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--barrier") args.barrier = value;
    if (flag == "--timeout") args.timeout = std::atoi(value.c_str());
    if (flag == "--fail-rank") args.fail_rank = std::atoi(value.c_str());
    if (flag == "--kill-rank") args.kill_rank = std::atoi(value.c_str());
    if (flag == "--kill-phase") args.kill_phase = value;
    if (flag == "--same-dir") args.same_dir = value == "1";
  }
  const RankInfo rank_info = RankInfo::from_env();
  const int rank = rank_info.global_rank;
  bool armed = false;

  // The store the process-group backends rendezvous through.
  auto connect_store = [&] {
    return ckptw::detail::connect_tcp_store(rank_info,
                                            ckptw::detail::resolve_store_options(rank_info, TcpStoreBarrier::Options{}));
  };
  std::shared_ptr<Barrier> barrier;
  if (args.barrier == "gloo") {
#if CKPTW_TEST_GLOO
    auto store = connect_store();
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(60));
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, rank_info.global_world_size, gloo_options);
    barrier = std::make_shared<ProcessGroupBarrier>(rank_info, gloo, std::chrono::seconds(args.timeout));
#else
    say("gloo unavailable: built without gloo headers");
    return 77;
#endif
  } else if (args.barrier == "process_group") {
    barrier = std::make_shared<ProcessGroupBarrier>(
        rank_info, ckptw::testing::make_store_backend(connect_store(), rank, rank_info.global_world_size),
        std::chrono::seconds(args.timeout));
  } else {
    BarrierConfig config;
    config.type = BarrierType::kTcpStore;
    config.timeout_secs = args.timeout;
    barrier = create_barrier_from_config(config, rank_info);
  }
  CheckpointWriterConfig config;
  config.write_barrier_timeout_secs = args.timeout;
  CheckpointWriter writer(config, rank_info, std::make_shared<KillingBarrier>(barrier, args, rank, &armed),
                          std::make_shared<Hook>(args, rank, &armed));

  if (write_step(writer, args.root + "/step_1", model(rank, 1000), "step_1") != 0) return 10;

  armed = true;
  if (rank == args.kill_rank && args.kill_phase == "before_write") die();
  std::int64_t elements = 1000;
  if (rank == args.kill_rank && args.kill_phase == "mid_write") {
    elements = std::int64_t{200} << 20;  // 800 MB: still writing when the timer fires
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
      die();
    }).detach();
  }
  if (rank == args.fail_rank) {
    // A real I/O failure: the file size limit makes pwrite fail with EFBIG.
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{64 << 10, 64 << 10};
    setrlimit(RLIMIT_FSIZE, &limit);
    elements = 1 << 20;
  }
  const int code =
      write_step(writer, args.root + (args.same_dir ? "/step_1" : "/step_2"), model(rank, elements), "step_2");
  if (code == 0) return 0;
  armed = false;
  (void)write_step(writer, args.root + "/step_3", model(rank, 1000), "step_3");
  return code;
}
