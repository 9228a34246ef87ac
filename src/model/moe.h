// Mixture-of-experts FFN of DeepSeek-MoE / V2 / V3: a router picks expert_used_count of
// expert_count routed experts per token (softmax or sigmoid gating, optional score-correction
// bias, optional group-limited selection), their SwiGLU outputs are summed with the routing
// weights, and the shared experts' output is added.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/moe_routing.h"
#include "model/activations.h"
#include "model/config.h"
#include "model/dense_decoder.h"
#include "model/weights.h"

namespace fathom {

struct MoeWeights {
  const float* norm = nullptr;  // [n_embd] ffn_norm
  TensorView router;            // [n_expert, n_embd] ffn_gate_inp
  const float* probs_bias = nullptr;  // [n_expert] exp_probs_b (V3), nullptr if absent
  TensorView gate_exps;         // [n_expert, n_ff_exp, n_embd] ffn_gate_exps
  TensorView up_exps;           // [n_expert, n_ff_exp, n_embd] ffn_up_exps
  TensorView down_exps;         // [n_expert, n_embd, n_ff_exp] ffn_down_exps
  TensorView gate_shexp;        // [n_ff_shexp, n_embd] ffn_gate_shexp (data == nullptr if no shared experts)
  TensorView up_shexp;          // [n_ff_shexp, n_embd]
  TensorView down_shexp;        // [n_embd, n_ff_shexp]
};

Expected<MoeWeights> bind_moe(const WeightBinder& binder, const ModelConfig& c, int64_t il, std::vector<std::vector<float>>& f32);
RoutingParams routing_params(const ModelConfig& c, const MoeWeights& w);

// Expert e's [rows, ne[0]] matrix out of a 3-D expert tensor [n_expert, rows, ne[0]].
TensorView expert_slice(const TensorView& experts, int64_t e);

// Scratch of the MoE block.
// Expert buffers hold the routed (token, expert) pairs expert by expert: pair p of expert e sits at
// row offset[e] + p. The shared experts' rows follow the routed ones.
struct MoeScratch {
  Activations router_logits;  // [n_tokens, n_expert]
  Activations xs;             // [n_pairs, n_embd] inputs of the routed pairs, grouped by expert
  Activations gate;           // [n_pairs, n_ff] + [n_tokens, n_ff_shexp]
  Activations up;             // same shape as gate
  Activations out;            // [n_pairs, n_embd]
  Activations acc;            // [n_tokens, n_embd] weighted sum of expert outputs
};

// acc = shared(xn) + sum over chosen experts of weight * expert(xn), grouping tokens by expert
// so each active expert's weights are read once per batch; the gate/up products of every active
// expert and the shared experts run as one matmul_batch, the down products as another.
// xn: [n_tokens, n_embd] normalized input.
void moe_ffn(Backend& be, const ModelConfig& c, const MoeWeights& w, const RoutingParams& rp, const float* xn,
             int64_t n_tokens, MoeScratch& s);

// x += MoE(RMSNorm(x)) on the residual stream of the dense scratch.
void moe_block(Backend& be, const ModelConfig& c, const MoeWeights& w, const RoutingParams& rp, int64_t n_tokens,
               DenseScratch& ds, MoeScratch& ms);

// A DeepSeek FFN layer: dense SwiGLU for the leading_dense_block_count first layers, MoE after.
struct DeepseekFfn {
  bool is_moe = false;
  FfnWeights dense;      // when !is_moe
  MoeWeights moe;        // when is_moe
  RoutingParams routing; // when is_moe
};
Expected<DeepseekFfn> bind_deepseek_ffn(const WeightBinder& binder, const ModelConfig& c, int64_t il,
                                        std::vector<std::vector<float>>& f32);
void deepseek_ffn_block(Backend& be, const ModelConfig& c, const DeepseekFfn& f, int64_t n_tokens, DenseScratch& ds,
                        MoeScratch& ms);

}  // namespace fathom
