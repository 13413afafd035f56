#include <algorithm>
#include <cstdlib>
#include <thread>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "ckptw/barriers.hpp"
#include "commit/barrier_guard.hpp"
#include "commit/store_connect.hpp"

namespace ckptw {

std::vector<std::string> Barrier::all_gather(const std::string&, std::chrono::milliseconds) {
  throw UsageError("this barrier does not implement all_gather()");
}

namespace detail {

void check_message_size(const std::string& message, const std::string& barrier_name) {
  if (message.size() > Barrier::kMaxMessageBytes) {
    throw UsageError(barrier_name + ": all_gather message of " + std::to_string(message.size()) +
                     " bytes exceeds " + std::to_string(Barrier::kMaxMessageBytes));
  }
}

std::string describe_ranks(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks [";
  for (std::size_t i = 0; i < ranks.size(); ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
  return ranks.size() == 1 ? text : text + "]";
}

void require_own_collectives(const Barrier* barrier, const std::string& path) {
  if (barrier == nullptr || !barrier->shares_callers_collectives()) return;
  throw UsageError(
      "write_async() cannot vote over this barrier: it runs collectives on the trainer's own process group, "
      "and from ckptw's background thread they would meet the training thread's collectives out of order "
      "(hanging or exchanging the wrong bytes); use write(), or a barrier of its own: ProcessGroupBarrier "
      "over a dedicated group (Python: ProcessGroupBarrier(own_group=True)), NcclBarrier or TcpStoreBarrier",
      path);
}

}  // namespace detail

class TcpStoreBarrier::Impl {
 public:
  Impl(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Store> store, Options options)
      : rank_(rank_info.global_rank),
        world_(rank_info.global_world_size),
        options_(std::move(options)),
        store_(std::move(store)),
        guard_("TcpStoreBarrier '" + options_.prefix + "'") {}

  std::string key(std::uint64_t sequence, int rank) const {
    return options_.prefix + "/" + std::to_string(sequence) + "/" + std::to_string(rank);
  }

  std::vector<std::string> all_gather(const std::string& message, std::chrono::milliseconds timeout) {
    guard_.check_usable();
    detail::check_message_size(message, guard_.name());
    const std::uint64_t sequence = guard_.next_sequence();
    std::vector<std::string> keys;
    for (int r = 0; r < world_; ++r) keys.push_back(key(sequence, r));
    try {
      store_->set(keys[rank_], std::vector<uint8_t>(message.begin(), message.end()));
      store_->wait(keys, timeout);
    } catch (const c10::Error& e) {
      fail(sequence, keys, timeout, e.what_without_backtrace());
    }
    std::vector<std::string> messages;
    try {
      for (const auto& values : store_->multiGet(keys)) messages.emplace_back(values.begin(), values.end());
      if (sequence > 0) {
        // Every rank reached this call, so every rank has read the previous one's keys.
        store_->deleteKey(key(sequence - 1, rank_));
        if (rank_ == 0) {
          const std::string old_read = options_.prefix + "/" + std::to_string(sequence - 1) + "/read";
          store_->deleteKey(old_read);
          store_->deleteKey(old_read + "/all");
        }
      }
      // Acknowledging the read is this rank's last use of the store in this
      // call: once every rank has acknowledged, rank 0 may return and exit.
      const std::string read = options_.prefix + "/" + std::to_string(sequence) + "/read";
      if (store_->add(read, 1) == world_) store_->set(read + "/all", std::vector<uint8_t>{'1'});
      if (rank_ == 0) {
        // Rank 0 hosts the store: it must not return (and perhaps exit) while
        // another rank still reads. Data is complete, so a rank that dies
        // here only costs this wait, not an error.
        try {
          store_->wait({read + "/all"}, std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(30)));
        } catch (const c10::Error&) {
        }
      }
    } catch (const c10::Error& e) {
      fail(sequence, keys, timeout, e.what_without_backtrace());
    }
    return messages;
  }

  [[noreturn]] void fail(std::uint64_t sequence, const std::vector<std::string>& keys,
                         std::chrono::milliseconds timeout, const std::string& cause) {
    std::vector<int> missing;
    bool store_alive = true;
    try {
      for (int r = 0; r < world_; ++r) {
        if (!store_->check({keys[r]})) missing.push_back(r);
      }
    } catch (const c10::Error&) {
      store_alive = false;
    }
    const std::string where = guard_.name() + " call #" + std::to_string(sequence);
    if (!store_alive) {
      guard_.mark_broken("lost the store");
      throw Error(where + " lost its TCPStore (rank 0 hosts it and may have died): " + cause);
    }
    guard_.mark_broken("timed out");
    if (!missing.empty()) {
      throw TimeoutError(where + " timed out after " + std::to_string(timeout.count()) + " ms waiting for " +
                         detail::describe_ranks(missing));
    }
    throw Error(where + " failed: " + cause);
  }

  const int rank_;
  const int world_;
  const Options options_;
  c10::intrusive_ptr<c10d::Store> store_;
  detail::BarrierGuard guard_;
};

namespace detail {

TcpStoreBarrier::Options resolve_store_options(const RankInfo& info, TcpStoreBarrier::Options options) {
  if (options.master_address.empty()) {
    options.master_address = info.master_address.empty() ? "127.0.0.1" : info.master_address;
  }
  if (options.master_port == 0) options.master_port = info.master_port ? info.master_port : 29500;
  return options;
}

c10::intrusive_ptr<c10d::Store> connect_tcp_store(const RankInfo& info, const TcpStoreBarrier::Options& options) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(options.master_port);
  // Under torchrun the elastic agent already hosts a store at MASTER_PORT
  // (TORCHELASTIC_USE_AGENT_STORE=True): every rank joins it as a client.
  const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  const bool use_agent_store = agent_store != nullptr && std::string(agent_store) == "True" &&
                               options.master_port == info.master_port;
  store_options.isServer = info.global_rank == 0 && !use_agent_store;
  store_options.numWorkers = static_cast<std::size_t>(info.global_world_size);
  store_options.waitWorkers = false;  // the first barrier call waits, with its own deadline
  store_options.timeout = std::chrono::seconds(options.init_timeout_secs);
  try {
    return c10::make_intrusive<c10d::TCPStore>(options.master_address, store_options);
  } catch (const c10::Error& e) {
    throw Error(std::string(info.global_rank == 0 ? "cannot host" : "cannot reach") + " the TCPStore at " +
                options.master_address + ":" + std::to_string(options.master_port) + ": " +
                e.what_without_backtrace());
  }
}

}  // namespace detail

TcpStoreBarrier::TcpStoreBarrier(const RankInfo& rank_info, Options options) {
  options = detail::resolve_store_options(rank_info, std::move(options));
  auto store = detail::connect_tcp_store(rank_info, options);
  impl_ = std::make_unique<Impl>(rank_info, std::move(store), std::move(options));
}

TcpStoreBarrier::TcpStoreBarrier(const RankInfo& rank_info, c10::intrusive_ptr<c10d::Store> store, Options options)
    : impl_(std::make_unique<Impl>(rank_info, std::move(store),
                                   detail::resolve_store_options(rank_info, std::move(options)))) {}

TcpStoreBarrier::~TcpStoreBarrier() = default;

void TcpStoreBarrier::execute_barrier() { (void)all_gather("", std::chrono::seconds(impl_->options_.timeout_secs)); }

std::vector<std::string> TcpStoreBarrier::all_gather(const std::string& message, std::chrono::milliseconds timeout) {
  return impl_->all_gather(message, timeout);
}

c10::intrusive_ptr<c10d::Store> TcpStoreBarrier::store() const { return impl_->store_; }

}  // namespace ckptw
