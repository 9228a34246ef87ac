// The pre-norm decoder-only transformer shared by llama and qwen2 (and the attention half of
// deepseek): x += Attn(RMSNorm(x)); x += SwiGLU-FFN(RMSNorm(x)); logits = Out(RMSNorm(x)).
// Each architecture file binds its tensors into these structs and chooses the options.
#pragma once

#include <vector>

#include "model/activations.h"
#include "model/architecture.h"
#include "model/weights.h"

namespace fathom {

struct AttentionWeights {
  const float* norm = nullptr;  // [n_embd] attn_norm
  TensorView wq;                // [n_head * head_dim_k, n_embd] attn_q
  TensorView wk;                // [n_head_kv * head_dim_k, n_embd] attn_k
  TensorView wv;                // [n_head_kv * head_dim_v, n_embd] attn_v
  TensorView wo;                // [n_embd, n_head * head_dim_v] attn_output
  const float* bq = nullptr;    // [n_head * head_dim_k] attn_q.bias (qwen2), nullptr if absent
  const float* bk = nullptr;    // [n_head_kv * head_dim_k]
  const float* bv = nullptr;    // [n_head_kv * head_dim_v]
};

struct FfnWeights {
  const float* norm = nullptr;  // [n_embd] ffn_norm
  TensorView gate;              // [n_ff, n_embd] ffn_gate
  TensorView up;                // [n_ff, n_embd] ffn_up
  TensorView down;              // [n_embd, n_ff] ffn_down
};

// Scratch activations of one forward call, grown to the largest batch seen.
struct DenseScratch {
  Activations x;      // [n_tokens, n_embd] residual stream
  Activations xn;     // [n_tokens, n_embd] normalized input of a block
  Activations q;      // [n_tokens, n_head * head_dim_k]
  Activations k;      // [n_tokens, n_head_kv * head_dim_k]
  Activations v;      // [n_tokens, n_head_kv * head_dim_v]
  Activations attn;   // [n_tokens, n_head * head_dim_v] attention output before wo
  Activations proj;   // [n_tokens, n_embd] block output before the residual add
  Activations gate;   // [n_tokens, n_ff]
  Activations up;     // [n_tokens, n_ff]
  Activations last;   // [n_logits, n_embd] final hidden states of rows that want logits
};

// Token embedding and output head, shared by every architecture.
struct EmbeddingAndHead {
  TensorView token_embd;               // [n_vocab, n_embd]
  const float* output_norm = nullptr;  // [n_embd]
  TensorView output;                   // [n_vocab, n_embd]; token_embd when the file has no output.weight (tied)
};
Expected<EmbeddingAndHead> bind_embedding_and_head(const WeightBinder& binder, const ModelConfig& c,
                                                   std::vector<std::vector<float>>& f32_storage);
// s.x = the batch's token embeddings ([n_tokens, n_embd]); grows the residual scratch.
void embed_tokens(Backend& be, const ModelConfig& c, const EmbeddingAndHead& w, const Batch& batch, DenseScratch& s);
// Per-head K/V cache layout (llama, qwen2, deepseek).
KvCacheShape mha_kv_shape(const ModelConfig& c, int64_t n_ctx);

// Binds attn_{norm,q,k,v,output} (+ optional q/k/v biases) of layer il.
Expected<AttentionWeights> bind_attention(const WeightBinder& binder, const ModelConfig& c, int64_t il,
                                          std::vector<std::vector<float>>& f32_storage);
// Binds ffn_{norm,gate,up,down} of layer il with hidden size n_ff.
Expected<FfnWeights> bind_ffn(const WeightBinder& binder, const ModelConfig& c, int64_t il, int64_t n_ff,
                              std::vector<std::vector<float>>& f32_storage);

// Rope parameters from the config (linear and YaRN scaling).
RopeParams rope_params(const ModelConfig& c);
// The same rotation angles without a magnitude factor (YaRN's 1 + 0.1 ln s, or attn_factor):
// re-rotating a stored key must not scale it a second time.
RopeParams rotation_only(RopeParams rope);
// Rotates cached per-head K rows ([n_rows, n_head_kv * head_dim_k], RoPE at p) to p + delta.
void rotate_mha_keys(Backend& be, const ModelConfig& c, const RopeParams& rope, float* k_rows, int64_t n_rows, int32_t delta);

// x += Attn(RMSNorm(x)) for all tokens; writes this batch's K/V into the cache.
void attention_block(Backend& be, const ModelConfig& c, const RopeParams& rope, const AttentionWeights& w, int64_t layer,
                     const Batch& batch, KvCache& kv, DenseScratch& s);
// x += W_down · (silu(W_gate · RMSNorm(x)) * (W_up · RMSNorm(x))).
void ffn_block(Backend& be, const ModelConfig& c, const FfnWeights& w, int64_t n_tokens, DenseScratch& s);
// logits[r] = W_out · RMSNorm(x[row r]) for the rows flagged in batch.logits.
void output_block(Backend& be, const ModelConfig& c, const float* output_norm, const TensorView& output, const Batch& batch,
                  DenseScratch& s, float* logits);

}  // namespace fathom
