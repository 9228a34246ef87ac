#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace fathom {

namespace {

std::string layer_name(int64_t il, const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; }

void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

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

TensorView expert_slice(const TensorView& experts, int64_t e) {
  TensorView v = experts;
  v.ne = {experts.ne[0], experts.ne[1], 1, 1};
  v.n_dims = 2;
  v.data = experts.row(e * experts.ne[1]);
  return v;
}

Expected<MoeWeights> bind_moe(const WeightBinder& b, const ModelConfig& c, int64_t il, std::vector<std::vector<float>>& f32) {
  MoeWeights w;
  const int64_t n_ff = c.n_ff_exp, n_exp = c.n_expert;
  FATHOM_ASSIGN_OR_RETURN(w.norm, b.require_f32(layer_name(il, "ffn_norm.weight"), c.n_embd, f32));
  FATHOM_ASSIGN_OR_RETURN(w.router, b.require(layer_name(il, "ffn_gate_inp.weight"), {c.n_embd, n_exp}));
  FATHOM_ASSIGN_OR_RETURN(w.probs_bias, b.optional_f32(layer_name(il, "exp_probs_b.bias"), n_exp, f32));
  FATHOM_ASSIGN_OR_RETURN(w.gate_exps, b.require(layer_name(il, "ffn_gate_exps.weight"), {c.n_embd, n_ff, n_exp}));
  FATHOM_ASSIGN_OR_RETURN(w.up_exps, b.require(layer_name(il, "ffn_up_exps.weight"), {c.n_embd, n_ff, n_exp}));
  FATHOM_ASSIGN_OR_RETURN(w.down_exps, b.require(layer_name(il, "ffn_down_exps.weight"), {n_ff, c.n_embd, n_exp}));
  if (c.n_expert_shared > 0) {
    const int64_t n_sh = n_ff * c.n_expert_shared;
    FATHOM_ASSIGN_OR_RETURN(w.gate_shexp, b.require(layer_name(il, "ffn_gate_shexp.weight"), {c.n_embd, n_sh}));
    FATHOM_ASSIGN_OR_RETURN(w.up_shexp, b.require(layer_name(il, "ffn_up_shexp.weight"), {c.n_embd, n_sh}));
    FATHOM_ASSIGN_OR_RETURN(w.down_shexp, b.require(layer_name(il, "ffn_down_shexp.weight"), {n_sh, c.n_embd}));
  }
  return w;
}

RoutingParams routing_params(const ModelConfig& c, const MoeWeights& w) {
  RoutingParams p;
  p.n_expert = c.n_expert;
  p.n_expert_used = c.n_expert_used;
  p.n_groups = c.n_expert_groups > 1 ? c.n_expert_groups : 1;
  p.n_groups_used = c.n_expert_groups > 1 ? c.n_expert_groups_used : 1;
  p.sigmoid = c.expert_gating_func == 2;
  p.normalize = c.expert_weights_norm;
  p.scale = c.expert_weights_scale;
  p.bias = w.probs_bias;
  return p;
}

void moe_ffn(Backend& be, const ModelConfig& c, const MoeWeights& w, const RoutingParams& rp, const float* xn, int64_t n,
             MoeScratch& s) {
  const int64_t n_embd = c.n_embd, n_ff = c.n_ff_exp;
  grow(s.router_logits, n * c.n_expert);
  grow(s.acc, n * n_embd);
  be.matmul(w.router, xn, n, s.router_logits.data());                                // [n, n_expert]
  be.sync_to_host(s.router_logits.data(), n * c.n_expert);
  // Route, then group the (token, weight) pairs by expert.
  std::vector<std::vector<std::pair<int32_t, float>>> by_expert(static_cast<size_t>(c.n_expert));
  int64_t n_pairs = 0;
  for (int64_t t = 0; t < n; ++t) {
    const Route r = route_token(s.router_logits.data() + t * c.n_expert, rp);
    for (size_t k = 0; k < r.experts.size(); ++k)
      by_expert[static_cast<size_t>(r.experts[k])].push_back({static_cast<int32_t>(t), r.weights[k]});
    n_pairs += static_cast<int64_t>(r.experts.size());
  }
  const int64_t n_sh = w.gate_shexp.data ? w.gate_shexp.ne[1] : 0;
  grow(s.xs, n_pairs * n_embd);
  grow(s.gate, n_pairs * n_ff + n * n_sh);
  grow(s.up, n_pairs * n_ff + n * n_sh);
  grow(s.out, n_pairs * n_embd);
  // Gate and up of every active expert (its tokens' rows gathered) and of the shared experts.
  std::vector<MatmulJob> first, second;
  be.sync_to_host(xn, n * n_embd);  // its rows are gathered per expert on the host
  int64_t row = 0;
  for (int64_t e = 0; e < c.n_expert; ++e) {
    const auto& tokens = by_expert[static_cast<size_t>(e)];
    if (tokens.empty()) continue;
    const int64_t n_sel = static_cast<int64_t>(tokens.size());
    float* xs = s.xs.data() + row * n_embd;
    for (int64_t i = 0; i < n_sel; ++i)
      std::memcpy(xs + i * n_embd, xn + tokens[static_cast<size_t>(i)].first * n_embd, static_cast<size_t>(n_embd) * sizeof(float));
    first.push_back({expert_slice(w.gate_exps, e), xs, n_sel, s.gate.data() + row * n_ff});   // [n_sel, n_ff]
    first.push_back({expert_slice(w.up_exps, e), xs, n_sel, s.up.data() + row * n_ff});
    second.push_back({expert_slice(w.down_exps, e), s.gate.data() + row * n_ff, n_sel, s.out.data() + row * n_embd});
    row += n_sel;
  }
  be.host_wrote(s.xs.data(), n_pairs * n_embd);
  float* gate_sh = s.gate.data() + n_pairs * n_ff;
  if (n_sh > 0) {
    first.push_back({w.gate_shexp, xn, n, gate_sh});                                   // [n, n_sh]
    first.push_back({w.up_shexp, xn, n, s.up.data() + n_pairs * n_ff});
    second.push_back({w.down_shexp, gate_sh, n, s.acc.data()});                        // acc starts as their output
  } else {
    std::fill(s.acc.begin(), s.acc.begin() + n * n_embd, 0.0f);
    be.host_wrote(s.acc.data(), n * n_embd);
  }
  be.matmul_batch(first);
  be.swiglu(s.gate.data(), s.up.data(), n_pairs * n_ff + n * n_sh, s.gate.data());
  be.matmul_batch(second);
  // Weighted sum of the routed experts' outputs.
  be.sync_to_host(s.out.data(), n_pairs * n_embd);
  be.sync_to_host(s.acc.data(), n * n_embd);
  row = 0;
  for (int64_t e = 0; e < c.n_expert; ++e) {
    for (const auto& [t, weight] : by_expert[static_cast<size_t>(e)]) {
      float* dst = s.acc.data() + static_cast<int64_t>(t) * n_embd;
      const float* src = s.out.data() + row * n_embd;
      for (int64_t j = 0; j < n_embd; ++j) dst[j] += weight * src[j];
      ++row;
    }
  }
  be.host_wrote(s.acc.data(), n * n_embd);
}

void moe_block(Backend& be, const ModelConfig& c, const MoeWeights& w, const RoutingParams& rp, int64_t n, DenseScratch& ds,
               MoeScratch& ms) {
  be.rms_norm(ds.x.data(), w.norm, n, c.n_embd, c.rms_norm_eps, ds.xn.data());
  moe_ffn(be, c, w, rp, ds.xn.data(), n, ms);
  be.add(ds.x.data(), ms.acc.data(), n * c.n_embd);
}

Expected<DeepseekFfn> bind_deepseek_ffn(const WeightBinder& b, const ModelConfig& c, int64_t il, std::vector<std::vector<float>>& f32) {
  DeepseekFfn f;
  f.is_moe = c.n_expert > 0 && il >= c.n_layer_dense_lead;
  if (!f.is_moe) {
    FATHOM_ASSIGN_OR_RETURN(f.dense, bind_ffn(b, c, il, c.n_ff, f32));
    return f;
  }
  if (c.n_ff_exp <= 0) return error(ErrorCode::kInvalidFile, "MoE model without expert_feed_forward_length");
  FATHOM_ASSIGN_OR_RETURN(f.moe, bind_moe(b, c, il, f32));
  f.routing = routing_params(c, f.moe);
  return f;
}

void deepseek_ffn_block(Backend& be, const ModelConfig& c, const DeepseekFfn& f, int64_t n, DenseScratch& ds, MoeScratch& ms) {
  if (f.is_moe) {
    moe_block(be, c, f.moe, f.routing, n, ds, ms);
  } else {
    ffn_block(be, c, f.dense, n, ds);
  }
}

}  // namespace fathom
