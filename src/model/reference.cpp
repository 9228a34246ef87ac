#include "model/reference.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "gguf/gguf.h"
#include "quant/quant.h"

namespace fathom {

namespace {

// A weight dequantized to float: n_rows rows of n_cols values (n_cols = ne[0], the input size).
struct Matrix {
  std::vector<float> data;  // [n_rows, n_cols] row-major
  int64_t n_cols = 0;       // ne[0]
  int64_t n_rows = 0;       // ne[1] (1 for vectors)
  const float* row(int64_t r) const { return data.data() + r * n_cols; }
};

Status check_tensor(const gguf::TensorInfo& t, int64_t n_cols, int64_t n_rows) {
  const TensorView& v = t.view;
  if (v.ne[0] != n_cols || v.ne[1] != n_rows || v.ne[2] != 1 || v.ne[3] != 1)
    return error(ErrorCode::kInvalidFile, strprintf("tensor %s has shape %s, expected [%lld, %lld]", v.name.c_str(),
                                                    v.shape_string().c_str(), static_cast<long long>(n_cols),
                                                    static_cast<long long>(n_rows)));
  if (!quant::can_dequantize(v.dtype))
    return error(ErrorCode::kUnsupported,
                 strprintf("tensor %s: cannot dequantize type %s", v.name.c_str(), dtype_name(v.dtype)));
  return Status::ok();
}

// Dequantizes tensor `name`, which must have ne = {n_cols, n_rows} (n_rows 1 for a vector).
Expected<Matrix> load(const gguf::GgufFile& file, const std::string& name, int64_t n_cols, int64_t n_rows) {
  const gguf::TensorInfo* t = file.find_tensor(name);
  if (t == nullptr) return error(ErrorCode::kNotFound, "missing tensor " + name);
  FATHOM_RETURN_IF_ERROR(check_tensor(*t, n_cols, n_rows));
  Matrix m;
  m.n_cols = n_cols;
  m.n_rows = n_rows;
  m.data.resize(static_cast<size_t>(n_cols * n_rows));
  for (int64_t r = 0; r < n_rows; ++r) quant::dequantize_row(t->view.dtype, t->view.row(r), m.data.data() + r * n_cols, n_cols);
  return m;
}

// y = W x: y[r] = sum_c W[r, c] * x[c].
std::vector<float> matvec(const Matrix& w, const std::vector<float>& x) {
  std::vector<float> y(static_cast<size_t>(w.n_rows));
  for (int64_t r = 0; r < w.n_rows; ++r) {
    const float* wr = w.row(r);
    double sum = 0.0;
    for (int64_t c = 0; c < w.n_cols; ++c) sum += static_cast<double>(wr[c]) * x[c];
    y[r] = static_cast<float>(sum);
  }
  return y;
}

// RMSNorm: x / sqrt(mean(x^2) + eps) * weight.
std::vector<float> rms_norm(const std::vector<float>& x, const Matrix& weight, float eps) {
  double sum_sq = 0.0;
  for (float v : x) sum_sq += static_cast<double>(v) * v;
  const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(x.size()) + eps);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(x[i] * inv_rms * weight.data[i]);
  return y;
}

float silu(float x) { return static_cast<float>(x / (1.0 + std::exp(-static_cast<double>(x)))); }

// Rotary embedding of one head in place. Pair i (i < n_rot/2) is rotated by
// angle = pos' * base^(-2i/n_rot) / freq_factor[i], where pos' = pos / linear scaling factor.
// Normal pairs are (x[2i], x[2i+1]); NEOX pairs are (x[i], x[i + n_rot/2]). Dims >= n_rot pass.
void rope(float* x, int64_t n_rot, int64_t pos, bool neox, double freq_base, double pos_scale,
          const std::vector<float>& freq_factors) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    double angle = pos * pos_scale * std::pow(freq_base, -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (!freq_factors.empty()) angle /= freq_factors[i];
    const double c = std::cos(angle), s = std::sin(angle);
    const int64_t i0 = neox ? i : 2 * i;
    const int64_t i1 = neox ? i + n_rot / 2 : 2 * i + 1;
    const double x0 = x[i0], x1 = x[i1];
    x[i0] = static_cast<float>(x0 * c - x1 * s);
    x[i1] = static_cast<float>(x0 * s + x1 * c);
  }
}

void add_in_place(std::vector<float>& x, const std::vector<float>& y) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
}

// One decoder layer's weights, dequantized.
struct LayerWeights {
  Matrix attn_norm;    // [n_embd]
  Matrix wq, wk, wv;   // [n_head*hd_k, n_embd], [n_head_kv*hd_k, n_embd], [n_head_kv*hd_v, n_embd]
  Matrix bq, bk, bv;   // qwen2 biases, same rows as wq/wk/wv; empty when absent
  Matrix wo;           // [n_embd, n_head*hd_v]
  Matrix ffn_norm;     // [n_embd]
  Matrix w_gate, w_up; // [n_ff, n_embd]
  Matrix w_down;       // [n_embd, n_ff]
};

