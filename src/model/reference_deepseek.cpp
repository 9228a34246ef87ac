// The naive FP32 reference of deepseek (DeepSeek-MoE-16B) and deepseek2 (DeepSeek-V2/V3), written
// from the papers, not from the engine: Multi-head Latent Attention with every head's key and
// value materialized from the latent (no weight absorption), and the DeepSeekMoE FFN evaluated
// expert by expert. Tests only; see reference_internal.h for the shared blocks.
//
// MLA (DeepSeek-V2 paper, section 2.1), for one token with normalized input h:
//   c_Q  = RMSNorm(W_DQ h)                q_lora_rank (or no compression: q = W_Q h)
//   q_h  = [q_nope_h ; RoPE(q_pe_h)] = W_UQ c_Q, per head h: nope + rope dims
//   [c_KV ; k_pe] = W_DKV h               c_KV = RMSNorm(latent), kv_lora_rank; k_pe: rope dims
//   k_h  = [W_UK_h c_KV ; RoPE(k_pe)]     k_pe shared by all heads
//   v_h  = W_UV_h c_KV
//   o_h  = sum_s softmax_s(q_h · k_h,s * softmax_scale) v_h,s    causal
//   out  = W_O [o_1 ; ... ; o_nh]
// softmax_scale = mscale^2 / sqrt(nope + rope), mscale = 1 + yarn_log_multiplier * ln(factor) under
// YaRN (DeepSeek's yarn_get_mscale(factor, mscale_all_dim); the converter stores 0.1*mscale_all_dim).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/reference_internal.h"

namespace fathom::reference {

namespace {

constexpr double kPi = 3.14159265358979323846;

// YaRN (Peng et al. 2023; DeepSeek's DeepseekV2YarnRotaryEmbedding): per-pair frequencies blend
// interpolation (base frequency / factor) and extrapolation (base frequency) with a linear ramp
// over the pair index between the dims that turn beta_fast and beta_slow times within the
// original context. High-frequency pairs (small i) extrapolate, low-frequency ones interpolate.
// The cos/sin magnitude is left at 1: DeepSeek's _mscale = mscale(s, mscale)/mscale(s, mscale_all_dim)
// is 1 for the published configs; the mscale enters the softmax scale instead.
std::vector<double> yarn_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.n_rot;
  const double base = c.rope_freq_base, factor = c.rope_scaling_factor;
  const double orig_ctx = static_cast<double>(c.rope_orig_ctx > 0 ? c.rope_orig_ctx : c.n_ctx_train);
  // The dim index whose pair turns n_rotations times over orig_ctx positions.
  auto correction_dim = [&](double n_rotations) {
    return static_cast<double>(dim) * std::log(orig_ctx / (n_rotations * 2.0 * kPi)) / (2.0 * std::log(base));
  };
  const double low = std::max(std::floor(correction_dim(c.yarn_beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.yarn_beta_slow)), static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  std::vector<double> inv_freq = rope_inv_freq(base, dim);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1.0 - ramp;  // DeepSeek's inv_freq_mask
    const double freq_extra = inv_freq[i], freq_inter = inv_freq[i] / factor;
    inv_freq[i] = freq_inter * (1.0 - extrapolation) + freq_extra * extrapolation;
  }
  return inv_freq;
}

double yarn_mscale(const ModelConfig& c) {
  if (c.rope_scaling != RopeScaling::kYarn || c.rope_scaling_factor <= 1.0f) return 1.0;
  return 1.0 + static_cast<double>(c.yarn_log_multiplier) * std::log(static_cast<double>(c.rope_scaling_factor));
}

// Per-head up-projections from the latent, as plain matrices over c_KV (r columns).
struct LatentUpProjection {
  Matrix w_uk;  // [n_head * n_nope rows, kv_lora_rank]: head h's W_UK_h is rows h*n_nope ..
  Matrix w_uv;  // [n_head * head_dim_v rows, kv_lora_rank]: head h's W_UV_h is rows h*head_dim_v ..
};

// Reads W_UK/W_UV from either GGUF convention: the split attn_k_b ne {nope, r, n_head} (W_UK_h
// transposed per head) + attn_v_b ne {r, v, n_head}, or the legacy attn_kv_b ne {r, n_head*(nope+v)}
// whose head h holds nope rows of W_UK_h then v rows of W_UV_h.
Expected<LatentUpProjection> load_latent_up(const gguf::GgufFile& file, const ModelConfig& c, int64_t il) {
  const int64_t r = c.kv_lora_rank, n_nope = c.head_dim_k - c.n_rot, hd_v = c.head_dim_v, n_head = c.n_head;
  LatentUpProjection p;
  p.w_uk.n_cols = p.w_uv.n_cols = r;
  p.w_uk.n_rows = n_head * n_nope;
  p.w_uv.n_rows = n_head * hd_v;
  p.w_uk.data.resize(static_cast<size_t>(p.w_uk.n_rows * r));
  if (has_tensor(file, layer_tensor(il, "attn_k_b.weight"))) {
    FATHOM_ASSIGN_OR_RETURN(Matrix k_b, load(file, layer_tensor(il, "attn_k_b.weight"), {n_nope, r, n_head}));
    FATHOM_ASSIGN_OR_RETURN(p.w_uv, load(file, layer_tensor(il, "attn_v_b.weight"), {r, hd_v, n_head}));
    for (int64_t h = 0; h < n_head; ++h)
      for (int64_t ci = 0; ci < r; ++ci)
        for (int64_t j = 0; j < n_nope; ++j) p.w_uk.data[(h * n_nope + j) * r + ci] = k_b.row(h * r + ci)[j];
    return p;
  }
  FATHOM_ASSIGN_OR_RETURN(Matrix kv_b, load(file, layer_tensor(il, "attn_kv_b.weight"), {r, n_head * (n_nope + hd_v)}));
  p.w_uv.data.resize(static_cast<size_t>(p.w_uv.n_rows * r));
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t j = 0; j < n_nope; ++j)
      std::copy_n(kv_b.row(h * (n_nope + hd_v) + j), r, p.w_uk.data.begin() + (h * n_nope + j) * r);
    for (int64_t j = 0; j < hd_v; ++j)
      std::copy_n(kv_b.row(h * (n_nope + hd_v) + n_nope + j), r, p.w_uv.data.begin() + (h * hd_v + j) * r);
  }
  return p;
}

