// Statistics and workload generation for `fathom bench load`: percentiles and summaries of
// latency samples, seeded Poisson arrivals, and prompt/output length distributions. Pure
// functions: the same seed gives the same workload (for a given C++ standard library, whose
// normal/lognormal samplers are implementation-defined).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fathom::plan {

// The q-th percentile (0..100) by linear interpolation between closest ranks — numpy's
// default ("linear"): rank h = (n - 1) q / 100, result x[floor h] + (h - floor h)(x[ceil h] -
// x[floor h]) over the sorted samples. Empty input gives NaN.
double percentile(std::vector<double> samples, double q);
double percentile_sorted(const std::vector<double>& sorted, double q);

struct Summary {
  size_t count = 0;    // samples
  double mean = 0;     // arithmetic mean
  double stddev = 0;   // population standard deviation (numpy's default, ddof = 0)
  double min = 0;      // smallest sample
  double p50 = 0;      // median
  double p90 = 0;      // 90th percentile
  double p99 = 0;      // 99th percentile
  double max = 0;      // largest sample
};
Summary summarize(const std::vector<double>& samples);

// Open-loop arrivals of a Poisson process: exponential inter-arrival gaps with mean 1/rate.
// Returns arrival times in seconds from 0, non-decreasing.
std::vector<double> poisson_arrivals(double rate_per_s, size_t count, uint64_t seed);

// A distribution of token counts: "128" (fixed), "uniform:LO:HI" (inclusive), "normal:MEAN:SD",
// "lognormal:MEAN:SD" (mean and standard deviation of the lengths themselves, not of their log).
// Samples are rounded and clamped to >= 1.
class LengthDistribution {
 public:
  enum class Kind { kFixed, kUniform, kNormal, kLogNormal };

  static Expected<LengthDistribution> parse(std::string_view spec);
  int64_t sample(std::mt19937_64& rng) const;
  double mean() const;             // of the unclamped distribution
  const std::string& spec() const { return spec_; }
  Kind kind() const { return kind_; }

 private:
  Kind kind_ = Kind::kFixed;
  double a_ = 0;          // fixed value, uniform low, normal mean, lognormal mu (of log)
  double b_ = 0;          // uniform high, normal sd, lognormal sigma (of log)
  std::string spec_;      // as given
};

}  // namespace fathom::plan
