#include "backend/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fathom {

namespace {

// Indices of the k largest values, best first, ties to the lower index.
std::vector<int32_t> top_k_indices(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  // NaN ranks last, so the order stays strict even on garbage (a pass a device lost and reruns).
  auto key = [&](int32_t i) {
    const float x = v[static_cast<size_t>(i)];
    return std::isnan(x) ? -INFINITY : x;
  };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

}  // namespace

Route route_token(const float* logits, const RoutingParams& p) {
  const size_t n = static_cast<size_t>(p.n_expert);
  std::vector<float> probs(n);
  if (p.sigmoid) {
    for (size_t i = 0; i < n; ++i) probs[i] = 1.0f / (1.0f + std::exp(-logits[i]));
  } else {
    const float max_logit = *std::max_element(logits, logits + n);
    float sum = 0.0f;
    for (size_t i = 0; i < n; ++i) sum += probs[i] = std::exp(logits[i] - max_logit);
    for (float& v : probs) v /= sum;
  }
  // Selection scores: the probabilities, shifted by the score-correction bias when present.
  std::vector<float> select(probs);
  if (p.bias)
    for (size_t i = 0; i < n; ++i) select[i] += p.bias[i];
  if (p.n_groups > 1) {
    const int64_t per_group = p.n_expert / p.n_groups;
    std::vector<float> group_score(static_cast<size_t>(p.n_groups));
    for (int64_t g = 0; g < p.n_groups; ++g) {
      std::vector<float> members(select.begin() + g * per_group, select.begin() + (g + 1) * per_group);
      const std::vector<int32_t> best = top_k_indices(members, std::min<int64_t>(2, per_group));
      float s = 0.0f;
      for (int32_t b : best) s += members[static_cast<size_t>(b)];
      group_score[static_cast<size_t>(g)] = s;
    }
    const std::vector<int32_t> kept = top_k_indices(group_score, p.n_groups_used);
    std::vector<bool> eligible(static_cast<size_t>(p.n_groups), false);
    for (int32_t g : kept) eligible[static_cast<size_t>(g)] = true;
    for (size_t i = 0; i < n; ++i)
      if (!eligible[i / static_cast<size_t>(per_group)]) select[i] = -INFINITY;
  }
  Route r;
  r.experts = top_k_indices(select, p.n_expert_used);
  float sum = 0.0f;
  for (int32_t e : r.experts) {
    r.weights.push_back(probs[static_cast<size_t>(e)]);
    sum += probs[static_cast<size_t>(e)];
  }
  for (float& w : r.weights) w = (p.normalize ? w / sum : w) * p.scale;
  return r;
}

}  // namespace fathom
