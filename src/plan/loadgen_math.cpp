#include "plan/loadgen_math.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace fathom::plan {

double percentile_sorted(const std::vector<double>& x, double q) {
  if (x.empty()) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 100.0);
  const double h = static_cast<double>(x.size() - 1) * q / 100.0;
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, x.size() - 1);
  return x[lo] + (h - static_cast<double>(lo)) * (x[hi] - x[lo]);
}

double percentile(std::vector<double> samples, double q) {
  std::sort(samples.begin(), samples.end());
  return percentile_sorted(samples, q);
}

Summary summarize(const std::vector<double>& samples) {
  Summary s;
  s.count = samples.size();
  if (samples.empty()) return s;
  std::vector<double> x = samples;
  std::sort(x.begin(), x.end());
  double sum = 0;
  for (double v : x) sum += v;
  s.mean = sum / static_cast<double>(x.size());
  double sq = 0;
  for (double v : x) sq += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(sq / static_cast<double>(x.size()));
  s.min = x.front();
  s.max = x.back();
  s.p50 = percentile_sorted(x, 50);
  s.p90 = percentile_sorted(x, 90);
  s.p99 = percentile_sorted(x, 99);
  return s;
}

std::vector<double> poisson_arrivals(double rate_per_s, size_t count, uint64_t seed) {
  std::vector<double> out;
  if (rate_per_s <= 0) return out;
  out.reserve(count);
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate_per_s);
  double t = 0;
  for (size_t i = 0; i < count; ++i) {
    t += gap(rng);
    out.push_back(t);
  }
  return out;
}

namespace {

Expected<double> parse_number(std::string_view s, std::string_view spec) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    return error(ErrorCode::kInvalidArgument, "length distribution '" + std::string(spec) + "': '" + std::string(s) +
                                                  "' is not a number");
  return v;
}

}  // namespace

Expected<LengthDistribution> LengthDistribution::parse(std::string_view spec) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  LengthDistribution d;
  d.spec_ = spec;
  const std::string usage = " (expected N, uniform:LO:HI, normal:MEAN:SD or lognormal:MEAN:SD)";
  if (parts.size() == 1) {
    FATHOM_ASSIGN_OR_RETURN(d.a_, parse_number(parts[0], spec));
    if (d.a_ < 1) return error(ErrorCode::kInvalidArgument, "length '" + std::string(spec) + "' must be >= 1");
    d.kind_ = Kind::kFixed;
    return d;
  }
  if (parts.size() != 3)
    return error(ErrorCode::kInvalidArgument, "length distribution '" + std::string(spec) + "'" + usage);
  FATHOM_ASSIGN_OR_RETURN(const double a, parse_number(parts[1], spec));
  FATHOM_ASSIGN_OR_RETURN(const double b, parse_number(parts[2], spec));
  if (parts[0] == "uniform") {
    if (a < 1 || b < a)
      return error(ErrorCode::kInvalidArgument, "uniform:LO:HI needs 1 <= LO <= HI, got '" + std::string(spec) + "'");
    d.kind_ = Kind::kUniform;
    d.a_ = a;
    d.b_ = b;
  } else if (parts[0] == "normal") {
    if (a <= 0 || b < 0)
      return error(ErrorCode::kInvalidArgument, "normal:MEAN:SD needs MEAN > 0, SD >= 0, got '" + std::string(spec) + "'");
    d.kind_ = Kind::kNormal;
    d.a_ = a;
    d.b_ = b;
  } else if (parts[0] == "lognormal") {
    if (a <= 0 || b <= 0)
      return error(ErrorCode::kInvalidArgument, "lognormal:MEAN:SD needs MEAN > 0, SD > 0, got '" + std::string(spec) + "'");
    // Moment matching, so users give the mean/sd of lengths they know from their traffic:
    // sigma^2 = ln(1 + sd^2/mean^2), mu = ln(mean) - sigma^2/2.
    const double sigma2 = std::log(1.0 + (b * b) / (a * a));
    d.kind_ = Kind::kLogNormal;
    d.a_ = std::log(a) - sigma2 / 2.0;
    d.b_ = std::sqrt(sigma2);
  } else {
    return error(ErrorCode::kInvalidArgument,
                 "unknown length distribution '" + std::string(parts[0]) + "' in '" + std::string(spec) + "'" + usage);
  }
  return d;
}

int64_t LengthDistribution::sample(std::mt19937_64& rng) const {
  double v = a_;
  switch (kind_) {
    case Kind::kFixed: break;
    case Kind::kUniform: {
      std::uniform_int_distribution<int64_t> u(static_cast<int64_t>(std::llround(a_)), static_cast<int64_t>(std::llround(b_)));
      return std::max<int64_t>(1, u(rng));
    }
    case Kind::kNormal: v = std::normal_distribution<double>(a_, b_ > 0 ? b_ : 1e-12)(rng); break;
    case Kind::kLogNormal: v = std::lognormal_distribution<double>(a_, b_)(rng); break;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::llround(v)));
}

double LengthDistribution::mean() const {
  switch (kind_) {
    case Kind::kFixed: return a_;
    case Kind::kUniform: return (a_ + b_) / 2.0;
    case Kind::kNormal: return a_;
    case Kind::kLogNormal: return std::exp(a_ + b_ * b_ / 2.0);
  }
  return a_;
}

}  // namespace fathom::plan
