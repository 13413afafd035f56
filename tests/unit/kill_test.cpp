// Real kills: a child process rewrites a checkpoint directory in a loop and is
// SIGKILLed at a random moment, at least 200 times. After every kill the final
// name holds the old or the new complete file (what `ckptw verify` checks), a
// manifest present describes the file beside it, and the next write removes
// the leftovers of killed writes: only its own temp names, never foreign files.
//
// CKPTW_KILL_SEED and CKPTW_KILLS change the random delays and the count.
#include <gtest/gtest.h>

#include <chrono>
#include <algorithm>
#include <csignal>
#include <fstream>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "commit/manifest.hpp"
#include "read/verify.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

using testing::TempDir;

StateDict model(float value) {
  StateDict sd = make_state_dict();
  sd.insert("a", at::full({512, 1024}, value, at::kFloat));  // 2 MiB
  sd.insert("b", at::full({1000}, value, at::kDouble));
  return sd;
}

unsigned env_or(const char* name, unsigned fallback) {
  const char* text = std::getenv(name);
  return text ? static_cast<unsigned>(std::strtoul(text, nullptr, 10)) : fallback;
}

TEST(RealKills, FinalNameHoldsOldOrNewCompleteFileAndLeftoversAreCleanedUp) {
  TempDir tmp;
  const std::string dir = tmp / "ckpt";
  const StateDict versions[2] = {model(1.0f), model(2.0f)};
  std::string file_bytes[2];
  std::string manifest_bytes[2];
  auto started = std::chrono::steady_clock::now();
  for (int v : {1, 0}) {
    CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
    (void)writer.write(dir, versions[v]);
    file_bytes[v] = testing::read_file(dir + "/checkpoint_0.pt");
    manifest_bytes[v] = testing::read_file(dir + "/" + kManifestFileName);
  }
  const auto write_time = (std::chrono::steady_clock::now() - started) / 2;

  // Files the writer must never touch: another rank's temp name, a backup,
  // a note.
  const std::map<std::string, std::string> foreign = {
      {".checkpoint_1.pt.ckptw-tmp.999.0", "rank 1's"}, {"checkpoint_0.pt.bak", "backup"}, {"notes.txt", "notes"}};
  for (const auto& [name, content] : foreign) std::ofstream(dir + "/" + name) << content;

  const unsigned kills = env_or("CKPTW_KILLS", 200);
  std::mt19937 random(env_or("CKPTW_KILL_SEED", 20261129));
  // Delays cover a few whole writes, so kills land in every phase.
  const auto max_delay_us = std::max<long>(2000, 3 * std::chrono::duration_cast<std::chrono::microseconds>(write_time).count());
  std::map<std::string, int> landed;  // what the kills left, for the report
  std::size_t most_leftovers = 0;
  for (unsigned kill = 0; kill < kills; ++kill) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      try {
        CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
        for (unsigned i = 0;; ++i) (void)writer.write(dir, versions[(kill + i) % 2]);
      } catch (...) {
        _exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(random() % max_delay_us));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited by itself with " << WEXITSTATUS(status);

    const std::string file = testing::read_file(dir + "/checkpoint_0.pt");
    const int version = file == file_bytes[0] ? 0 : file == file_bytes[1] ? 1 : -1;
    ASSERT_NE(version, -1) << "kill " << kill << ": checkpoint_0.pt is torn";
    auto verdicts = detail::verify_path(dir + "/checkpoint_0.pt");
    ASSERT_TRUE(verdicts.at(0).ok) << verdicts.at(0).detail;
    const bool has_manifest = testing::exists(dir + "/" + kManifestFileName);
    if (has_manifest) {
      EXPECT_EQ(testing::read_file(dir + "/" + kManifestFileName), manifest_bytes[version])
          << "kill " << kill << ": the manifest does not describe the file beside it";
      ASSERT_TRUE(detail::verify_path(dir).at(0).ok);
    }
    std::size_t leftovers = 0;
    for (const std::string& name : testing::list_dir(dir)) {
      if (name.find(".ckptw-tmp.") != std::string::npos && !foreign.count(name)) ++leftovers;
    }
    most_leftovers = std::max(most_leftovers, leftovers);
    ++landed[std::string(has_manifest ? "committed" : "uncommitted") + (leftovers ? " + leftovers" : "")];
  }

  // The next write commits and removes the leftovers; foreign files stay.
  CheckpointWriter writer(CheckpointWriterConfig{}, RankInfo{0, 1});
  (void)writer.write(dir, versions[0]);
  std::vector<std::string> expected = {"checkpoint_0.pt", "checkpoint_manifest.json"};
  for (const auto& entry : foreign) expected.push_back(entry.first);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(testing::list_dir(dir), expected);
  for (const auto& [name, content] : foreign) EXPECT_EQ(testing::read_file(dir + "/" + name), content);
  EXPECT_TRUE(detail::verify_path(dir).at(0).ok);
  // Each write cleans up before it starts, so leftovers never pile up.
  EXPECT_LE(most_leftovers, 2u);

  std::printf("[ kills    ] %u SIGKILLs, delays 0-%ld us:", kills, max_delay_us);
  for (const auto& [what, count] : landed) std::printf(" %s %d;", what.c_str(), count);
  std::printf(" 0 torn\n");
}

}  // namespace
}  // namespace ckptw
