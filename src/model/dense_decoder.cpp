#include "model/dense_decoder.h"

#include <cmath>
#include <cstring>

namespace fathom {

namespace {

std::string layer_name(int64_t il, const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; }

void add_bias(Backend& be, float* y, const float* bias, int64_t n_tokens, int64_t n) {
  if (bias) be.add_bias(y, bias, n_tokens, n);
}

}  // namespace

Expected<EmbeddingAndHead> bind_embedding_and_head(const WeightBinder& b, const ModelConfig& c,
                                                   std::vector<std::vector<float>>& f32) {
  EmbeddingAndHead w;
  FATHOM_ASSIGN_OR_RETURN(w.token_embd, b.require("token_embd.weight", {c.n_embd, c.n_vocab}));
  FATHOM_ASSIGN_OR_RETURN(w.output_norm, b.require_f32("output_norm.weight", c.n_embd, f32));
  FATHOM_ASSIGN_OR_RETURN(w.output, b.optional("output.weight", {c.n_embd, c.n_vocab}));
  if (!w.output.data) w.output = w.token_embd;  // tied embeddings
  return w;
}

void embed_tokens(Backend& be, const ModelConfig& c, const EmbeddingAndHead& w, const Batch& batch, DenseScratch& s) {
  const int64_t n = batch.size();
  grow(s.x, n * c.n_embd);
  grow(s.xn, n * c.n_embd);
  grow(s.proj, n * c.n_embd);
  be.get_rows(w.token_embd, batch.tokens.data(), n, s.x.data());  // x: [n, n_embd]
}

KvCacheShape mha_kv_shape(const ModelConfig& c, int64_t n_ctx) {
  KvCacheShape s;
  s.n_layer = c.n_layer;
  s.k_width = c.n_head_kv * c.head_dim_k;
  s.v_width = c.n_head_kv * c.head_dim_v;
  s.n_ctx_max = n_ctx;
  return s;
}

Expected<AttentionWeights> bind_attention(const WeightBinder& b, const ModelConfig& c, int64_t il,
                                          std::vector<std::vector<float>>& f32) {
  AttentionWeights w;
  const int64_t q_dim = c.n_head * c.head_dim_k, k_dim = c.n_head_kv * c.head_dim_k, v_dim = c.n_head_kv * c.head_dim_v;
  FATHOM_ASSIGN_OR_RETURN(w.norm, b.require_f32(layer_name(il, "attn_norm.weight"), c.n_embd, f32));
  FATHOM_ASSIGN_OR_RETURN(w.wq, b.require(layer_name(il, "attn_q.weight"), {c.n_embd, q_dim}));
  FATHOM_ASSIGN_OR_RETURN(w.wk, b.require(layer_name(il, "attn_k.weight"), {c.n_embd, k_dim}));
  FATHOM_ASSIGN_OR_RETURN(w.wv, b.require(layer_name(il, "attn_v.weight"), {c.n_embd, v_dim}));
  FATHOM_ASSIGN_OR_RETURN(w.wo, b.require(layer_name(il, "attn_output.weight"), {c.n_head * c.head_dim_v, c.n_embd}));
  FATHOM_ASSIGN_OR_RETURN(w.bq, b.optional_f32(layer_name(il, "attn_q.bias"), q_dim, f32));
  FATHOM_ASSIGN_OR_RETURN(w.bk, b.optional_f32(layer_name(il, "attn_k.bias"), k_dim, f32));
  FATHOM_ASSIGN_OR_RETURN(w.bv, b.optional_f32(layer_name(il, "attn_v.bias"), v_dim, f32));
  return w;
}

Expected<FfnWeights> bind_ffn(const WeightBinder& b, const ModelConfig& c, int64_t il, int64_t n_ff,
                              std::vector<std::vector<float>>& f32) {
  FfnWeights w;
  FATHOM_ASSIGN_OR_RETURN(w.norm, b.require_f32(layer_name(il, "ffn_norm.weight"), c.n_embd, f32));
  FATHOM_ASSIGN_OR_RETURN(w.gate, b.require(layer_name(il, "ffn_gate.weight"), {c.n_embd, n_ff}));
  FATHOM_ASSIGN_OR_RETURN(w.up, b.require(layer_name(il, "ffn_up.weight"), {c.n_embd, n_ff}));
  FATHOM_ASSIGN_OR_RETURN(w.down, b.require(layer_name(il, "ffn_down.weight"), {n_ff, c.n_embd}));
  return w;
}

RopeParams rope_params(const ModelConfig& c) {
  RopeParams p;
  p.n_rot = c.n_rot;
  p.freq_base = c.rope_freq_base;
  p.mode = c.rope_type == RopeType::kNeox ? RopeMode::kNeox : RopeMode::kNormal;
  if (c.rope_scaling != RopeScaling::kNone) p.freq_scale = 1.0f / c.rope_scaling_factor;
  if (c.rope_scaling == RopeScaling::kYarn) {
    p.ext_factor = 1.0f;
    p.beta_fast = c.yarn_beta_fast;
    p.beta_slow = c.yarn_beta_slow;
    p.n_ctx_orig = c.rope_orig_ctx > 0 ? c.rope_orig_ctx : c.n_ctx_train;
  }
  return p;
}

RopeParams rotation_only(RopeParams rope) {
  rope.attn_factor = rope.ext_factor != 0.0f ? 1.0f / (1.0f + 0.1f * std::log(1.0f / rope.freq_scale)) : 1.0f;
  return rope;
}

void rotate_mha_keys(Backend& be, const ModelConfig& c, const RopeParams& rope, float* k_rows, int64_t n_rows, int32_t delta) {
  const std::vector<int32_t> positions(static_cast<size_t>(n_rows), delta);
  be.rope(k_rows, n_rows, c.n_head_kv, c.head_dim_k, positions.data(), rotation_only(rope));
}

void attention_block(Backend& be, const ModelConfig& c, const RopeParams& rope, const AttentionWeights& w, int64_t layer,
                     const Batch& batch, KvCache& kv, DenseScratch& s) {
  const int64_t n = batch.size();
  const int64_t q_dim = c.n_head * c.head_dim_k, k_dim = c.n_head_kv * c.head_dim_k, v_dim = c.n_head_kv * c.head_dim_v;
  grow(s.q, n * q_dim);
  grow(s.k, n * k_dim);
  grow(s.v, n * v_dim);
  grow(s.attn, n * c.n_head * c.head_dim_v);
  grow(s.proj, n * c.n_embd);
  be.rms_norm_matmul_batch(s.x.data(), w.norm, n, c.n_embd, c.rms_norm_eps, s.xn.data(),
                           {{w.wq, s.xn.data(), n, s.q.data()},                   // q: [n, n_head, hd_k]
                            {w.wk, s.xn.data(), n, s.k.data()},                   // k: [n, n_head_kv, hd_k]
                            {w.wv, s.xn.data(), n, s.v.data()}});                 // v: [n, n_head_kv, hd_v]
  add_bias(be, s.q.data(), w.bq, n, q_dim);
  add_bias(be, s.k.data(), w.bk, n, k_dim);
  add_bias(be, s.v.data(), w.bv, n, v_dim);
  be.rope(s.q.data(), n, c.n_head, c.head_dim_k, batch.positions.data(), rope);
  be.rope(s.k.data(), n, c.n_head_kv, c.head_dim_k, batch.positions.data(), rope);
  const AttentionBatch ab{batch.seq_ids.data(), batch.positions.data(), n};
  be.store_kv(kv, layer, ab, s.k.data(), s.v.data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim_k));
  be.attention(s.q.data(), kv, layer, ab, c.n_head, c.n_head_kv, c.head_dim_k, c.head_dim_v, scale, s.attn.data());
  be.matmul(w.wo, s.attn.data(), n, s.proj.data());                                // proj: [n, n_embd]
  be.add(s.x.data(), s.proj.data(), n * c.n_embd);
}

