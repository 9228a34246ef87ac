// How the model tests compare the engine's logits with the reference's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace fathom {

// Max |a - b| relative to the largest |b|.
inline double max_rel_diff(const float* a, const float* b, int64_t n) {
  double max_diff = 0.0, max_ref = 1e-6;
  for (int64_t i = 0; i < n; ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  return max_diff / max_ref;
}

inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  return max_rel_diff(a.data(), b.data(), static_cast<int64_t>(b.size()));
}

}  // namespace fathom