Expected<LayerWeights> load_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, int64_t hd_k,
                                  int64_t hd_v) {
  const std::string p = strprintf("blk.%lld.", static_cast<long long>(il));
  const int64_t n_q = c.n_head * hd_k, n_k = c.n_head_kv * hd_k, n_v = c.n_head_kv * hd_v;
  LayerWeights w;
  FATHOM_ASSIGN_OR_RETURN(w.attn_norm, load(file, p + "attn_norm.weight", c.n_embd, 1));
  FATHOM_ASSIGN_OR_RETURN(w.wq, load(file, p + "attn_q.weight", c.n_embd, n_q));
  FATHOM_ASSIGN_OR_RETURN(w.wk, load(file, p + "attn_k.weight", c.n_embd, n_k));
  FATHOM_ASSIGN_OR_RETURN(w.wv, load(file, p + "attn_v.weight", c.n_embd, n_v));
  if (file.find_tensor(p + "attn_q.bias") != nullptr) {
    FATHOM_ASSIGN_OR_RETURN(w.bq, load(file, p + "attn_q.bias", n_q, 1));
    FATHOM_ASSIGN_OR_RETURN(w.bk, load(file, p + "attn_k.bias", n_k, 1));
    FATHOM_ASSIGN_OR_RETURN(w.bv, load(file, p + "attn_v.bias", n_v, 1));
  }
  FATHOM_ASSIGN_OR_RETURN(w.wo, load(file, p + "attn_output.weight", c.n_head * hd_v, c.n_embd));
  FATHOM_ASSIGN_OR_RETURN(w.ffn_norm, load(file, p + "ffn_norm.weight", c.n_embd, 1));
  FATHOM_ASSIGN_OR_RETURN(w.w_gate, load(file, p + "ffn_gate.weight", c.n_embd, c.n_ff));
  FATHOM_ASSIGN_OR_RETURN(w.w_up, load(file, p + "ffn_up.weight", c.n_embd, c.n_ff));
  FATHOM_ASSIGN_OR_RETURN(w.w_down, load(file, p + "ffn_down.weight", c.n_ff, c.n_embd));
  return w;
}

void add_bias(std::vector<float>& x, const Matrix& bias) {
  if (bias.data.empty()) return;
  for (size_t i = 0; i < x.size(); ++i) x[i] += bias.data[i];
}

}  // namespace

