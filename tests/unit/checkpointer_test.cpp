// Sync and Async checkpointers: save/load, snapshot semantics, failures that
// do not poison later saves, hooks on async saves, close.
#include <gtest/gtest.h>

#include <fstream>

#include <ATen/ATen.h>

#include "ckptw/ckptw.hpp"
#include "support/test_support.hpp"

namespace ckptw {
namespace {

struct CountingHook : WriterHook {
  int pre = 0, post = 0;
  void pre_commit(const std::string&, const HookArgs&) override { ++pre; }
  void post_commit(const std::string&, const HookArgs&) override { ++post; }
};

StateDict weights(float value) {
  StateDict sd = make_state_dict();
  at::Tensor base = at::full({4, 4}, value);
  sd.insert("w", base);
  sd.insert("w_t", base.t());  // a view sharing w's storage
  sd.insert("step", int64_t{7});
  return sd;
}

TEST(SyncCheckpointer, SavesAndLoadsThroughOneConfig) {
  testing::TempDir tmp;
  auto hook = std::make_shared<CountingHook>();
  auto cp = make_sync_checkpointer(CheckpointerConfig{}, RankInfo{0, 1}, hook);
  WriteResult saved = cp->save(tmp / "c", weights(1.5f));
  EXPECT_FALSE(saved.manifest.empty());
  ReadResult r = cp->load(tmp / "c");
  EXPECT_TRUE(at::equal(r.state_dict.at("w").toTensor(), at::full({4, 4}, 1.5f)));
  EXPECT_EQ(r.state_dict.at("w").toTensor().storage().data(), r.state_dict.at("w_t").toTensor().storage().data());
  StateDict tmpl = make_state_dict();
  tmpl.insert("absent", c10::IValue());
  EXPECT_THROW(cp->load(tmp / "c", tmpl, std::nullopt, /*strict=*/true), FormatError);
  EXPECT_EQ(hook->pre, 1);
  EXPECT_EQ(hook->post, 1);
  cp->close();
}

TEST(AsyncCheckpointer, TensorsMayChangeOnceStagedAndTheFileHasTheStagedValues) {
  testing::TempDir tmp;
  auto hook = std::make_shared<CountingHook>();
  auto cp = make_async_checkpointer(CheckpointerConfig{}, RankInfo{0, 1}, hook);
  StateDict sd = weights(2.0f);
  AsyncSave save = cp->save(tmp / "a", sd);
  save.stage.get();
  sd.at("w").toTensor().fill_(-1.0f);  // the trainer moves on
  WriteResult result = save.write.get();
  EXPECT_GT(result.bytes_written, 0u);
  ReadResult r = cp->load(tmp / "a");
  EXPECT_TRUE(at::equal(r.state_dict.at("w").toTensor(), at::full({4, 4}, 2.0f)));
  EXPECT_TRUE(at::equal(r.state_dict.at("w_t").toTensor(), at::full({4, 4}, 2.0f)));
  EXPECT_EQ(hook->pre, 1);  // hooks apply to async saves
  EXPECT_EQ(hook->post, 1);
  cp->close();
}

TEST(AsyncCheckpointer, AFailedSaveReportsOnItsOwnFutureAndTheNextSaveWorks) {
  testing::TempDir tmp;
  { std::ofstream(tmp / "file") << "x"; }
  auto cp = make_async_checkpointer(CheckpointerConfig{}, RankInfo{0, 1});
  AsyncSave bad = cp->save(tmp / "file/sub", weights(1.0f));
  AsyncSave good = cp->save(tmp / "ok", weights(3.0f));  // waits for the failed one, then runs
  EXPECT_THROW(bad.write.get(), IoError);
  EXPECT_NO_THROW(good.write.get());
  EXPECT_TRUE(at::equal(cp->load(tmp / "ok").state_dict.at("w").toTensor(), at::full({4, 4}, 3.0f)));
  cp->close();
  cp->close();  // idempotent
  EXPECT_THROW((void)cp->save(tmp / "late", weights(1.0f)), UsageError);
}

TEST(AsyncCheckpointer, BadInputFailsAtStagingWithTheKeyPath) {
  testing::TempDir tmp;
  auto cp = make_async_checkpointer(CheckpointerConfig{}, RankInfo{0, 1});
  StateDict sd = make_state_dict();
  sd.insert("sparse", at::eye(2).to_sparse());
  AsyncSave save = cp->save(tmp / "s", sd);
  EXPECT_THROW(save.stage.get(), FormatError);
  EXPECT_THROW(save.write.get(), FormatError);
  cp->close();
}

}  // namespace
}  // namespace ckptw
