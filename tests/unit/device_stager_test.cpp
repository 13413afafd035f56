// Device staging (DeviceStager behind the device copy engine, the code the
// CUDA engine runs) over the emulated device of tests/support: its streams
// run queued work only when something waits for it, so a destination read
// before its copy's wait holds stale bytes. The kernels' CUDA launch and the
// runtime calls themselves run only on a GPU (tests/gpu, device check).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "checksum/crc32.hpp"
#include "ckptw/error.hpp"
#include "stage/copy_engine.hpp"
#include "stage/device_stager.hpp"
#include "stage/host_pin.hpp"
#include "support/emulated_device.hpp"

namespace ckptw {
namespace {

using detail::DeviceStager;

std::vector<unsigned char> random_bytes(std::size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

// Storages laid out in increasing host order with the given gaps, as a file
// image or packed staging lays them out.
struct Layout {
  std::vector<std::vector<unsigned char>> sources;
  std::vector<std::size_t> offsets;
  std::vector<unsigned char> host;

  Layout(const std::vector<std::size_t>& sizes, std::size_t gap) {
    std::size_t at = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      sources.push_back(random_bytes(sizes[i], static_cast<unsigned>(i + 1)));
      offsets.push_back(at);
      at += sizes[i] + gap;
    }
    host.assign(at, 0);
  }
  bool landed(std::size_t i) const {
    return sources[i].empty() || std::memcmp(host.data() + offsets[i], sources[i].data(), sources[i].size()) == 0;
  }
  std::size_t not_landed() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < sources.size(); ++i) n += !landed(i);
    return n;
  }
  std::uint64_t copy(detail::CopyEngine& engine, std::size_t i) {
    return engine.copy_to_host(host.data() + offsets[i], sources[i].data(), sources[i].size(), 0);
  }
  std::vector<std::uint64_t> copy_all(detail::CopyEngine& engine) {
    std::vector<std::uint64_t> tickets;
    for (std::size_t i = 0; i < sources.size(); ++i) tickets.push_back(copy(engine, i));
    return tickets;
  }
  // Waits for each ticket in turn; storage i has landed once tickets[i] was waited for.
  void wait_each(detail::CopyEngine& engine, const std::vector<std::uint64_t>& tickets) const {
    for (std::size_t i = 0; i < tickets.size(); ++i) {
      engine.wait(tickets[i]);
      EXPECT_TRUE(landed(i)) << i;
    }
  }
};

TEST(DeviceStager, ACopyLandsOnceItsTicketIsWaitedForPackingSmallOnesIntoBatches) {
  testing::EmulatedDevice device;
  auto engine = detail::make_device_copy_engine(device, "emulated");
  const std::size_t pack_limit = DeviceStager::kPackBelow;
  // Batch 1: 4096, 77, 1 MiB (the largest packed); direct: 1 MiB + 1; no
  // copy: 0 bytes; batch 2: 300; direct: 5 MiB; batch 3: 64.
  Layout layout({4096, 77, pack_limit, pack_limit + 1, 0, 300, 5 << 20, 64}, 128);
  const std::vector<std::uint64_t> tickets = layout.copy_all(*engine);
  for (std::size_t i = 1; i < tickets.size(); ++i) EXPECT_GT(tickets[i], tickets[i - 1]);
  EXPECT_EQ(device.transfers(), 0) << "queued copies ran before anything waited for them";
  EXPECT_FALSE(layout.landed(0));

  engine->wait(tickets[1]);  // in batch 1: sends it and waits for it
  EXPECT_TRUE(layout.landed(0));
  EXPECT_TRUE(layout.landed(1));
  EXPECT_TRUE(layout.landed(2));
  EXPECT_FALSE(layout.landed(3));
  layout.wait_each(*engine, tickets);
  engine->finish();
  EXPECT_EQ(device.packs(), 3);
  EXPECT_EQ(device.transfers(), 5);  // three batches, two direct copies
  engine.reset();
  EXPECT_EQ(device.live_resources(), 0) << "streams, events or memory left behind";
}

