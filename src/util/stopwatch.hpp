// Monotonic wall-clock timing for the per-phase figures in WriteResult, and
// the calling thread's CPU clock for their CPU-time counterparts.
#pragma once

#include <time.h>

#include <chrono>

namespace ckptw::detail {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  /// Seconds since construction or the last lap().
  double lap() {
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - start_).count();
    start_ = now;
    return secs;
  }
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// Stopwatch over the CPU time (user and system) of the thread that reads
/// it; laps must be taken on the thread that made it.
class ThreadCpuStopwatch {
 public:
  ThreadCpuStopwatch() : start_(now()) {}
  double lap() {
    const double t = now();
    const double secs = t - start_;
    start_ = t;
    return secs;
  }
  double elapsed() const { return now() - start_; }

 private:
  static double now() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
  }
  double start_;
};

}  // namespace ckptw::detail
