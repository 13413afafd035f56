#include "cli/bench_stats.hpp"

#include <algorithm>
#include <random>

namespace ckptw::cli {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double median_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  const double x = median(a), y = median(b);
  return std::max(x, y) / std::min(x, y);
}

double spread_p90(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> pool;
  pool.reserve(a.size() + b.size());
  for (const std::vector<double>* sample : {&a, &b}) {
    const double m = median(*sample);
    for (double v : *sample) pool.push_back(v / m);
  }
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::size_t> pick(0, pool.size() - 1);
  constexpr int kDraws = 2000;
  std::vector<double> ratios;
  ratios.reserve(kDraws);
  std::vector<double> x(a.size()), y(b.size());
  for (int d = 0; d < kDraws; ++d) {
    for (double& v : x) v = pool[pick(rng)];
    for (double& v : y) v = pool[pick(rng)];
    ratios.push_back(median_ratio(x, y));
  }
  std::sort(ratios.begin(), ratios.end());
  return ratios[kDraws * 9 / 10];
}

}  // namespace ckptw::cli