Expected<std::vector<float>> reference_forward(const gguf::GgufFile& file, const ModelConfig& c,
                                               const std::vector<int32_t>& tokens) {
  if (c.arch != Arch::kLlama && c.arch != Arch::kQwen2)
    return error(ErrorCode::kUnsupported,
                 strprintf("reference_forward: architecture %s is not implemented (llama, qwen2)", arch_name(c.arch)));
  if (c.rope_scaling == RopeScaling::kYarn)
    return error(ErrorCode::kUnsupported, "reference_forward: YaRN rope scaling is not implemented yet");  // TODO
  if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    return error(ErrorCode::kInvalidFile, strprintf("head_count %lld is not a multiple of head_count_kv %lld",
                                                    static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv)));
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());
  const int64_t n_embd = c.n_embd;
  const int64_t hd_k = c.head_dim_k > 0 ? c.head_dim_k : n_embd / c.n_head;  // per-head query/key size
  const int64_t hd_v = c.head_dim_v > 0 ? c.head_dim_v : hd_k;                // per-head value size
  const int64_t n_rot = c.n_rot > 0 ? c.n_rot : hd_k;
  const int64_t group = c.n_head / c.n_head_kv;  // query heads per kv head
  // Pair layout follows the architecture, as llama.cpp's llama_model_rope_type does: llama's
  // converter permutes Q/K into interleaved pairs, qwen2 keeps HF's rotate-half layout.
  const bool neox = c.arch == Arch::kQwen2;
  const double pos_scale = c.rope_scaling == RopeScaling::kLinear && c.rope_scaling_factor > 0
                               ? 1.0 / c.rope_scaling_factor : 1.0;
  const double attn_scale = 1.0 / std::sqrt(static_cast<double>(hd_k));

  std::vector<float> freq_factors;  // [n_rot/2] llama3-style per-pair divisors, when the file has them
  if (file.find_tensor("rope_freqs.weight") != nullptr) {
    FATHOM_ASSIGN_OR_RETURN(Matrix ff, load(file, "rope_freqs.weight", n_rot / 2, 1));
    freq_factors = std::move(ff.data);
  }

  // Token embedding: x[t] = token_embd row tokens[t].
  const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight");
  if (embd == nullptr) return error(ErrorCode::kNotFound, "missing tensor token_embd.weight");
  FATHOM_RETURN_IF_ERROR(check_tensor(*embd, n_embd, c.n_vocab));
  std::vector<std::vector<float>> x(n_tokens, std::vector<float>(n_embd));  // [n_tokens][n_embd] residual stream
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab)
      return error(ErrorCode::kOutOfRange, strprintf("token %d at position %lld is outside the vocabulary [0, %lld)",
                                                     tokens[t], static_cast<long long>(t), static_cast<long long>(c.n_vocab)));
    quant::dequantize_row(embd->view.dtype, embd->view.row(tokens[t]), x[t].data(), n_embd);
  }

  for (int64_t il = 0; il < c.n_layer; ++il) {
    FATHOM_ASSIGN_OR_RETURN(LayerWeights w, load_layer(file, c, il, hd_k, hd_v));

    // Self-attention. q[t]: [n_head * hd_k]; k[t]: [n_head_kv * hd_k]; v[t]: [n_head_kv * hd_v].
    std::vector<std::vector<float>> q(n_tokens), k(n_tokens), v(n_tokens);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const std::vector<float> h = rms_norm(x[t], w.attn_norm, c.rms_norm_eps);
      q[t] = matvec(w.wq, h);
      k[t] = matvec(w.wk, h);
      v[t] = matvec(w.wv, h);
      add_bias(q[t], w.bq);
      add_bias(k[t], w.bk);
      add_bias(v[t], w.bv);
      for (int64_t hq = 0; hq < c.n_head; ++hq)
        rope(q[t].data() + hq * hd_k, n_rot, t, neox, c.rope_freq_base, pos_scale, freq_factors);
      for (int64_t hk = 0; hk < c.n_head_kv; ++hk)
        rope(k[t].data() + hk * hd_k, n_rot, t, neox, c.rope_freq_base, pos_scale, freq_factors);
    }
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::vector<float> attn(static_cast<size_t>(c.n_head * hd_v));  // [n_head * hd_v] concatenated heads
      for (int64_t hq = 0; hq < c.n_head; ++hq) {
        const int64_t hk = hq / group;
        const float* qh = q[t].data() + hq * hd_k;
        // Causal: token t attends to positions 0..t.
        std::vector<double> score(static_cast<size_t>(t + 1));
        double max_score = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          const float* kh = k[s].data() + hk * hd_k;
          double dot = 0.0;
          for (int64_t d = 0; d < hd_k; ++d) dot += static_cast<double>(qh[d]) * kh[d];
          score[s] = dot * attn_scale;
          max_score = std::max(max_score, score[s]);
        }
        double denom = 0.0;
        for (double& sc : score) denom += (sc = std::exp(sc - max_score));
        for (int64_t d = 0; d < hd_v; ++d) {
          double acc = 0.0;
          for (int64_t s = 0; s <= t; ++s) acc += score[s] / denom * v[s][hk * hd_v + d];
          attn[hq * hd_v + d] = static_cast<float>(acc);
        }
      }
      add_in_place(x[t], matvec(w.wo, attn));

      // SwiGLU feed-forward: down(silu(gate(h)) * up(h)).
      const std::vector<float> h = rms_norm(x[t], w.ffn_norm, c.rms_norm_eps);
      std::vector<float> gate = matvec(w.w_gate, h);
      const std::vector<float> up = matvec(w.w_up, h);
      for (int64_t i = 0; i < c.n_ff; ++i) gate[i] = silu(gate[i]) * up[i];
      add_in_place(x[t], matvec(w.w_down, gate));
    }
  }

  // Final norm, then logits[t][j] = output row j . norm(x[t]); output row by row so a large
  // vocabulary never needs the whole matrix in float.
  FATHOM_ASSIGN_OR_RETURN(Matrix out_norm, load(file, "output_norm.weight", n_embd, 1));
  for (int64_t t = 0; t < n_tokens; ++t) x[t] = rms_norm(x[t], out_norm, c.rms_norm_eps);
  const gguf::TensorInfo* output = file.find_tensor("output.weight");
  if (output == nullptr) output = embd;  // tied embeddings
  FATHOM_RETURN_IF_ERROR(check_tensor(*output, n_embd, c.n_vocab));
  std::vector<float> logits(static_cast<size_t>(n_tokens * c.n_vocab));  // [n_tokens, n_vocab]
  std::vector<float> row(static_cast<size_t>(n_embd));                   // one output row, dequantized
  for (int64_t j = 0; j < c.n_vocab; ++j) {
    quant::dequantize_row(output->view.dtype, output->view.row(j), row.data(), n_embd);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double dot = 0.0;
      for (int64_t d = 0; d < n_embd; ++d) dot += static_cast<double>(row[d]) * x[t][d];
      logits[t * c.n_vocab + j] = static_cast<float>(dot);
    }
  }
  return logits;
}

}  // namespace fathom
