#include "quant/iq2_search.h"

#include <algorithm>
#include <array>
#include <limits>
#include <span>
#include <vector>

#include "core/status.h"
#include "quant/iq2_grids.h"

namespace fathom::quant::detail {

namespace {

constexpr int kLatticePoints = 6561;  // 3^8: one of the 3 levels for each of 8 values

// A lattice point's list holds the entries at the least squared distance from it and those up
// to two level steps (25 -> 43, the larger step) further: 16, 26, 49 entries on average for
// IQ2_XXS, IQ2_XS, IQ2_S. The best entry under skewed weights is sometimes further out (the
// search test measures how often); one step would give 4, 5, 7 entries, 2-3x faster, but miss
// the best entry twice as often.
constexpr float kNeighbourMargin = 2 * float(43 - 25) * (43 - 25);

// A codebook as the searches use it: magnitudes as floats and each lattice point's neighbours.
struct Iq2Table {
  std::vector<std::array<float, 8>> entries;  // [grid size] magnitudes of each entry
  std::vector<uint32_t> first;                // [kLatticePoints + 1] start of each point's list
  std::vector<uint16_t> neighbours;           // entry indices, point after point, ascending
};

// Index in kIq2Levels of magnitude m (a grid byte).
int level_of(uint8_t m) { return m == kIq2Levels[0] ? 0 : m == kIq2Levels[1] ? 1 : 2; }

Iq2Table build(std::span<const uint64_t> grid) {
  Iq2Table t;
  t.entries.resize(grid.size());
  std::vector<std::array<int, 8>> levels(grid.size());
  for (size_t e = 0; e < grid.size(); ++e)
    for (int j = 0; j < 8; ++j) {
      const auto m = static_cast<uint8_t>(grid[e] >> (8 * j));
      t.entries[e][j] = m;
      levels[e][j] = level_of(m);
    }
  t.first.reserve(kLatticePoints + 1);
  std::vector<float> distance(grid.size());
  for (int point = 0; point < kLatticePoints; ++point) {
    float p[8];
    for (int j = 0, rest = point; j < 8; ++j, rest /= 3) p[j] = kIq2Levels[rest % 3];
    float nearest = std::numeric_limits<float>::max();
    for (size_t e = 0; e < grid.size(); ++e) {
      float d = 0;
      for (int j = 0; j < 8; ++j) d += (p[j] - t.entries[e][j]) * (p[j] - t.entries[e][j]);
      distance[e] = d;
      nearest = std::min(nearest, d);
    }
    t.first.push_back(static_cast<uint32_t>(t.neighbours.size()));
    for (size_t e = 0; e < grid.size(); ++e)
      if (distance[e] <= nearest + kNeighbourMargin) t.neighbours.push_back(static_cast<uint16_t>(e));
  }
  t.first.push_back(static_cast<uint32_t>(t.neighbours.size()));
  return t;
}

// Built on first use; C++ makes the initialisation of each function-local static thread-safe.
const Iq2Table& table(DType t) {
  switch (t) {
    case DType::IQ2_XXS: {
      static const Iq2Table xxs = build(kIq2xxsGrid);
      return xxs;
    }
    case DType::IQ2_XS: {
      static const Iq2Table xs = build(kIq2xsGrid);
      return xs;
    }
    case DType::IQ2_S: {
      static const Iq2Table s = build(kIq2sGrid);
      return s;
    }
    default: FATHOM_CHECK_MSG(false, "no IQ2 grid for this type");
  }
  __builtin_unreachable();
}

Iq2Choice evaluate(const Iq2Table& table, const Iq2Group& g, int index) {
  const std::array<float, 8>& q = table.entries[static_cast<size_t>(index)];
  Iq2Choice c;
  c.index = index;
  float least = std::numeric_limits<float>::max();
  for (int j = 0; j < 8; ++j) {
    const float wxg = g.weight[j] * g.magnitude[j] * q[j];
    c.sum_wxg += wxg;
    c.sum_wg2 += g.weight[j] * q[j] * q[j];
    if (g.flip_one && (c.flipped < 0 || wxg < least)) {
      least = wxg;
      c.flipped = j;
    }
  }
  if (g.flip_one) c.sum_wxg -= 2 * least;
  return c;
}

// The least-cost entry among `candidates` (ascending, so ties keep the lower index; the first
// when no cost compares, i.e. NaN weights).
template <typename Indices>
Iq2Choice best_of(const Iq2Table& table, const Iq2Group& g, float scale, const Indices& candidates) {
  Iq2Choice best;
  float best_cost = 0;
  bool first = true;
  for (const int e : candidates) {
    const Iq2Choice c = evaluate(table, g, e);
    const float cost = c.cost(scale);
    if (first || cost < best_cost) {
      first = false;
      best_cost = cost;
      best = c;
    }
  }
  return best;
}

// Lattice level of a scaled magnitude: the nearest of 8, 25, 43 (NaN goes to the lowest).
int nearest_level(float v) {
  constexpr float kLow = (kIq2Levels[0] + kIq2Levels[1]) / 2.f, kHigh = (kIq2Levels[1] + kIq2Levels[2]) / 2.f;
  return v >= kHigh ? 2 : v >= kLow ? 1 : 0;
}

// The indices 0 .. n-1 as a range, for the exhaustive search.
struct IndexRange {
  int n;
  struct It {
    int i;
    int operator*() const { return i; }
    It& operator++() { return ++i, *this; }
    bool operator!=(const It& o) const { return i != o.i; }
  };
  It begin() const { return {0}; }
  It end() const { return {n}; }
};

}  // namespace

int iq2_grid_size(DType t) { return static_cast<int>(table(t).entries.size()); }

Iq2Choice iq2_evaluate(DType t, const Iq2Group& g, int index) { return evaluate(table(t), g, index); }

Iq2Choice iq2_search_exhaustive(DType t, const Iq2Group& g, float scale) {
  const Iq2Table& tab = table(t);
  return best_of(tab, g, scale, IndexRange{static_cast<int>(tab.entries.size())});
}

Iq2Choice iq2_search_fast(DType t, const Iq2Group& g, float scale) {
  const Iq2Table& tab = table(t);
  const float inverse = 1 / scale;
  int point = 0;
  for (int j = 7; j >= 0; --j) point = 3 * point + nearest_level(g.magnitude[j] * inverse);
  const std::span<const uint16_t> list(tab.neighbours.data() + tab.first[static_cast<size_t>(point)],
                                       tab.first[static_cast<size_t>(point) + 1] - tab.first[static_cast<size_t>(point)]);
  return best_of(tab, g, scale, list);
}

}  // namespace fathom::quant::detail
