// Multi-head Latent Attention (DeepSeek-V2/V3) with the up-projections absorbed: the cache keeps
// one latent row per token, [c_kv (kv_lora_rank) | k_pe (n_rot)], shared by all heads; queries
// are mapped into latent space (q_nope · W_kb) and the attended latent is mapped out per head
// (W_vb), so no per-head K or V is ever materialized.
#pragma once

#include <vector>

#include "model/activations.h"
#include "model/architecture.h"
#include "model/weights.h"

namespace fathom {

struct MlaWeights {
  const float* norm = nullptr;       // [n_embd] attn_norm
  TensorView wq;                     // [n_head * head_dim_k, n_embd] attn_q (when q_lora_rank == 0)
  TensorView wq_a;                   // [q_lora_rank, n_embd] attn_q_a
  const float* q_a_norm = nullptr;   // [q_lora_rank] attn_q_a_norm
  TensorView wq_b;                   // [n_head * head_dim_k, q_lora_rank] attn_q_b
  TensorView wkv_a;                  // [kv_lora_rank + n_rot, n_embd] attn_kv_a_mqa
  const float* kv_a_norm = nullptr;  // [kv_lora_rank] attn_kv_a_norm
  TensorView wk_b;                   // [n_head, kv_lora_rank, n_nope] per-head W_kb^T (attn_k_b, or built from attn_kv_b)
  TensorView wv_b;                   // [n_head, head_dim_v, kv_lora_rank] per-head W_vb (attn_v_b), or
  int64_t wv_b_head_stride = 0;      // rows between heads in wv_b (head_dim_v, or nope + v inside attn_kv_b)
  TensorView wo;                     // [n_embd, n_head * head_dim_v] attn_output
};

struct MlaScratch {
  Activations q_a;     // [n_tokens, q_lora_rank]
  Activations q;       // [n_tokens, n_head, head_dim_k] (nope | rope)
  Activations kv_a;    // [n_tokens, kv_lora_rank + n_rot]: latent | k_pe, the cache row
  Activations q_nope;  // [n_head, n_tokens, n_nope] nope parts, head-major (k_pe staging first)
  Activations q_abs;   // [n_tokens, n_head, kv_lora_rank]
  Activations q_pe;    // [n_tokens, n_head, n_rot]
  Activations head_in; // [n_head, n_tokens, kv_lora_rank] head-major latents (absorbed q, attended)
  Activations head_out;// [n_head, n_tokens, head_dim_v]
  Activations lat;     // [n_tokens, n_head, kv_lora_rank] attended latents
  Activations attn;    // [n_tokens, n_head * head_dim_v]
};

// Binds layer il's MLA tensors; builds W_kb^T in f32 (into f32 storage) from a legacy attn_kv_b.
Expected<MlaWeights> bind_mla(const WeightBinder& binder, const ModelConfig& c, int64_t il,
                              std::vector<std::vector<float>>& f32_storage);

// The latent cache layout: one row of [kv_lora_rank + n_rot] per token per layer, shared by all
// heads (k_width), no V.
KvCacheShape mla_kv_shape(const ModelConfig& c, int64_t n_ctx);

// DeepSeek's attention scale with YaRN: mscale^2 / sqrt(head_dim_k), mscale = 1 + log_mul * ln(factor).
float mla_attention_scale(const ModelConfig& c);
// Rope parameters for deepseek2 (YaRN magnitude correction moved into the attention scale).
RopeParams mla_rope_params(const ModelConfig& c);

// Rotates the k_pe part of cached latent rows ([n_rows, kv_lora_rank + n_rot], RoPE at p) to p + delta.
void rotate_mla_keys(Backend& be, const ModelConfig& c, const RopeParams& rope, float* rows, int64_t n_rows, int32_t delta);

// proj = W_o · MLA(RMSNorm(x)) for all tokens; writes the batch's latent rows into the cache.
// x: [n_tokens, n_embd] residual stream (read), xn: scratch [n_tokens, n_embd], proj: [n_tokens, n_embd].
void mla_block(Backend& be, const ModelConfig& c, const RopeParams& rope, const MlaWeights& w, int64_t layer,
               const Batch& batch, KvCache& kv, const float* x, float* xn, float* proj, MlaScratch& s);

}  // namespace fathom
