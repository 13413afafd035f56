// A minimal real c10d::Backend for multi-process tests: allgather of byte
// tensors through a c10d::Store, completed on a background thread. It stands
// in for Gloo, whose headers the torch wheel does not ship, to exercise
// ProcessGroupBarrier's deadline and vote over real processes.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace ckptw::testing {

c10::intrusive_ptr<c10d::Backend> make_store_backend(c10::intrusive_ptr<c10d::Store> store, int rank, int size);

}  // namespace ckptw::testing