// A writer lives for the whole training run: what the stager remembers per
// copy is forgotten at finish(), when every copy has landed.
TEST(DeviceStager, FinishForgetsTheTicketsOfLandedCopies) {
  testing::EmulatedDevice device;
  DeviceStager stager(device);
  std::vector<unsigned char> src(64, 1), dst(64 * 1000);
  std::uint64_t first = 0;
  for (int write = 0; write < 3; ++write) {
    std::uint64_t ticket = 0;
    for (int i = 0; i < 1000; ++i) {
      ASSERT_EQ(stager.copy_to_host(dst.data() + 64 * i, src.data(), 64, 0, &ticket), "");
      if (first == 0) first = ticket;
    }
    (void)stager.host_ticket();
    EXPECT_EQ(stager.tickets_tracked(), 1001u);
    int failed = -1;
    ASSERT_EQ(stager.finish(&failed), "");
    EXPECT_EQ(stager.tickets_tracked(), 0u) << "write " << write;
    ASSERT_EQ(stager.wait(ticket, &failed), "") << "a ticket from before finish() has landed";
    EXPECT_EQ(failed, -1);
  }
  int failed = -1;
  EXPECT_EQ(stager.wait(first, &failed), "");
  EXPECT_NE(stager.wait(first + 1000000, &failed), "") << "a ticket never handed out";
}

TEST(DeviceStager, TenThousandSmallStoragesMoveInOnePackAndOneTransfer) {
  testing::EmulatedDevice device;
  auto engine = detail::make_device_copy_engine(device, "emulated");
  Layout layout(std::vector<std::size_t>(10000, 4096), 64);
  engine->wait(layout.copy_all(*engine).back());
  EXPECT_EQ(device.packs(), 1);
  EXPECT_EQ(device.transfers(), 1);
  EXPECT_EQ(layout.not_landed(), 0u);
  engine->finish();
}

TEST(DeviceStager, BatchesBreakAtTheItemAndScratchLimits) {
  {
    testing::EmulatedDevice device;
    auto engine = detail::make_device_copy_engine(device, "emulated");
    Layout layout(std::vector<std::size_t>(DeviceStager::kMaxItems + 10, 16), 0);
    (void)layout.copy_all(*engine);
    engine->finish();
    EXPECT_EQ(device.packs(), 2);
    EXPECT_EQ(layout.not_landed(), 0u);
  }
  {
    testing::EmulatedDevice device;
    auto engine = detail::make_device_copy_engine(device, "emulated");
    const std::size_t count = DeviceStager::kScratchBytes / DeviceStager::kPackBelow + 3;
    Layout layout(std::vector<std::size_t>(count, DeviceStager::kPackBelow), 0);
    (void)layout.copy_all(*engine);
    engine->finish();
    EXPECT_EQ(device.packs(), 2);  // 64 MiB of scratch holds 64 of them
    EXPECT_EQ(layout.not_landed(), 0u);
  }
}

// Storages on two devices, interleaved: each device's copies run on its own
// stream; a device's pending batch is sent before the other device's copy.
TEST(DeviceStager, CopiesFromTwoDevicesLandThroughTheirOwnStreams) {
  testing::EmulatedDevice device(2);
  auto engine = detail::make_device_copy_engine(device, "emulated");
  Layout layout({4096, 4096, 300, 300, 3 << 20, 64}, 64);
  std::vector<std::uint64_t> tickets;
  for (std::size_t i = 0; i < layout.sources.size(); ++i) {
    tickets.push_back(engine->copy_to_host(layout.host.data() + layout.offsets[i], layout.sources[i].data(),
                                           layout.sources[i].size(), static_cast<int>(i % 2)));
  }
  engine->wait(tickets[1]);  // device 1's first copy: device 0's work need not have run
  EXPECT_TRUE(layout.landed(1));
  EXPECT_FALSE(layout.landed(0));
  layout.wait_each(*engine, tickets);
  engine->finish();
  EXPECT_EQ(device.packs(), 5);  // every device switch sends the other's batch; the 3 MiB copy goes directly
  EXPECT_EQ(device.current_device(), 0) << "the caller's current device was not restored";
  engine.reset();
  EXPECT_EQ(device.live_resources(), 0);
}

