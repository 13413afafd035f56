// The NCCL barrier's protocol without a GPU (commit/nccl_protocol.hpp): the
// gather's ordering against a fake that behaves as a non-blocking NCCL
// communicator does, the unique-id exchange over a real c10d HashStore, and
// the choice of device.
#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <thread>

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include "ckptw/error.hpp"
#include "commit/barrier_guard.hpp"
#include "commit/nccl_protocol.hpp"

namespace ckptw::detail {
namespace {

constexpr std::size_t kSlot = 8;

// Non-blocking NCCL as the real one behaves: ncclAllGather returns "in
// progress" while NCCL's own thread enqueues it, and the collective's kernel
// reaches the stream only when the communicator's state leaves "in progress"
// (after `enqueue_polls` queries). The stream runs in order: a download
// queued before the kernel copies the receive buffer as it was (zeros).
class NonBlockingNccl final : public NcclCalls {
 public:
  NonBlockingNccl(int world, int enqueue_polls) : world_(world), enqueue_polls_(enqueue_polls) {
    send_.resize(kSlot);
    device_recv_.assign(kSlot * world, 0);
    host_recv_.assign(kSlot * world, 0);
  }

  unsigned char* host_send() override { return send_.data(); }
  const unsigned char* host_recv() override { return host_recv_.data(); }
  Status upload_send() override { return {}; }
  Status all_gather() override {
    ++gathers;
    polls_left_ = enqueue_polls_;
    if (polls_left_ == 0) land_kernel();
    return polls_left_ == 0 ? Status{} : Status{State::kInProgress, {}};
  }
  Status comm_state() override {
    if (polls_left_ > 0 && --polls_left_ == 0) land_kernel();
    return polls_left_ > 0 ? Status{State::kInProgress, {}} : Status{};
  }
  Status download_and_record() override {
    host_recv_ = device_recv_;  // in stream order: whatever the kernel has written so far
    return {};
  }
  Status query_done() override { return {}; }
  void abort() noexcept override { aborted = true; }

  int gathers = 0;
  bool aborted = false;

 private:
  // Every rank sent the same kind of message: this rank's, then "r<rank>".
  void land_kernel() {
    for (int r = 0; r < world_; ++r) {
      const std::string m = r == 0 ? std::string(reinterpret_cast<const char*>(send_.data() + 1), send_[0])
                                   : "r" + std::to_string(r);
      device_recv_[kSlot * r] = static_cast<unsigned char>(m.size());
      std::memcpy(device_recv_.data() + kSlot * r + 1, m.data(), m.size());
    }
  }

