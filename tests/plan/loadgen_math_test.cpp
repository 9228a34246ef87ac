#include "plan/loadgen_math.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fathom::plan {
namespace {

// Expected values computed by hand with numpy's linear rule: h = (n-1) q/100.
TEST(Percentile, LinearInterpolationBetweenClosestRanks) {
  const std::vector<double> x = {4, 1, 3, 2};      // sorted: 1 2 3 4
  EXPECT_DOUBLE_EQ(percentile(x, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(x, 50), 2.5);        // h = 1.5
  EXPECT_DOUBLE_EQ(percentile(x, 90), 3.7);        // h = 2.7
  EXPECT_DOUBLE_EQ(percentile(x, 100), 4.0);
  const std::vector<double> y = {15, 20, 35, 40, 50};
  EXPECT_DOUBLE_EQ(percentile(y, 40), 29.0);       // h = 1.6: 20 + 0.6 x 15
  EXPECT_DOUBLE_EQ(percentile(y, 25), 20.0);       // h = 1 exactly
  EXPECT_NEAR(percentile({10, 20, 30, 40, 50}, 99), 49.6, 1e-12);  // h = 3.96
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7.0);
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

TEST(Summary, MeanStddevAndPercentiles) {
  const Summary s = summarize({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_EQ(s.count, 8u);
  EXPECT_DOUBLE_EQ(s.mean, 5.0);
  EXPECT_DOUBLE_EQ(s.stddev, 2.0);  // population standard deviation
  EXPECT_DOUBLE_EQ(s.min, 2.0);
  EXPECT_DOUBLE_EQ(s.max, 9.0);
  EXPECT_DOUBLE_EQ(s.p50, 4.5);     // h = 3.5 between 4 and 5
  EXPECT_NEAR(s.p90, 7.6, 1e-12);   // h = 6.3: 7 + 0.3 x 2
  EXPECT_NEAR(s.p99, 8.86, 1e-12);  // h = 6.93
}

TEST(Poisson, EmpiricalRateAndUnitCoefficientOfVariation) {
  const double rate = 50.0;
  const std::vector<double> t = poisson_arrivals(rate, 10000, 1234);
  ASSERT_EQ(t.size(), 10000u);
  const double empirical = static_cast<double>(t.size()) / t.back();
  EXPECT_NEAR(empirical / rate, 1.0, 0.03);
  std::vector<double> gaps;
  double prev = 0;
  for (double v : t) {
    ASSERT_GE(v, prev);
    gaps.push_back(v - prev);
    prev = v;
  }
  const Summary s = summarize(gaps);
  EXPECT_NEAR(s.stddev / s.mean, 1.0, 0.05);  // exponential gaps: CV = 1
  EXPECT_EQ(poisson_arrivals(rate, 100, 7), poisson_arrivals(rate, 100, 7));  // seeded
}

TEST(LengthDistribution, ParsesAndSamples) {
  std::mt19937_64 rng(42);
  auto fixed = LengthDistribution::parse("128");
  ASSERT_TRUE(fixed.has_value());
  EXPECT_EQ(fixed->sample(rng), 128);

  auto uni = LengthDistribution::parse("uniform:64:256");
  ASSERT_TRUE(uni.has_value());
  for (int i = 0; i < 1000; ++i) {
    const int64_t v = uni->sample(rng);
    ASSERT_GE(v, 64);
    ASSERT_LE(v, 256);
  }
  EXPECT_DOUBLE_EQ(uni->mean(), 160.0);

  auto normal = LengthDistribution::parse("normal:200:50");
  ASSERT_TRUE(normal.has_value());
  double sum = 0;
  for (int i = 0; i < 20000; ++i) sum += static_cast<double>(normal->sample(rng));
  EXPECT_NEAR(sum / 20000, 200.0, 2.0);

  auto logn = LengthDistribution::parse("lognormal:300:150");
  ASSERT_TRUE(logn.has_value());
  EXPECT_NEAR(logn->mean(), 300.0, 1e-9);  // parameters are moment-matched to the lengths
  sum = 0;
  for (int i = 0; i < 20000; ++i) sum += static_cast<double>(logn->sample(rng));
  EXPECT_NEAR(sum / 20000, 300.0, 6.0);

  for (const char* bad : {"", "abc", "uniform:10", "uniform:20:10", "normal:x:1", "gamma:1:2", "0", "lognormal:5:0"})
    EXPECT_FALSE(LengthDistribution::parse(bad).has_value()) << bad;
}

}  // namespace
}  // namespace fathom::plan