// The staging stream waits for the producer's event: the producer's pending
// work (here: new values uploaded on its own stream) is in the copy.
// The trainer's side: a stream of its own that writes `values` into
// `tensor` (lazily, as the emulated device runs work) and an event after it.
struct Producer {
  testing::EmulatedDevice& device;
  void* stream = nullptr;
  void* produced = nullptr;
  Producer(testing::EmulatedDevice& d, std::vector<unsigned char>& tensor, const std::vector<unsigned char>& values)
      : device(d) {
    EXPECT_EQ(device.create_stream(&stream), "");
    EXPECT_EQ(device.create_event(&produced), "");
    EXPECT_EQ(device.copy_to_device_async(tensor.data(), values.data(), tensor.size(), stream), "");
    EXPECT_EQ(device.record_event(produced, stream), "");
  }
  ~Producer() {
    device.destroy_event(produced);
    device.destroy_stream(stream);
  }
};

TEST(DeviceStager, CopiesAreOrderedAfterTheProducersEvent) {
  for (const bool ordered : {true, false}) {
    testing::EmulatedDevice device;
    auto engine = detail::make_device_copy_engine(device, "emulated");
    const std::vector<unsigned char> old_values(4096, 1), new_values(4096, 2);
    std::vector<unsigned char> tensor = old_values, host(4096, 0);
    Producer producer(device, tensor, new_values);
    if (ordered) engine->wait_for_producer(0, producer.produced);
    engine->wait(engine->copy_to_host(host.data(), tensor.data(), tensor.size(), 0));
    // Unordered, the lazy producer has not run yet: the mutation this test catches.
    EXPECT_EQ(host, ordered ? new_values : old_values) << (ordered ? "ordered" : "unordered");
    engine->finish();
  }
}

TEST(DeviceStager, AFailedCopyIsAnErrorNamingTheDeviceAndTheEngineWorksAfterFinish) {
  testing::EmulatedDevice device;
  auto engine = detail::make_device_copy_engine(device, "emulated");
  Layout big({5 << 20}, 0);
  device.fail_next("copy_to_host_async");
  try {
    (void)big.copy(*engine, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("emulated error in copy_to_host_async"), std::string::npos) << e.what();
  }
  engine->finish();

  // A batch whose pack fails: waiting for one of its copies reports it; the
  // copies of that batch never land, and waiting again says so.
  Layout small({100, 200}, 64);
  const std::uint64_t first = small.copy(*engine, 0);
  const std::uint64_t second = small.copy(*engine, 1);
  device.fail_next("pack_async");
  EXPECT_THROW(engine->wait(first), Error);
  EXPECT_THROW(engine->wait(second), Error);
  engine->finish();

  Layout again({100, 5 << 20}, 64);
  engine->wait(again.copy(*engine, 0));
  engine->wait(again.copy(*engine, 1));
  EXPECT_TRUE(again.landed(0));
  EXPECT_TRUE(again.landed(1));
  engine->finish();
}

// CRC-32 computed "on the device" (the kernel's arithmetic, per block and
// thread) and joined on the host equals ISA-L's, taken by ticket in any order.
TEST(DeviceStager, DeviceCrc32MatchesIsaLAndIsTakenByTicket) {
  testing::EmulatedDevice device;
  auto engine = detail::make_device_copy_engine(device, "emulated");
  const std::size_t sizes[] = {0, 1, 127, 128, 129, 16383, 16384, 16385, 3 * 16384 + 77, (std::size_t{1} << 20) + 3};
  std::vector<std::vector<unsigned char>> data;
  std::vector<std::uint64_t> tickets;
  for (std::size_t n : sizes) {
    data.push_back(random_bytes(n, static_cast<unsigned>(n)));
    tickets.push_back(engine->queue_device_crc32(data.back().data(), n, 0));
    EXPECT_NE(tickets.back(), 0u);
  }
  EXPECT_EQ(device.crc_kernels(), 0);
  for (std::size_t i = data.size(); i-- > 0;) {
    EXPECT_EQ(engine->device_crc32_result(tickets[i]), detail::crc32_update(0, data[i].data(), data[i].size()))
        << sizes[i] << " bytes";
  }
  EXPECT_EQ(device.crc_kernels(), static_cast<int>(std::size(sizes)) - 1);  // none for 0 bytes
  EXPECT_THROW((void)engine->device_crc32_result(tickets[0]), Error) << "a ticket is taken once";
  engine->finish();
  engine.reset();
  EXPECT_EQ(device.live_resources(), 0);
}

