#include "support/store_backend.hpp"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <cstring>
#include <thread>

#include <ATen/ATen.h>

namespace ckptw::testing {
namespace {

struct Shared {
  std::atomic<bool> done{false};
  std::exception_ptr error;
};

class StoreWork final : public c10d::Work {
 public:
  explicit StoreWork(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  bool isCompleted() override { return shared_->done.load(); }
  bool wait(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!shared_->done.load()) {
      if (timeout != kNoTimeout && std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (shared_->error) std::rethrow_exception(shared_->error);
    return true;
  }
  void abort() override {}

 private:
  std::shared_ptr<Shared> shared_;
};

class StoreBackend final : public c10d::Backend {
 public:
  StoreBackend(c10::intrusive_ptr<c10d::Store> store, int rank, int size)
      : c10d::Backend(rank, size), store_(std::move(store)) {}

  const std::string getBackendName() const override { return "store_test"; }

  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& = c10d::AllgatherOptions()) override {
    auto shared = std::make_shared<Shared>();
    const std::uint64_t sequence = sequence_++;
    at::Tensor input = inputs.at(0).contiguous().cpu();
    std::vector<at::Tensor> slots = outputs.at(0);
    std::thread([store = store_, shared, sequence, input, slots, rank = getRank(), size = getSize()] {
      try {
        auto key = [&](int r) { return "store_test/" + std::to_string(sequence) + "/" + std::to_string(r); };
        const auto* bytes = static_cast<const uint8_t*>(input.data_ptr());
        store->set(key(rank), std::vector<uint8_t>(bytes, bytes + input.nbytes()));
        std::vector<std::string> keys;
        for (int r = 0; r < size; ++r) keys.push_back(key(r));
        store->wait(keys, std::chrono::hours(1));
        for (int r = 0; r < size; ++r) {
          std::vector<uint8_t> value = store->get(keys[r]);
          std::memcpy(slots[r].data_ptr(), value.data(), std::min<std::size_t>(value.size(), slots[r].nbytes()));
        }
        // Rank 0 hosts the store: it completes only after every rank has read,
        // so that it cannot exit while another rank still needs the store.
        const std::string read = "store_test/" + std::to_string(sequence) + "/read";
        if (store->add(read, 1) == size) store->set(read + "/all", std::vector<uint8_t>{'1'});
        if (rank == 0) store->wait({read + "/all"}, std::chrono::hours(1));
      } catch (...) {
        shared->error = std::current_exception();
      }
      shared->done.store(true);
    }).detach();
    return c10::make_intrusive<StoreWork>(shared);
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  std::uint64_t sequence_ = 0;
};

}  // namespace

c10::intrusive_ptr<c10d::Backend> make_store_backend(c10::intrusive_ptr<c10d::Store> store, int rank, int size) {
  return c10::make_intrusive<StoreBackend>(std::move(store), rank, size);
}

std::array<c10::intrusive_ptr<c10d::Store>, 2> loopback_store_pair() {
  c10d::TCPStoreOptions server;
  server.port = 0;
  server.isServer = true;
  server.numWorkers = 2;
  server.waitWorkers = false;
  server.timeout = std::chrono::seconds(30);
  auto host = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server);
  c10d::TCPStoreOptions client = server;
  client.isServer = false;
  client.port = host->getPort();
  return {host, c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client)};
}

}  // namespace ckptw::testing