// x += W_O · MLA(RMSNorm(x)) for layer il, every head's k and v materialized (formulas above).
Status mla_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, const std::vector<double>& inv_freq,
                 Activations& x) {
  const int64_t n_tokens = static_cast<int64_t>(x.size()), n_embd = c.n_embd, n_head = c.n_head;
  const int64_t r = c.kv_lora_rank, n_rot = c.n_rot, hd_k = c.head_dim_k, n_nope = hd_k - n_rot, hd_v = c.head_dim_v;
  const double mscale = yarn_mscale(c);
  const double softmax_scale = mscale * mscale / std::sqrt(static_cast<double>(hd_k));

  FATHOM_ASSIGN_OR_RETURN(Matrix norm, load(file, layer_tensor(il, "attn_norm.weight"), {n_embd}));
  Matrix w_q, w_dq, q_norm, w_uq;  // W_Q, or W_DQ + its RMSNorm + W_UQ (q_lora_rank > 0)
  if (c.q_lora_rank > 0) {
    FATHOM_ASSIGN_OR_RETURN(w_dq, load(file, layer_tensor(il, "attn_q_a.weight"), {n_embd, c.q_lora_rank}));
    FATHOM_ASSIGN_OR_RETURN(q_norm, load(file, layer_tensor(il, "attn_q_a_norm.weight"), {c.q_lora_rank}));
    FATHOM_ASSIGN_OR_RETURN(w_uq, load(file, layer_tensor(il, "attn_q_b.weight"), {c.q_lora_rank, n_head * hd_k}));
  } else {
    FATHOM_ASSIGN_OR_RETURN(w_q, load(file, layer_tensor(il, "attn_q.weight"), {n_embd, n_head * hd_k}));
  }
  FATHOM_ASSIGN_OR_RETURN(Matrix w_dkv, load(file, layer_tensor(il, "attn_kv_a_mqa.weight"), {n_embd, r + n_rot}));
  FATHOM_ASSIGN_OR_RETURN(Matrix kv_norm, load(file, layer_tensor(il, "attn_kv_a_norm.weight"), {r}));
  FATHOM_ASSIGN_OR_RETURN(LatentUpProjection up, load_latent_up(file, c, il));
  FATHOM_ASSIGN_OR_RETURN(Matrix w_o, load(file, layer_tensor(il, "attn_output.weight"), {n_head * hd_v, n_embd}));

  Activations q(n_tokens);       // [n_tokens][n_head * hd_k]: per head [q_nope (n_nope) | q_pe (n_rot), roped]
  Activations k_nope(n_tokens);  // [n_tokens][n_head * n_nope]
  Activations k_pe(n_tokens);    // [n_tokens][n_rot] roped, shared by all heads
  Activations v(n_tokens);       // [n_tokens][n_head * hd_v]
  for (int64_t t = 0; t < n_tokens; ++t) {
    const std::vector<float> h = rms_norm(x[t], norm, c.rms_norm_eps);
    q[t] = c.q_lora_rank > 0 ? matvec(w_uq, rms_norm(matvec(w_dq, h), q_norm, c.rms_norm_eps)) : matvec(w_q, h);
    for (int64_t hh = 0; hh < n_head; ++hh) rope(q[t].data() + hh * hd_k + n_nope, n_rot, t, /*neox=*/false, inv_freq);
    const std::vector<float> kv = matvec(w_dkv, h);  // [c_KV before norm (r) | k_pe (n_rot)]
    const std::vector<float> c_kv = rms_norm(std::vector<float>(kv.begin(), kv.begin() + r), kv_norm, c.rms_norm_eps);
    k_pe[t].assign(kv.begin() + r, kv.end());
    rope(k_pe[t].data(), n_rot, t, /*neox=*/false, inv_freq);
    k_nope[t] = matvec(up.w_uk, c_kv);
    v[t] = matvec(up.w_uv, c_kv);
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> o(static_cast<size_t>(n_head * hd_v));  // [n_head * hd_v] concatenated heads
    for (int64_t hh = 0; hh < n_head; ++hh) {
      const float* qh = q[t].data() + hh * hd_k;
      std::vector<double> score(static_cast<size_t>(t + 1));
      for (int64_t s = 0; s <= t; ++s) {
        double dot = 0.0;
        for (int64_t d = 0; d < n_nope; ++d) dot += static_cast<double>(qh[d]) * k_nope[s][hh * n_nope + d];
        for (int64_t d = 0; d < n_rot; ++d) dot += static_cast<double>(qh[n_nope + d]) * k_pe[s][d];
        score[s] = dot * softmax_scale;
      }
      softmax_weighted_sum(score, v, hh * hd_v, hd_v, o.data() + hh * hd_v);
    }
    add_in_place(x[t], matvec(w_o, o));
  }
  return Status::ok();
}

