#include "model/moe.h"

#include <algorithm>

namespace fathom {

namespace {

std::string layer_name(int64_t il, const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; }

}  // namespace

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
  const int64_t n_embd = c.n_embd, n_ff = c.n_ff_exp, k = rp.n_expert_used;
  grow(s.router_logits, n * c.n_expert);
  grow(s.acc, n * n_embd);
  be.matmul(w.router, xn, n, s.router_logits.data());                                // [n, n_expert]
  std::vector<int32_t> experts(static_cast<size_t>(n * k));                          // [n, k]
  std::vector<float> weights(static_cast<size_t>(n * k));
  be.moe_route(s.router_logits.data(), n, rp, experts.data(), weights.data());
  // The (token, weight) pairs grouped by expert: pair p of expert e is pair offset[e] + p.
  std::vector<int64_t> offset(static_cast<size_t>(c.n_expert) + 1, 0);
  for (int32_t e : experts) ++offset[static_cast<size_t>(e) + 1];
  for (size_t e = 0; e < static_cast<size_t>(c.n_expert); ++e) offset[e + 1] += offset[e];
  const int64_t n_pairs = n * k;
  std::vector<int32_t> pair_token(static_cast<size_t>(n_pairs));                    // [n_pairs]
  std::vector<float> pair_weight(static_cast<size_t>(n_pairs));
  std::vector<int64_t> filled(offset.begin(), offset.end() - 1);
  for (int64_t i = 0; i < n_pairs; ++i) {
    const size_t p = static_cast<size_t>(filled[static_cast<size_t>(experts[static_cast<size_t>(i)])]++);
    pair_token[p] = static_cast<int32_t>(i / k);
    pair_weight[p] = weights[static_cast<size_t>(i)];
  }
  const int64_t n_sh = w.gate_shexp.data ? w.gate_shexp.ne[1] : 0;
  grow(s.xs, n_pairs * n_embd);
  grow(s.gate, n_pairs * n_ff + n * n_sh);
  grow(s.up, n_pairs * n_ff + n * n_sh);
  grow(s.out, n_pairs * n_embd);
  be.gather_rows(xn, n, n_embd, pair_token.data(), n_pairs, s.xs.data());           // [n_pairs, n_embd]
  // Gate and up of every active expert and of the shared experts, then the down products.
  std::vector<MatmulJob> first, second;
  for (int64_t e = 0; e < c.n_expert; ++e) {
    const int64_t row = offset[static_cast<size_t>(e)], n_sel = offset[static_cast<size_t>(e) + 1] - row;
    if (n_sel == 0) continue;
    const float* xs = s.xs.data() + row * n_embd;
    first.push_back({expert_slice(w.gate_exps, e), xs, n_sel, s.gate.data() + row * n_ff});   // [n_sel, n_ff]
    first.push_back({expert_slice(w.up_exps, e), xs, n_sel, s.up.data() + row * n_ff});
    second.push_back({expert_slice(w.down_exps, e), s.gate.data() + row * n_ff, n_sel, s.out.data() + row * n_embd});
  }
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
  be.scatter_add_rows(s.out.data(), pair_token.data(), pair_weight.data(), n_pairs, n_embd, s.acc.data(), n);
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
