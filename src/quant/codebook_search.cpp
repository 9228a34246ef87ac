#include "quant/codebook_search.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "quant/iq1_grids.h"
#include "quant/iq3_grids.h"

namespace fathom::quant::detail {

Codebook::Codebook(const uint64_t* entries, int n_entries, int dim, const float* levels, int n_levels,
                   bool signed_values, float margin, int max_neighbours)
    : dim_(dim), n_entries_(n_entries), levels_(levels, levels + n_levels) {
  values_.resize(static_cast<size_t>(n_entries) * dim);
  std::vector<int> entry_of_point;  // [n_lattice] entry index at each lattice point, -1 if none
  int n_lattice = 1;
  for (int j = 0; j < dim; ++j) n_lattice *= n_levels;
  entry_of_point.assign(static_cast<size_t>(n_lattice), -1);
  for (int e = 0; e < n_entries; ++e) {
    int code = 0;
    for (int j = dim - 1; j >= 0; --j) {
      const auto byte = static_cast<uint8_t>(entries[e] >> (8 * j));
      const float v = signed_values ? static_cast<float>(static_cast<int8_t>(byte)) : static_cast<float>(byte);
      values_[static_cast<size_t>(e) * dim + j] = v;
      code = code * n_levels + static_cast<int>(std::find(levels, levels + n_levels, v) - levels);
    }
    entry_of_point[static_cast<size_t>(code)] = e;
  }
  const float spacing = levels[1] - levels[0];
  neighbour_begin_.reserve(static_cast<size_t>(n_lattice) + 1);
  std::vector<std::pair<float, int>> by_distance(static_cast<size_t>(n_entries));
  std::vector<float> point(static_cast<size_t>(dim));
  for (int code = 0; code < n_lattice; ++code) {
    neighbour_begin_.push_back(static_cast<int32_t>(neighbours_.size()));
    if (entry_of_point[static_cast<size_t>(code)] >= 0) {
      neighbours_.push_back(static_cast<uint16_t>(entry_of_point[static_cast<size_t>(code)]));
      continue;
    }
    for (int j = 0, c = code; j < dim; ++j, c /= n_levels) point[static_cast<size_t>(j)] = levels[c % n_levels];
    for (int e = 0; e < n_entries; ++e) {
      float d2 = 0;
      for (int j = 0; j < dim; ++j) {
        const float diff = point[static_cast<size_t>(j)] - values_[static_cast<size_t>(e) * dim + j];
        d2 += diff * diff;
      }
      by_distance[static_cast<size_t>(e)] = {d2, e};
    }
    std::sort(by_distance.begin(), by_distance.end());
    const float limit = by_distance[0].first + margin * spacing * spacing;
    const size_t n_kept = std::min(by_distance.size(), static_cast<size_t>(max_neighbours));
    for (size_t k = 0; k < n_kept && by_distance[k].first <= limit; ++k)
      neighbours_.push_back(static_cast<uint16_t>(by_distance[k].second));
  }
  neighbour_begin_.push_back(static_cast<int32_t>(neighbours_.size()));
}

int Codebook::lattice_point(const float* t) const {
  const int n_levels = static_cast<int>(levels_.size());
  const float* level = levels_.data();
  int code = 0;
  for (int j = dim_ - 1; j >= 0; --j) {
    int l = 0;  // nearest level; a NaN target stays on the lowest
    while (l + 1 < n_levels && t[j] > 0.5f * (level[l] + level[l + 1])) ++l;
    code = code * n_levels + l;
  }
  return code;
}

float Codebook::group_error(int index, const float* t, const float* w) const {
  const float* e = entry(index);
  float err = 0;
  for (int j = 0; j < dim_; ++j) err += w[j] * (t[j] - e[j]) * (t[j] - e[j]);
  return err;
}

int Codebook::search(const float* t, const float* w, float* error) const {
  const int code = lattice_point(t);
  const auto begin = static_cast<size_t>(neighbour_begin_[static_cast<size_t>(code)]);
  const auto end = static_cast<size_t>(neighbour_begin_[static_cast<size_t>(code) + 1]);
  int best = neighbours_[begin];
  float best_err = group_error(best, t, w);
  for (size_t k = begin + 1; k < end; ++k) {
    const float err = group_error(neighbours_[k], t, w);
    if (err < best_err) {
      best_err = err;
      best = neighbours_[k];
    }
  }
  *error = best_err;
  return best;
}

int Codebook::search_all(const float* t, const float* w, float* error) const {
  int best = 0;
  float best_err = group_error(0, t, w);
  for (int e = 1; e < n_entries_; ++e) {
    const float err = group_error(e, t, w);
    if (err < best_err) {
      best_err = err;
      best = e;
    }
  }
  *error = best_err;
  return best;
}

int Codebook::n_candidates(const float* t) const {
  const auto code = static_cast<size_t>(lattice_point(t));
  return neighbour_begin_[code + 1] - neighbour_begin_[code];
}

namespace {

template <size_t N>
std::vector<uint64_t> widen(const std::array<uint32_t, N>& grid) {
  return std::vector<uint64_t>(grid.begin(), grid.end());
}

}  // namespace

void codebook_weights(const float* x, const float* importance, int n, float* w) {
  float sum_x2 = 0;
  for (int j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = 2 * sum_x2 / static_cast<float>(n);
  for (int j = 0; j < n; ++j) w[j] = (importance ? importance[j] : 1.f) * std::sqrt(sigma2 + x[j] * x[j]);
}

void finite_values(const float* x, int n, float* out) {
  for (int j = 0; j < n; ++j) out[j] = std::isfinite(x[j]) ? x[j] : 0.f;
}

// The neighbour bounds set the fast search's cost and how often it misses the exhaustive answer
// (measured in tests/kernels/quant_iq3_iq1_test.cpp, figures in docs/decisions.md). The 3-bit
// grids need wider lists: with 4 values per group a strongly weighted value pulls the others far
// from their nearest levels.
constexpr float kIq3Margin = 8.0f, kIq1Margin = 2.0f;
constexpr int kIq3MaxNeighbours = 64, kIq1MaxNeighbours = 48;

const Codebook& iq3_xxs_codebook() {
  static const Codebook book = [] {
    constexpr float kLevels[8] = {4, 12, 20, 28, 36, 44, 52, 62};
    const std::vector<uint64_t> entries = widen(kIq3XxsGrid);
    return Codebook(entries.data(), static_cast<int>(entries.size()), 4, kLevels, 8, false, kIq3Margin,
                    kIq3MaxNeighbours);
  }();
  return book;
}

const Codebook& iq3_s_codebook() {
  static const Codebook book = [] {
    constexpr float kLevels[8] = {1, 3, 5, 7, 9, 11, 13, 15};
    const std::vector<uint64_t> entries = widen(kIq3SGrid);
    return Codebook(entries.data(), static_cast<int>(entries.size()), 4, kLevels, 8, false, kIq3Margin,
                    kIq3MaxNeighbours);
  }();
  return book;
}

const Codebook& iq1_codebook() {
  static const Codebook book = [] {
    constexpr float kLevels[3] = {-1, 0, 1};
    return Codebook(kIq1SGrid.data(), static_cast<int>(kIq1SGrid.size()), 8, kLevels, 3, true, kIq1Margin,
                    kIq1MaxNeighbours);
  }();
  return book;
}

}  // namespace fathom::quant::detail
