// Helpers shared by the reference-quantization tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace fathom::quant::testing {

// n samples of N(0, 1), the same for a seed.
inline std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// sqrt(sum w (x - y)^2 / sum w x^2); w = 1 when null.
inline double relative_rmse(const std::vector<float>& x, const std::vector<float>& y, const float* w = nullptr) {
  double err = 0, sig = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double wi = w ? w[i] : 1.0;
    err += wi * (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    sig += wi * double(x[i]) * x[i];
  }
  return std::sqrt(err / sig);
}

}  // namespace fathom::quant::testing
