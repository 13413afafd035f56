// The statistics `ckptw bench` reads its repeats with: medians, and how far
// apart two medians of repeats land by chance alone on this run's spread.
// Free of LibTorch and of the bench, so a unit test checks them on made-up
// repeats whose answer is known.
#pragma once

#include <vector>

namespace ckptw::cli {

/// The median of a non-empty list.
double median(std::vector<double> v);

/// The larger of the two medians over the smaller (>= 1).
double median_ratio(const std::vector<double>& a, const std::vector<double>& b);

/// How far apart (larger over smaller, >= 1) the medians of two samples of
/// a.size() and b.size() repeats of one configuration land 9 times in 10,
/// given this run's spread: the 90th percentile of the median ratio of
/// resamples, with replacement, from the repeats of both pooled, each
/// divided by its own median first. That division keeps a real difference
/// between a and b out of the bound that is to reveal it: pooling raw
/// repeats of two rows 1.5x apart gave a bound of 1.47x, so the gap read as
/// noise. With a == b (two runs of one row: the "rerun p90") it changes
/// nothing. A fixed seed, so the figure follows from the repeats alone.
double spread_p90(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace ckptw::cli
