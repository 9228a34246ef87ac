#include "model/mla.h"

#include <algorithm>
#include <cmath>

#include "model/dense_decoder.h"
#include "quant/quant.h"

namespace fathom {

namespace {

std::string layer_name(int64_t il, const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; }

// Rows [first, first + n) of a (flattened) matrix as a 2-D view.
TensorView rows_of(const TensorView& t, int64_t first, int64_t n) {
  TensorView v = t;
  v.ne = {t.ne[0], n, 1, 1};
  v.n_dims = 2;
  v.data = t.row(first);
  return v;
}

// dst[t, :width] = src[t, offset : offset + width] for t < n (strided gather), and back.
void gather(Backend& be, const float* src, int64_t src_stride, int64_t offset, int64_t width, int64_t n, float* dst) {
  StridedCopy c;
  c.n_outer = n;
  c.width = width;
  c.src_outer = src_stride;
  c.dst_outer = width;
  be.copy_strided(src + offset, dst, c);
}
void scatter(Backend& be, const float* src, int64_t width, int64_t n, float* dst, int64_t dst_stride, int64_t offset) {
  StridedCopy c;
  c.n_outer = n;
  c.width = width;
  c.src_outer = width;
  c.dst_outer = dst_stride;
  be.copy_strided(src, dst + offset, c);
}
// Per head h < n_head and token t < n, `width` floats between token-major rows [t][h * head_stride
// + offset] (the heads of a projection) and head-major rows [h][t] (one product per head).
void to_heads(Backend& be, const float* src, int64_t head_stride, int64_t offset, int64_t n_head, int64_t n, int64_t width,
              float* dst) {
  StridedCopy c;
  c.n_outer = n_head;
  c.n_inner = n;
  c.width = width;
  c.src_outer = head_stride;
  c.src_inner = n_head * head_stride;
  c.dst_outer = n * width;
  c.dst_inner = width;
  be.copy_strided(src + offset, dst, c);
}
void from_heads(Backend& be, const float* src, int64_t n_head, int64_t n, int64_t width, float* dst) {
  StridedCopy c;
  c.n_outer = n_head;
  c.n_inner = n;
  c.width = width;
  c.src_outer = n * width;
  c.src_inner = width;
  c.dst_outer = width;
  c.dst_inner = n_head * width;
  be.copy_strided(src, dst, c);
}

}  // namespace

Expected<MlaWeights> bind_mla(const WeightBinder& b, const ModelConfig& c, int64_t il, std::vector<std::vector<float>>& f32) {
  MlaWeights w;
  const int64_t n_nope = c.head_dim_k - c.n_rot, q_dim = c.n_head * c.head_dim_k, r = c.kv_lora_rank;
  FATHOM_ASSIGN_OR_RETURN(w.norm, b.require_f32(layer_name(il, "attn_norm.weight"), c.n_embd, f32));
  if (c.q_lora_rank > 0) {
    FATHOM_ASSIGN_OR_RETURN(w.wq_a, b.require(layer_name(il, "attn_q_a.weight"), {c.n_embd, c.q_lora_rank}));
    FATHOM_ASSIGN_OR_RETURN(w.q_a_norm, b.require_f32(layer_name(il, "attn_q_a_norm.weight"), c.q_lora_rank, f32));
    FATHOM_ASSIGN_OR_RETURN(w.wq_b, b.require(layer_name(il, "attn_q_b.weight"), {c.q_lora_rank, q_dim}));
  } else {
    FATHOM_ASSIGN_OR_RETURN(w.wq, b.require(layer_name(il, "attn_q.weight"), {c.n_embd, q_dim}));
  }
  FATHOM_ASSIGN_OR_RETURN(w.wkv_a, b.require(layer_name(il, "attn_kv_a_mqa.weight"), {c.n_embd, r + c.n_rot}));
  FATHOM_ASSIGN_OR_RETURN(w.kv_a_norm, b.require_f32(layer_name(il, "attn_kv_a_norm.weight"), r, f32));
  FATHOM_ASSIGN_OR_RETURN(w.wo, b.require(layer_name(il, "attn_output.weight"), {c.n_head * c.head_dim_v, c.n_embd}));
  FATHOM_ASSIGN_OR_RETURN(TensorView k_b, b.optional(layer_name(il, "attn_k_b.weight"), {n_nope, r, c.n_head}));
  if (k_b.data) {
    // Split convention (newer GGUFs): W_kb^T and W_vb per head, ready for absorption.
    w.wk_b = k_b;
    FATHOM_ASSIGN_OR_RETURN(w.wv_b, b.require(layer_name(il, "attn_v_b.weight"), {r, c.head_dim_v, c.n_head}));
    w.wv_b_head_stride = c.head_dim_v;
    return w;
  }
  // Legacy convention: one attn_kv_b [n_head * (nope + v), kv_lora_rank]. The v rows are used in
  // place; the k rows must be transposed per head to map queries into latent space.
  FATHOM_ASSIGN_OR_RETURN(TensorView kv_b, b.require(layer_name(il, "attn_kv_b.weight"), {r, c.n_head * (n_nope + c.head_dim_v)}));
  const int64_t per_head = n_nope + c.head_dim_v;
  w.wv_b = rows_of(kv_b, n_nope, kv_b.ne[1] - n_nope);
  w.wv_b_head_stride = per_head;
  f32.emplace_back(static_cast<size_t>(c.n_head * r * n_nope));
  float* kt = f32.back().data();  // [n_head][kv_lora_rank][n_nope]
  std::vector<float> row(static_cast<size_t>(r));
  for (int64_t h = 0; h < c.n_head; ++h) {
    for (int64_t j = 0; j < n_nope; ++j) {
      quant::dequantize_row(kv_b.dtype, kv_b.row(h * per_head + j), row.data(), r);
      for (int64_t ci = 0; ci < r; ++ci) kt[(h * r + ci) * n_nope + j] = row[static_cast<size_t>(ci)];
    }
  }
  w.wk_b.name = layer_name(il, "attn_k_b.weight (from attn_kv_b)");
  w.wk_b.dtype = DType::F32;
  w.wk_b.ne = {n_nope, r, c.n_head, 1};
  w.wk_b.n_dims = 3;
  w.wk_b.data = kt;
  return w;
}

float mla_attention_scale(const ModelConfig& c) {
  float mscale = 1.0f;
  if (c.rope_scaling == RopeScaling::kYarn && c.rope_scaling_factor > 1.0f)
    mscale = 1.0f + c.yarn_log_multiplier * std::log(c.rope_scaling_factor);
  return mscale * mscale / std::sqrt(static_cast<float>(c.head_dim_k));
}

KvCacheShape mla_kv_shape(const ModelConfig& c, int64_t n_ctx) {
  KvCacheShape s;
  s.n_layer = c.n_layer;
  s.k_width = c.kv_lora_rank + c.n_rot;
  s.v_width = 0;
  s.n_ctx_max = n_ctx;
  return s;
}

RopeParams mla_rope_params(const ModelConfig& c) {
  RopeParams p = rope_params(c);
  // YaRN's magnitude factor (1 + 0.1 ln s) would scale q and k; DeepSeek folds its own mscale
  // into the attention scale instead, so cancel it here.
  if (p.ext_factor != 0.0f) p.attn_factor = 1.0f / (1.0f + 0.1f * std::log(1.0f / p.freq_scale));
  return p;
}

void rotate_mla_keys(Backend& be, const ModelConfig& c, const RopeParams& rope, float* rows, int64_t n_rows, int32_t delta) {
  const int64_t r = c.kv_lora_rank, n_rot = c.n_rot, row_w = r + n_rot;
  std::vector<float> k_pe(static_cast<size_t>(n_rows * n_rot));  // [n_rows, 1, n_rot]
  for (int64_t t = 0; t < n_rows; ++t) std::copy_n(rows + t * row_w + r, n_rot, k_pe.data() + t * n_rot);
  const std::vector<int32_t> positions(static_cast<size_t>(n_rows), delta);
  be.rope(k_pe.data(), n_rows, 1, n_rot, positions.data(), rotation_only(rope));
  for (int64_t t = 0; t < n_rows; ++t) std::copy_n(k_pe.data() + t * n_rot, n_rot, rows + t * row_w + r);
}

void mla_block(Backend& be, const ModelConfig& c, const RopeParams& rope, const MlaWeights& w, int64_t layer, const Batch& batch,
               KvCache& kv, const float* x, float* xn, float* proj, MlaScratch& s) {
  const int64_t n = batch.size(), r = c.kv_lora_rank, n_rot = c.n_rot, n_nope = c.head_dim_k - c.n_rot;
  const int64_t n_head = c.n_head, hd_k = c.head_dim_k, hd_v = c.head_dim_v, row_w = r + n_rot;
  grow(s.q, n * n_head * hd_k);
  grow(s.kv_a, n * row_w);
  grow(s.q_nope, n_head * n * std::max(n_nope, n_rot));
  grow(s.q_abs, n * n_head * r);
  grow(s.q_pe, n * n_head * n_rot);
  grow(s.head_in, n_head * n * std::max(r, n_rot));
  grow(s.head_out, n_head * n * hd_v);
  grow(s.lat, n * n_head * r);
  grow(s.attn, n * n_head * hd_v);
  // The projections of the normalized x together (xn: [n, n_embd] scratch): q (or its low-rank
  // a part) and the cache row's [c_kv | k_pe].
  if (w.wq_a.data) {
    grow(s.q_a, n * c.q_lora_rank);
    be.rms_norm_matmul_batch(x, w.norm, n, c.n_embd, c.rms_norm_eps, xn,
                             {{w.wq_a, xn, n, s.q_a.data()}, {w.wkv_a, xn, n, s.kv_a.data()}});  // [n, q_lora_rank], [n, r + n_rot]
    be.rms_norm(s.q_a.data(), w.q_a_norm, n, c.q_lora_rank, c.rms_norm_eps, s.q_a.data());
    be.matmul(w.wq_b, s.q_a.data(), n, s.q.data());                                      // q: [n, n_head, hd_k]
  } else {
    be.rms_norm_matmul_batch(x, w.norm, n, c.n_embd, c.rms_norm_eps, xn,
                             {{w.wq, xn, n, s.q.data()}, {w.wkv_a, xn, n, s.kv_a.data()}});
  }
  // Cache row = [RMSNorm(c_kv) | RoPE(k_pe)].
  gather(be, s.kv_a.data(), row_w, 0, r, n, s.head_in.data());
  be.rms_norm(s.head_in.data(), w.kv_a_norm, n, r, c.rms_norm_eps, s.head_in.data());
  scatter(be, s.head_in.data(), r, n, s.kv_a.data(), row_w, 0);
  gather(be, s.kv_a.data(), row_w, r, n_rot, n, s.q_nope.data());                       // k_pe: [n, 1, n_rot]
  be.rope(s.q_nope.data(), n, 1, n_rot, batch.positions.data(), rope);
  scatter(be, s.q_nope.data(), n_rot, n, s.kv_a.data(), row_w, r);
  const AttentionBatch ab{batch.seq_ids.data(), batch.positions.data(), n};
  be.store_kv(kv, layer, ab, s.kv_a.data(), nullptr);
  // Queries: rope part rotated per head; nope part absorbed into latent space per head (all
  // heads' products in one batch: head-major buffers).
  {
    StridedCopy pe;  // q_pe[t, h, :] = q[t, h, n_nope:]
    pe.n_outer = n;
    pe.n_inner = n_head;
    pe.width = n_rot;
    pe.src_outer = n_head * hd_k;
    pe.src_inner = hd_k;
    pe.dst_outer = n_head * n_rot;
    pe.dst_inner = n_rot;
    be.copy_strided(s.q.data() + n_nope, s.q_pe.data(), pe);
  }
  to_heads(be, s.q.data(), hd_k, 0, n_head, n, n_nope, s.q_nope.data());               // [n_head][n, n_nope]
  std::vector<MatmulJob> jobs(static_cast<size_t>(n_head));
  for (int64_t h = 0; h < n_head; ++h)
    jobs[static_cast<size_t>(h)] = {rows_of(w.wk_b, h * r, r), s.q_nope.data() + h * n * n_nope, n, s.head_in.data() + h * n * r};
  be.matmul_batch(jobs);                                                                // [n_head][n, r]
  from_heads(be, s.head_in.data(), n_head, n, r, s.q_abs.data());
  be.rope(s.q_pe.data(), n, n_head, n_rot, batch.positions.data(), rope);
  be.mla_attention(s.q_abs.data(), s.q_pe.data(), kv, layer, ab, n_head, r, n_rot, mla_attention_scale(c), s.lat.data());
  // Out of latent space per head: o_h = W_vb[h] · lat_h, all heads in one batch.
  to_heads(be, s.lat.data(), r, 0, n_head, n, r, s.head_in.data());                    // [n_head][n, r]
  for (int64_t h = 0; h < n_head; ++h)
    jobs[static_cast<size_t>(h)] = {rows_of(w.wv_b, h * w.wv_b_head_stride, hd_v), s.head_in.data() + h * n * r, n,
                                    s.head_out.data() + h * n * hd_v};
  be.matmul_batch(jobs);
  from_heads(be, s.head_out.data(), n_head, n, hd_v, s.attn.data());
  be.matmul(w.wo, s.attn.data(), n, proj);                                               // [n, n_embd]
}

}  // namespace fathom
