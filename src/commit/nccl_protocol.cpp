#include "commit/nccl_protocol.hpp"

#include <algorithm>
#include <cstring>
#include <thread>

#include "ckptw/error.hpp"

namespace ckptw::detail {
namespace {

std::vector<std::uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }
std::string text_of(const std::vector<std::uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

}  // namespace

std::vector<std::uint8_t> exchange_unique_id(c10d::Store& store, const std::string& prefix, int rank, int world,
                                             std::chrono::milliseconds timeout,
                                             const std::function<std::vector<std::uint8_t>()>& make_id) {
  const std::string base = prefix + "/nccl_unique_id/";
  const std::string latest = base + "latest";
  auto id_key = [&](const std::string& generation) { return base + generation; };
  if (rank == 0) {
    std::vector<std::uint8_t> id = make_id();
    if (world == 1) return id;  // nobody to tell
    if (store.check({latest})) {
      const std::string previous = text_of(store.get(latest));
      store.deleteKey(id_key(previous));  // unread by some rank: its set-up timed out
      store.deleteKey(id_key(previous) + "/read");
    }
    const std::string generation = std::to_string(store.add(prefix + "/nccl_generation", 1));
    store.set(id_key(generation), id);
    store.set(latest, bytes_of(generation));
    return id;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      throw TimeoutError("NcclBarrier: rank 0 published no NCCL unique id under '" + base + "' within " +
                         std::to_string(timeout.count()) + " ms");
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
  };
  try {
    // A little past the deadline, so that a store timeout is one of ours.
    store.wait({latest}, left() + std::chrono::milliseconds(5));
  } catch (const c10::Error&) {
    (void)left();  // throws the TimeoutError when the deadline passed
    throw;
  }
  while (true) {
    const std::string generation = text_of(store.get(latest));
    // Deleted only after every rank of its generation read it, so present
    // here means this rank's generation (or one whose set-up timed out).
    if (store.check({id_key(generation)})) {
      std::vector<std::uint8_t> id = store.get(id_key(generation));
      if (store.add(id_key(generation) + "/read", 1) == world - 1) {
        store.deleteKey(id_key(generation));
        store.deleteKey(id_key(generation) + "/read");
      }
      return id;
    }
    (void)left();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the previous generation's: wait for rank 0
  }
}

int nccl_device(int requested, int local_rank, int visible_devices) {
  if (visible_devices <= 0) throw Error("NcclBarrier: no CUDA device is visible to this process");
  if (requested >= 0) {
    if (requested >= visible_devices) {
      throw UsageError("NcclBarrier: device " + std::to_string(requested) + " requested, but this process sees " +
                       std::to_string(visible_devices) + " CUDA device(s)");
    }
    return requested;
  }
  return std::max(local_rank, 0) % visible_devices;
}

NcclGatherTransport::NcclGatherTransport(NcclCalls& calls, int world, std::size_t slot_bytes)
    : calls_(calls), world_(world), slot_bytes_(slot_bytes) {}

void NcclGatherTransport::start(const std::string& message) {
  if (phase_ != Phase::kIdle) {
    // The previous gather may still read the send buffer: polled_all_gather
    // never starts another before it finished, and breaks the barrier when
    // one did not.
    throw Error("NcclBarrier: a gather started while the previous one is unfinished");
  }
  if (message.size() >= slot_bytes_) throw UsageError("NcclBarrier: message too long for its slot");
  unsigned char* send = calls_.host_send();
  std::memset(send, 0, slot_bytes_);
  send[0] = static_cast<unsigned char>(message.size());
  std::memcpy(send + 1, message.data(), message.size());
  NcclCalls::Status s = calls_.upload_send();
  if (s.state == NcclCalls::State::kFailed) throw Error("NcclBarrier: " + s.error);
  s = calls_.all_gather();
  if (s.state == NcclCalls::State::kFailed) throw Error("ncclAllGather failed: " + s.error);
  phase_ = Phase::kEnqueueing;
  if (s.state == NcclCalls::State::kSuccess) {
    s = calls_.download_and_record();
    if (s.state == NcclCalls::State::kFailed) throw Error("NcclBarrier: " + s.error);
    phase_ = Phase::kQueued;
  }
}

CollectiveTransport::Progress NcclGatherTransport::poll(std::string* error) {
  const NcclCalls::Status comm = calls_.comm_state();
  if (comm.state == NcclCalls::State::kFailed) {
    *error = "NCCL async error: " + comm.error;
    return Progress::kFailed;
  }
  if (phase_ == Phase::kEnqueueing) {
    // NCCL's own thread is still enqueueing the collective: its kernel is
    // not on the stream yet, so an event recorded now could complete first.
    if (comm.state == NcclCalls::State::kInProgress) return Progress::kPending;
    const NcclCalls::Status s = calls_.download_and_record();
    if (s.state == NcclCalls::State::kFailed) {
      *error = s.error;
      return Progress::kFailed;
    }
    phase_ = Phase::kQueued;
  }
  if (phase_ != Phase::kQueued) {
    *error = "no gather was started";
    return Progress::kFailed;
  }
  const NcclCalls::Status done = calls_.query_done();
  switch (done.state) {
    case NcclCalls::State::kSuccess:
      phase_ = Phase::kIdle;
      return Progress::kDone;
    case NcclCalls::State::kInProgress:
      return Progress::kPending;
    case NcclCalls::State::kFailed:
      break;
  }
  *error = done.error;
  return Progress::kFailed;
}

std::vector<std::string> NcclGatherTransport::result() {
  std::vector<std::string> messages;
  const unsigned char* recv = calls_.host_recv();
  for (int r = 0; r < world_; ++r) {
    const unsigned char* slot = recv + slot_bytes_ * r;
    messages.emplace_back(reinterpret_cast<const char*>(slot + 1), std::min<std::size_t>(slot[0], slot_bytes_ - 1));
  }
  return messages;
}

void NcclGatherTransport::abort() noexcept { calls_.abort(); }

}  // namespace ckptw::detail