  int world_;
  int enqueue_polls_;
  int polls_left_ = 0;
  std::vector<unsigned char> send_;
  std::vector<unsigned char> device_recv_;
  std::vector<unsigned char> host_recv_;
};

TEST(NcclGather, WaitsForTheCollectiveToBeEnqueuedBeforeQueuingItsResult) {
  for (int enqueue_polls : {0, 1, 50}) {
    NonBlockingNccl nccl(3, enqueue_polls);
    NcclGatherTransport transport(nccl, 3, kSlot);
    BarrierGuard guard("test barrier");
    for (const std::string vote : {"1", "0", "1"}) {  // the next call reuses the buffers
      EXPECT_EQ(polled_all_gather(transport, guard, vote, std::chrono::seconds(10)),
                (std::vector<std::string>{vote, "r1", "r2"}))
          << enqueue_polls << " polls in progress";
    }
    EXPECT_EQ(nccl.gathers, 3);
  }
}

TEST(NcclGather, StillEnqueuingAtTheDeadlineIsATimeoutAndAborts) {
  NonBlockingNccl nccl(2, 1 << 30);
  NcclGatherTransport transport(nccl, 2, kSlot);
  BarrierGuard guard("test barrier");
  EXPECT_THROW(polled_all_gather(transport, guard, "1", std::chrono::milliseconds(100)), TimeoutError);
  EXPECT_TRUE(nccl.aborted);
  EXPECT_THROW(transport.start("1"), Error) << "a second gather must not reuse buffers a pending one reads";
}

std::vector<std::uint8_t> id_of(const std::string& text) { return {text.begin(), text.end()}; }

// A world of `world` ranks exchanging rank 0's id; rank 0 starts after
// `rank0_delay`, as happens when the others construct their barrier first.
std::vector<std::vector<std::uint8_t>> exchange(c10d::Store& store, int world, const std::string& id,
                                                std::chrono::milliseconds rank0_delay = {}) {
  std::vector<std::future<std::vector<std::uint8_t>>> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(std::async(std::launch::async, [&store, r, world, id, rank0_delay] {
      if (r == 0) std::this_thread::sleep_for(rank0_delay);
      return exchange_unique_id(store, "ckpt", r, world, std::chrono::seconds(10), [&] { return id_of(id); });
    }));
  }
  std::vector<std::vector<std::uint8_t>> got;
  for (auto& f : ranks) got.push_back(f.get());
  return got;
}

TEST(NcclUniqueId, EachBarrierWithTheSamePrefixGetsItsOwnIdAndLeavesNoKeyBehind) {
  c10d::HashStore store;
  EXPECT_EQ(exchange(store, 3, "first"), std::vector<std::vector<std::uint8_t>>(3, id_of("first")));
  // The other ranks arrive first: the previous generation's id must not be taken for this one's.
  EXPECT_EQ(exchange(store, 3, "second", std::chrono::milliseconds(300)),
            std::vector<std::vector<std::uint8_t>>(3, id_of("second")));
  EXPECT_FALSE(store.check({"ckpt/nccl_unique_id/1"}));
  EXPECT_FALSE(store.check({"ckpt/nccl_unique_id/2"}));
  EXPECT_FALSE(store.check({"ckpt/nccl_unique_id/2/read"}));
}

// A rank that reads between a timed-out generation and rank 0's next publish
// still takes the unread id (docs/commit.md); once rank 0 has published, the
// rebuild gets the new one, and the unread one is gone.
TEST(NcclUniqueId, AfterASetUpThatTimedOutTheRebuildGetsTheNewId) {
  c10d::HashStore store;
  auto publish = [&](const std::string& id) {
    return exchange_unique_id(store, "ckpt", 0, 2, std::chrono::seconds(1), [&] { return id_of(id); });
  };
  (void)publish("stale");  // rank 1 never reads it (its process died)
  EXPECT_TRUE(store.check({"ckpt/nccl_unique_id/1"}));
  EXPECT_EQ(publish("rebuilt"), id_of("rebuilt"));
  EXPECT_FALSE(store.check({"ckpt/nccl_unique_id/1"})) << "the unread id of the timed-out generation";
  EXPECT_EQ(exchange_unique_id(store, "ckpt", 1, 2, std::chrono::seconds(1), [] { return id_of("unused"); }),
            id_of("rebuilt"));
}

TEST(NcclUniqueId, NoRankZeroIsATimeoutNamingTheKeys) {
  c10d::HashStore store;
  try {
    (void)exchange_unique_id(store, "ckpt", 1, 2, std::chrono::milliseconds(200), [] { return id_of("x"); });
    FAIL() << "no timeout";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt/nccl_unique_id/"), std::string::npos) << e.what();
  }
}

TEST(NcclDevice, DefaultIsTheLocalRankModuloTheVisibleDevices) {
  EXPECT_EQ(nccl_device(-1, 3, 1), 0);  // one GPU per process (CUDA_VISIBLE_DEVICES), LOCAL_RANK=3
  EXPECT_EQ(nccl_device(-1, 3, 8), 3);
  EXPECT_EQ(nccl_device(-1, 9, 8), 1);
  EXPECT_EQ(nccl_device(2, 3, 8), 2);
  EXPECT_THROW(nccl_device(1, 0, 1), UsageError);
  EXPECT_THROW(nccl_device(-1, 0, 0), Error);
}

}  // namespace
}  // namespace ckptw::detail