void ffn_block(Backend& be, const ModelConfig& c, const FfnWeights& w, int64_t n, DenseScratch& s) {
  const int64_t n_ff = w.gate.ne[1];
  grow(s.gate, n * n_ff);
  grow(s.up, n * n_ff);
  // gate, up: [n, n_ff]; proj: [n, n_embd]
  be.rms_norm_ffn(s.x.data(), w.norm, n, c.n_embd, c.rms_norm_eps, s.xn.data(), w.gate, w.up, w.down, s.gate.data(),
                  s.up.data(), s.proj.data());
  be.add(s.x.data(), s.proj.data(), n * c.n_embd);
}

void output_block(Backend& be, const ModelConfig& c, const float* output_norm, const TensorView& output, const Batch& batch,
                  DenseScratch& s, float* logits) {
  const int64_t n_out = batch.n_logits();
  if (n_out == 0) return;
  grow(s.last, n_out * c.n_embd);
  int64_t r = 0;
  for (int64_t t = 0; t < batch.size(); ++t) {
    if (!batch.logits[static_cast<size_t>(t)]) continue;
    StridedCopy row;  // s.last[r, :] = s.x[t, :]
    row.width = c.n_embd;
    be.copy_strided(s.x.data() + t * c.n_embd, s.last.data() + r * c.n_embd, row);
    ++r;
  }
  be.rms_norm(s.last.data(), output_norm, n_out, c.n_embd, c.rms_norm_eps, s.last.data());
  be.matmul(output, s.last.data(), n_out, logits);                                 // logits: [n_out, n_vocab]
}

}  // namespace fathom