// Ids 0..n-1 ordered by descending score, ties to the lower id.
std::vector<int64_t> rank_desc(const std::vector<double>& score) {
  std::vector<int64_t> ids(score.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  return ids;
}

// The routed experts of one token and their weights (DeepSeek-V2 eq. 11-12, V3 eq. 13-16).
struct Routing {
  std::vector<int64_t> experts;  // [expert_used_count] chosen ids
  std::vector<double> weights;   // [expert_used_count] their gate values
};

Routing route(const ModelConfig& c, const std::vector<float>& router_logits, const Matrix* bias) {
  const int64_t n = c.n_expert;
  std::vector<double> prob(static_cast<size_t>(n));  // s_i: softmax (V2, MoE-16B) or sigmoid (V3) affinities
  if (c.expert_gating_func == 2) {
    for (int64_t i = 0; i < n; ++i) prob[i] = 1.0 / (1.0 + std::exp(-static_cast<double>(router_logits[i])));
  } else {
    const double max_logit = *std::max_element(router_logits.begin(), router_logits.end());
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += prob[i] = std::exp(router_logits[i] - max_logit);
    for (double& p : prob) p /= sum;
  }
  // Selection uses s_i + b_i (V3's auxiliary-loss-free balancing bias); the gate values use s_i.
  std::vector<double> select = prob;
  if (bias != nullptr)
    for (int64_t i = 0; i < n; ++i) select[i] += bias->data[i];
  // Group-limited routing: only experts in the expert_group_used_count best groups, a group
  // scored by the sum of its two best selection scores.
  if (c.n_expert_groups > 1) {
    const int64_t per_group = n / c.n_expert_groups;
    std::vector<double> group_score(static_cast<size_t>(c.n_expert_groups));
    for (int64_t g = 0; g < c.n_expert_groups; ++g) {
      std::vector<double> members(select.begin() + g * per_group, select.begin() + (g + 1) * per_group);
      std::sort(members.begin(), members.end(), std::greater<>());
      group_score[g] = members[0] + (per_group > 1 ? members[1] : 0.0);
    }
    const std::vector<int64_t> group_rank = rank_desc(group_score);
    std::vector<bool> kept(static_cast<size_t>(c.n_expert_groups), false);
    for (int64_t k = 0; k < c.n_expert_groups_used; ++k) kept[group_rank[k]] = true;
    for (int64_t i = 0; i < n; ++i)
      if (!kept[i / per_group]) select[i] = -INFINITY;
  }
  Routing out;
  const std::vector<int64_t> expert_rank = rank_desc(select);
  double sum = 0.0;
  for (int64_t k = 0; k < c.n_expert_used; ++k) {
    out.experts.push_back(expert_rank[k]);
    out.weights.push_back(prob[expert_rank[k]]);
    sum += prob[expert_rank[k]];
  }
  for (double& w : out.weights) w = (c.expert_weights_norm ? w / sum : w) * c.expert_weights_scale;
  return out;
}

// x += DeepSeekMoE(RMSNorm(x)) for layer il: sum_k g_k FFN_k(h) over the routed experts plus the
// shared experts' FFN (stored fused as one SwiGLU of n_ff_exp * n_shared).
// routes, when given, receives each token's routing.
Status moe_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, Activations& x, std::vector<Route>* routes) {
  const int64_t n_embd = c.n_embd, n_ff = c.n_ff_exp, n_exp = c.n_expert;
  FATHOM_ASSIGN_OR_RETURN(Matrix norm, load(file, layer_tensor(il, "ffn_norm.weight"), {n_embd}));
  FATHOM_ASSIGN_OR_RETURN(Matrix router, load(file, layer_tensor(il, "ffn_gate_inp.weight"), {n_embd, n_exp}));
  Matrix bias;
  const bool has_bias = has_tensor(file, layer_tensor(il, "exp_probs_b.bias"));
  if (has_bias) {
    FATHOM_ASSIGN_OR_RETURN(bias, load(file, layer_tensor(il, "exp_probs_b.bias"), {n_exp}));
  }
  FATHOM_ASSIGN_OR_RETURN(Matrix gate, load(file, layer_tensor(il, "ffn_gate_exps.weight"), {n_embd, n_ff, n_exp}));
  FATHOM_ASSIGN_OR_RETURN(Matrix up, load(file, layer_tensor(il, "ffn_up_exps.weight"), {n_embd, n_ff, n_exp}));
  FATHOM_ASSIGN_OR_RETURN(Matrix down, load(file, layer_tensor(il, "ffn_down_exps.weight"), {n_ff, n_embd, n_exp}));
  Matrix gate_sh, up_sh, down_sh;
  const int64_t n_ff_sh = n_ff * c.n_expert_shared;
  if (c.n_expert_shared > 0) {
    FATHOM_ASSIGN_OR_RETURN(gate_sh, load(file, layer_tensor(il, "ffn_gate_shexp.weight"), {n_embd, n_ff_sh}));
    FATHOM_ASSIGN_OR_RETURN(up_sh, load(file, layer_tensor(il, "ffn_up_shexp.weight"), {n_embd, n_ff_sh}));
    FATHOM_ASSIGN_OR_RETURN(down_sh, load(file, layer_tensor(il, "ffn_down_shexp.weight"), {n_ff_sh, n_embd}));
  }
  for (std::vector<float>& xt : x) {
    const std::vector<float> h = rms_norm(xt, norm, c.rms_norm_eps);
    const Routing routing = route(c, matvec(router, h), has_bias ? &bias : nullptr);
    if (routes) {
      Route& r = routes->emplace_back();
      for (size_t k = 0; k < routing.experts.size(); ++k) {
        r.experts.push_back(static_cast<int32_t>(routing.experts[k]));
        r.weights.push_back(static_cast<float>(routing.weights[k]));
      }
    }
    std::vector<double> out(static_cast<size_t>(n_embd), 0.0);
    for (size_t k = 0; k < routing.experts.size(); ++k) {
      const std::vector<float> y = swiglu(gate, up, down, routing.experts[k], n_ff, h);
      for (int64_t d = 0; d < n_embd; ++d) out[d] += routing.weights[k] * y[d];
    }
    if (c.n_expert_shared > 0) {
      const std::vector<float> y = swiglu(gate_sh, up_sh, down_sh, 0, n_ff_sh, h);
      for (int64_t d = 0; d < n_embd; ++d) out[d] += y[d];
    }
    for (int64_t d = 0; d < n_embd; ++d) xt[d] += static_cast<float>(out[d]);
  }
  return Status::ok();
}

}  // namespace

