// A minimal real c10d::Backend for multi-process tests: allgather of byte
// tensors through a c10d::Store, completed on a background thread. It stands
// in for Gloo, whose headers the torch wheel does not ship, to exercise
// ProcessGroupBarrier's deadline and vote over real processes.
#pragma once

#include <array>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace ckptw::testing {

c10::intrusive_ptr<c10d::Backend> make_store_backend(c10::intrusive_ptr<c10d::Store> store, int rank, int size);

/// Two ranks' connections to one real TCPStore on an ephemeral loopback port,
/// for tests that run both ranks as threads: [0] hosts it, [1] is a client.
std::array<c10::intrusive_ptr<c10d::Store>, 2> loopback_store_pair();

}  // namespace ckptw::testing
