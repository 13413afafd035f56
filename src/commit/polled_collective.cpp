#include "commit/polled_collective.hpp"

#include <algorithm>
#include <thread>

namespace ckptw::detail {

std::vector<std::string> polled_all_gather(CollectiveTransport& transport, BarrierGuard& guard,
                                           const std::string& message, std::chrono::milliseconds timeout) {
  guard.check_usable();
  check_message_size(message, guard.name());
  const std::string where = guard.name() + " call #" + std::to_string(guard.next_sequence());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  try {
    transport.start(message);
  } catch (const std::exception& e) {
    guard.mark_broken("failed to start");
    transport.abort();
    throw Error(where + " could not start: " + e.what());
  }
  auto pause = std::chrono::microseconds(20);
  while (true) {
    std::string error;
    switch (transport.poll(&error)) {
      case CollectiveTransport::Progress::kDone:
        return transport.result();
      case CollectiveTransport::Progress::kFailed:
        guard.mark_broken("failed");
        transport.abort();
        throw Error(where + " failed: " + error);
      case CollectiveTransport::Progress::kPending:
        break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      guard.mark_broken("timed out");
      transport.abort();  // the communicator may wait forever on a missing rank
      throw TimeoutError(where + " timed out after " + std::to_string(timeout.count()) +
                         " ms: not every rank joined; communicator aborted");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

}  // namespace ckptw::detail