Expected<std::vector<float>> forward_deepseek(const gguf::GgufFile& file, const ModelConfig& c,
                                              const std::vector<int32_t>& tokens, ReferenceRouting* routing) {
  const bool mla = c.arch == Arch::kDeepseek2;
  if (c.n_expert > 0 && (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert || c.n_ff_exp <= 0))
    return error(ErrorCode::kInvalidFile, "reference_forward: inconsistent expert_count / expert_used_count / "
                                          "expert_feed_forward_length");
  if (c.rope_scaling == RopeScaling::kYarn && !mla)
    return error(ErrorCode::kUnsupported, "reference_forward: YaRN rope scaling is implemented for deepseek2 only");
  if (mla && (c.kv_lora_rank <= 0 || c.head_dim_k <= c.n_rot || c.head_dim_v <= 0))
    return error(ErrorCode::kInvalidFile, "reference_forward: deepseek2 needs kv_lora_rank and key length > rope dims");
  if (!mla && (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0))
    return error(ErrorCode::kInvalidFile, "reference_forward: head_count is not a multiple of head_count_kv");
  // Both use llama.cpp's "normal" rope: adjacent pairs (x[2i], x[2i+1]).
  std::vector<double> inv_freq;
  if (c.rope_scaling == RopeScaling::kYarn) {
    inv_freq = yarn_inv_freq(c);
  } else {
    inv_freq = rope_inv_freq(c.rope_freq_base, c.n_rot);
    if (c.rope_scaling == RopeScaling::kLinear && c.rope_scaling_factor > 0)
      for (double& f : inv_freq) f /= c.rope_scaling_factor;
  }

  FATHOM_ASSIGN_OR_RETURN(Activations x, embed(file, c, tokens));  // [n_tokens][n_embd] residual stream
  for (int64_t il = 0; il < c.n_layer; ++il) {
    if (mla) {
      FATHOM_RETURN_IF_ERROR(mla_layer(file, c, il, inv_freq, x));
    } else {
      FATHOM_RETURN_IF_ERROR(attention_layer(file, c, il, inv_freq, /*neox=*/false, x));
    }
    if (c.n_expert > 0 && il >= c.n_layer_dense_lead) {
      FATHOM_RETURN_IF_ERROR(moe_layer(file, c, il, x, routing ? &routing->emplace_back() : nullptr));
    } else {
      FATHOM_RETURN_IF_ERROR(dense_ffn_layer(file, c, il, c.n_ff, x));
    }
  }
  return output_logits(file, c, x);
}

}  // namespace fathom::reference
