// The bench's statistics on made-up repeats whose answer is known.
#include "cli/bench_stats.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace ckptw::cli {
namespace {

std::vector<double> scaled(std::vector<double> v, double k) {
  for (double& x : v) x *= k;
  return v;
}

TEST(BenchStats, MedianOfOddAndEvenLists) {
  EXPECT_DOUBLE_EQ(median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_DOUBLE_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_DOUBLE_EQ(median({7.0}), 7.0);
  EXPECT_DOUBLE_EQ(median_ratio({1.0, 2.0, 3.0}, {4.0, 6.0, 5.0}), 2.5);
  EXPECT_DOUBLE_EQ(median_ratio({4.0, 6.0, 5.0}, {1.0, 2.0, 3.0}), 2.5);
}

// The failure this bound exists to reveal: one configuration under two names
// 1.5x apart, each row tight. Pooled raw, the resamples mix both rows and the
// bound came out 1.47x, so the gap read as noise.
TEST(BenchStats, AGapBetweenTwoTightRowsIsOutsideTheirSpread) {
  const std::vector<double> a = {1.00, 1.02, 0.98, 1.05, 1.01};
  const std::vector<double> b = scaled({1.00, 0.99, 1.03, 1.02, 0.97}, 1.5);
  const double p90 = spread_p90(a, b);
  EXPECT_GE(p90, 1.0);
  EXPECT_LT(p90, 1.10);
  EXPECT_GT(median_ratio(a, b), p90);
}

// Dividing each row by its own median first: the gap between the rows does
// not enter the bound at all, and the bound is the rerun p90 of either.
TEST(BenchStats, TheBoundDependsOnTheSpreadNotOnTheGapOrTheScale) {
  const std::vector<double> a = {1.00, 1.10, 0.93, 1.21, 0.97};
  EXPECT_DOUBLE_EQ(spread_p90(a, scaled(a, 1.5)), spread_p90(a, a));
  EXPECT_DOUBLE_EQ(spread_p90(scaled(a, 3.0), scaled(a, 3.0)), spread_p90(a, a));
  EXPECT_DOUBLE_EQ(spread_p90(a, a), spread_p90(a, a));  // fixed seed
}

TEST(BenchStats, AWiderSpreadGivesAWiderBound) {
  const std::vector<double> tight = {1.00, 1.01, 0.99, 1.02, 0.98};
  const std::vector<double> wide = {1.00, 1.10, 0.90, 1.20, 0.80};
  EXPECT_GT(spread_p90(wide, wide), spread_p90(tight, tight));
  EXPECT_LT(spread_p90(tight, tight), 1.04);
}

// Two rows drawn from one spread, only their order differs: within.
TEST(BenchStats, TwoRowsOfOneConfigurationAreWithinTheirSpread) {
  const std::vector<double> a = {1.00, 1.12, 0.91, 1.05, 0.97};
  const std::vector<double> b = {0.97, 1.05, 1.00, 0.91, 1.12};
  EXPECT_DOUBLE_EQ(median_ratio(a, b), 1.0);
  EXPECT_GT(spread_p90(a, b), 1.0);
}

}  // namespace
}  // namespace ckptw::cli