// Checksums run on a stream of their own: taking one waits for the CRC
// kernels and the producer, never for copies queued before it. On one
// stream, the 4 MiB copy queued between the two checksums had to run first.
// They still wait for the producer (ordered after its event, as the copies).
TEST(DeviceStager, ChecksumsDoNotQueueBehindCopiesButAfterTheProducer) {
  testing::EmulatedDevice device;
  auto engine = detail::make_device_copy_engine(device, "emulated");
  const std::vector<unsigned char> old_values(1 << 20, 1), new_values(1 << 20, 2);
  std::vector<unsigned char> tensor = old_values;
  auto producer = std::make_unique<Producer>(device, tensor, new_values);
  engine->wait_for_producer(0, producer->produced);

  const std::uint64_t first = engine->queue_device_crc32(tensor.data(), tensor.size(), 0);
  const std::vector<unsigned char> big = random_bytes(4 << 20, 7);  // unpacked: a transfer of its own
  std::vector<unsigned char> host(big.size(), 0);
  const std::uint64_t copy = engine->copy_to_host(host.data(), big.data(), big.size(), 0);
  const std::uint64_t second = engine->queue_device_crc32(tensor.data(), tensor.size(), 0);
  EXPECT_EQ(engine->device_crc32_result(second), detail::crc32_update(0, new_values.data(), new_values.size()))
      << "the checksum ran before the producer's write";
  EXPECT_EQ(host, std::vector<unsigned char>(big.size(), 0)) << "the checksum waited for the copy queued before it";
  EXPECT_EQ(engine->device_crc32_result(first), detail::crc32_update(0, new_values.data(), new_values.size()));
  engine->wait(copy);
  EXPECT_EQ(host, big);
  engine->finish();
  engine.reset();
  producer.reset();
  EXPECT_EQ(device.live_resources(), 0);
}

// What the writer's ring and staging memory are pinned with: one range held
// at a time, released before another is pinned and when the pin goes (before
// its owner frees the memory); a refused pin holds nothing to release.
TEST(HostPin, HoldsOneRangeAndReleasesItBeforeAnotherAndAtTheEnd) {
  testing::EmulatedDevice device;
  auto engine = detail::make_device_copy_engine(device, "emulated");
  std::vector<unsigned char> a(4096), b(4096);
  {
    detail::HostPin pin;
    EXPECT_FALSE(pin.held());
    EXPECT_TRUE(pin.pin(*engine, a.data(), a.size(), 0));
    EXPECT_TRUE(pin.held());
    EXPECT_EQ(device.host_registrations(), 1);
    EXPECT_TRUE(pin.pin(*engine, b.data(), b.size(), 0));
    EXPECT_EQ(device.host_registrations(), 2);
    EXPECT_EQ(device.host_unregistrations(), 1) << "the first range stayed pinned";
  }
  EXPECT_EQ(device.host_unregistrations(), 2) << "the pin outlived its HostPin";
  detail::HostPin refused;
  device.fail_next("register_host");
  EXPECT_FALSE(refused.pin(*engine, a.data(), a.size(), 0));
  EXPECT_FALSE(refused.held());
  refused.release();
  EXPECT_EQ(device.host_unregistrations(), 2) << "released a pin that was refused";
}

}  // namespace
}  // namespace ckptw
