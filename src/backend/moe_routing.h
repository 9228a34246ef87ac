// Mixture-of-experts routing as DeepSeek-MoE / V2 / V3 define it: softmax or sigmoid gating of a
// token's router logits, optional score-correction bias and group-limited selection. Here, below
// the architectures, because Backend::moe_route takes it (a device may route where the logits are).
#pragma once

#include <cstdint>
#include <vector>

namespace fathom {

struct RoutingParams {
  int64_t n_expert = 0;             // routed experts
  int64_t n_expert_used = 0;        // experts per token (k)
  int64_t n_groups = 1;             // expert groups (1: no group limit)
  int64_t n_groups_used = 1;        // groups a token may choose from
  bool sigmoid = false;             // gating: sigmoid (V3) or softmax (V2, DeepSeek-MoE)
  bool normalize = false;           // divide selected weights by their sum
  float scale = 1.0f;               // multiply the final weights (routed_scaling_factor)
  const float* bias = nullptr;      // [n_expert] score correction added for selection only (V3), or nullptr
};

struct Route {
  std::vector<int32_t> experts;  // [k] chosen expert ids, best first
  std::vector<float> weights;    // [k] their weights
};

// Routes one token from its router logits [n_expert]. Ties go to the lower expert id.
// Group limit: a group's score is the sum of its two best selection scores; experts outside the
// best n_groups_used groups are not eligible.
Route route_token(const float* router_logits, const RoutingParams& p);

}  // namespace fathom
