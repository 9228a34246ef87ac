#include "model/reference.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "gguf/gguf.h"
#include "model/reference_internal.h"
#include "quant/quant.h"

namespace fathom {

namespace reference {

Status check_tensor(const gguf::TensorInfo& t, const std::vector<int64_t>& ne) {
  const TensorView& v = t.view;
  bool same = true;
  for (size_t i = 0; i < 4; ++i) same = same && v.ne[i] == (i < ne.size() ? ne[i] : 1);
  if (!same) {
    std::string want;
    for (int64_t n : ne) want += (want.empty() ? "" : ", ") + std::to_string(n);
    return error(ErrorCode::kInvalidFile, strprintf("tensor %s has shape %s, expected [%s]", v.name.c_str(),
                                                    v.shape_string().c_str(), want.c_str()));
  }
  if (!quant::can_dequantize(v.dtype))
    return error(ErrorCode::kUnsupported,
                 strprintf("tensor %s: cannot dequantize type %s", v.name.c_str(), dtype_name(v.dtype)));
  return Status::ok();
}

Expected<Matrix> load(const gguf::GgufFile& file, const std::string& name, const std::vector<int64_t>& ne) {
  const gguf::TensorInfo* t = file.find_tensor(name);
  if (t == nullptr) return error(ErrorCode::kNotFound, "missing tensor " + name);
  FATHOM_RETURN_IF_ERROR(check_tensor(*t, ne));
  Matrix m;
  m.n_cols = ne[0];
  m.n_rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) m.n_rows *= ne[i];
  m.data.resize(static_cast<size_t>(m.n_cols * m.n_rows));
  for (int64_t r = 0; r < m.n_rows; ++r)
    quant::dequantize_row(t->view.dtype, t->view.row(r), m.data.data() + r * m.n_cols, m.n_cols);
  return m;
}

bool has_tensor(const gguf::GgufFile& file, const std::string& name) { return file.find_tensor(name) != nullptr; }

std::string layer_tensor(int64_t il, const char* suffix) {
  return strprintf("blk.%lld.%s", static_cast<long long>(il), suffix);
}

std::vector<float> matvec_rows(const Matrix& w, int64_t first_row, int64_t n_rows, const std::vector<float>& x) {
  std::vector<float> y(static_cast<size_t>(n_rows));
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* wr = w.row(first_row + r);
    double sum = 0.0;
    for (int64_t c = 0; c < w.n_cols; ++c) sum += static_cast<double>(wr[c]) * x[c];
    y[r] = static_cast<float>(sum);
  }
  return y;
}

std::vector<float> matvec(const Matrix& w, const std::vector<float>& x) { return matvec_rows(w, 0, w.n_rows, x); }

std::vector<float> rms_norm(const std::vector<float>& x, const Matrix& weight, float eps) {
  double sum_sq = 0.0;
  for (float v : x) sum_sq += static_cast<double>(v) * v;
  const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(x.size()) + eps);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(x[i] * inv_rms * weight.data[i]);
  return y;
}

float silu(float x) { return static_cast<float>(x / (1.0 + std::exp(-static_cast<double>(x)))); }

void softmax_weighted_sum(std::vector<double>& score, const Activations& v, int64_t offset, int64_t width, float* out) {
  double max_score = -INFINITY;
  for (double sc : score) max_score = std::max(max_score, sc);
  double denom = 0.0;
  for (double& sc : score) denom += (sc = std::exp(sc - max_score));
  for (int64_t d = 0; d < width; ++d) {
    double acc = 0.0;
    for (size_t s = 0; s < score.size(); ++s) acc += score[s] / denom * v[s][static_cast<size_t>(offset + d)];
    out[d] = static_cast<float>(acc);
  }
}

void add_in_place(std::vector<float>& x, const std::vector<float>& y) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
}

void rope(float* x, int64_t n_rot, int64_t pos, bool neox, const std::vector<double>& inv_freq) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double angle = static_cast<double>(pos) * inv_freq[i];
    const double c = std::cos(angle), s = std::sin(angle);
    const int64_t i0 = neox ? i : 2 * i;
    const int64_t i1 = neox ? i + n_rot / 2 : 2 * i + 1;
    const double x0 = x[i0], x1 = x[i1];
    x[i0] = static_cast<float>(x0 * c - x1 * s);
    x[i1] = static_cast<float>(x0 * s + x1 * c);
  }
}

std::vector<double> rope_inv_freq(double freq_base, int64_t n_rot) {
  std::vector<double> inv_freq(static_cast<size_t>(n_rot / 2));
  for (int64_t i = 0; i < n_rot / 2; ++i)
    inv_freq[i] = std::pow(freq_base, -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
  return inv_freq;
}

Expected<Activations> embed(const gguf::GgufFile& file, const ModelConfig& c, const std::vector<int32_t>& tokens) {
  const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight");
  if (embd == nullptr) return error(ErrorCode::kNotFound, "missing tensor token_embd.weight");
  FATHOM_RETURN_IF_ERROR(check_tensor(*embd, {c.n_embd, c.n_vocab}));
  Activations x(tokens.size(), std::vector<float>(static_cast<size_t>(c.n_embd)));
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab)
      return error(ErrorCode::kOutOfRange, strprintf("token %d at position %zu is outside the vocabulary [0, %lld)",
                                                     tokens[t], t, static_cast<long long>(c.n_vocab)));
    quant::dequantize_row(embd->view.dtype, embd->view.row(tokens[t]), x[t].data(), c.n_embd);
  }
  return x;
}

Expected<std::vector<float>> output_logits(const gguf::GgufFile& file, const ModelConfig& c, Activations& x) {
  // Final norm, then logits[t][j] = output row j . norm(x[t]); output row by row so a large
  // vocabulary never needs the whole matrix in float.
  const int64_t n_tokens = static_cast<int64_t>(x.size()), n_embd = c.n_embd;
  FATHOM_ASSIGN_OR_RETURN(Matrix out_norm, load(file, "output_norm.weight", {n_embd}));
  for (int64_t t = 0; t < n_tokens; ++t) x[t] = rms_norm(x[t], out_norm, c.rms_norm_eps);
  const gguf::TensorInfo* output = file.find_tensor("output.weight");
  if (output == nullptr) output = file.find_tensor("token_embd.weight");  // tied embeddings
  if (output == nullptr) return error(ErrorCode::kNotFound, "missing tensor token_embd.weight");
  FATHOM_RETURN_IF_ERROR(check_tensor(*output, {n_embd, c.n_vocab}));
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

namespace {

void add_bias(std::vector<float>& x, const Matrix& bias) {
  if (bias.data.empty()) return;
  for (size_t i = 0; i < x.size(); ++i) x[i] += bias.data[i];
}

}  // namespace

Status attention_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, const std::vector<double>& inv_freq,
                       bool neox, Activations& x) {
  const int64_t n_tokens = static_cast<int64_t>(x.size());
  const int64_t hd_k = c.head_dim_k > 0 ? c.head_dim_k : c.n_embd / c.n_head;  // per-head query/key size
  const int64_t hd_v = c.head_dim_v > 0 ? c.head_dim_v : hd_k;                // per-head value size
  const int64_t n_rot = c.n_rot > 0 ? c.n_rot : hd_k;
  const int64_t group = c.n_head / c.n_head_kv;  // query heads per kv head
  const int64_t n_q = c.n_head * hd_k, n_k = c.n_head_kv * hd_k, n_v = c.n_head_kv * hd_v;
  const double attn_scale = 1.0 / std::sqrt(static_cast<double>(hd_k));

  FATHOM_ASSIGN_OR_RETURN(Matrix norm, load(file, layer_tensor(il, "attn_norm.weight"), {c.n_embd}));
  FATHOM_ASSIGN_OR_RETURN(Matrix wq, load(file, layer_tensor(il, "attn_q.weight"), {c.n_embd, n_q}));
  FATHOM_ASSIGN_OR_RETURN(Matrix wk, load(file, layer_tensor(il, "attn_k.weight"), {c.n_embd, n_k}));
  FATHOM_ASSIGN_OR_RETURN(Matrix wv, load(file, layer_tensor(il, "attn_v.weight"), {c.n_embd, n_v}));
  FATHOM_ASSIGN_OR_RETURN(Matrix wo, load(file, layer_tensor(il, "attn_output.weight"), {c.n_head * hd_v, c.n_embd}));
  Matrix bq, bk, bv;  // qwen2 biases, empty when absent
  if (has_tensor(file, layer_tensor(il, "attn_q.bias"))) {
    FATHOM_ASSIGN_OR_RETURN(bq, load(file, layer_tensor(il, "attn_q.bias"), {n_q}));
    FATHOM_ASSIGN_OR_RETURN(bk, load(file, layer_tensor(il, "attn_k.bias"), {n_k}));
    FATHOM_ASSIGN_OR_RETURN(bv, load(file, layer_tensor(il, "attn_v.bias"), {n_v}));
  }

  // q[t]: [n_head * hd_k]; k[t]: [n_head_kv * hd_k]; v[t]: [n_head_kv * hd_v].
  Activations q(n_tokens), k(n_tokens), v(n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const std::vector<float> h = rms_norm(x[t], norm, c.rms_norm_eps);
    q[t] = matvec(wq, h);
    k[t] = matvec(wk, h);
    v[t] = matvec(wv, h);
    add_bias(q[t], bq);
    add_bias(k[t], bk);
    add_bias(v[t], bv);
    for (int64_t hq = 0; hq < c.n_head; ++hq) rope(q[t].data() + hq * hd_k, n_rot, t, neox, inv_freq);
    for (int64_t hk = 0; hk < c.n_head_kv; ++hk) rope(k[t].data() + hk * hd_k, n_rot, t, neox, inv_freq);
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> attn(static_cast<size_t>(c.n_head * hd_v));  // [n_head * hd_v] concatenated heads
    for (int64_t hq = 0; hq < c.n_head; ++hq) {
      const int64_t hk = hq / group;
      const float* qh = q[t].data() + hq * hd_k;
      // Causal: token t attends to positions 0..t.
      std::vector<double> score(static_cast<size_t>(t + 1));
      for (int64_t s = 0; s <= t; ++s) {
        const float* kh = k[s].data() + hk * hd_k;
        double dot = 0.0;
        for (int64_t d = 0; d < hd_k; ++d) dot += static_cast<double>(qh[d]) * kh[d];
        score[s] = dot * attn_scale;
      }
      softmax_weighted_sum(score, v, hk * hd_v, hd_v, attn.data() + hq * hd_v);
    }
    add_in_place(x[t], matvec(wo, attn));
  }
  return Status::ok();
}

std::vector<float> swiglu(const Matrix& gate, const Matrix& up, const Matrix& down, int64_t expert, int64_t n_ff,
                          const std::vector<float>& h) {
  std::vector<float> g = matvec_rows(gate, expert * n_ff, n_ff, h);
  const std::vector<float> u = matvec_rows(up, expert * n_ff, n_ff, h);
  for (int64_t i = 0; i < n_ff; ++i) g[i] = silu(g[i]) * u[i];
  const int64_t n_out = gate.n_cols;  // down maps back to the FFN's input size
  return matvec_rows(down, expert * n_out, n_out, g);
}

Status dense_ffn_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, int64_t n_ff, Activations& x) {
  FATHOM_ASSIGN_OR_RETURN(Matrix norm, load(file, layer_tensor(il, "ffn_norm.weight"), {c.n_embd}));
  FATHOM_ASSIGN_OR_RETURN(Matrix gate, load(file, layer_tensor(il, "ffn_gate.weight"), {c.n_embd, n_ff}));
  FATHOM_ASSIGN_OR_RETURN(Matrix up, load(file, layer_tensor(il, "ffn_up.weight"), {c.n_embd, n_ff}));
  FATHOM_ASSIGN_OR_RETURN(Matrix down, load(file, layer_tensor(il, "ffn_down.weight"), {n_ff, c.n_embd}));
  for (std::vector<float>& xt : x) add_in_place(xt, swiglu(gate, up, down, 0, n_ff, rms_norm(xt, norm, c.rms_norm_eps)));
  return Status::ok();
}

}  // namespace reference

Expected<std::vector<float>> reference_forward(const gguf::GgufFile& file, const ModelConfig& c,
                                               const std::vector<int32_t>& tokens, ReferenceRouting* routing) {
  using namespace reference;
  if (c.arch == Arch::kDeepseek || c.arch == Arch::kDeepseek2) return forward_deepseek(file, c, tokens, routing);
  if (c.arch != Arch::kLlama && c.arch != Arch::kQwen2)
    return error(ErrorCode::kUnsupported,
                 strprintf("reference_forward: architecture %s is not implemented", arch_name(c.arch)));
  if (c.rope_scaling == RopeScaling::kYarn)
    return error(ErrorCode::kUnsupported, "reference_forward: YaRN rope scaling is implemented for deepseek2 only");
  if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    return error(ErrorCode::kInvalidFile, strprintf("head_count %lld is not a multiple of head_count_kv %lld",
                                                    static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv)));
  const int64_t hd_k = c.head_dim_k > 0 ? c.head_dim_k : c.n_embd / c.n_head;
  const int64_t n_rot = c.n_rot > 0 ? c.n_rot : hd_k;
  // Pair layout follows the architecture, as llama.cpp's llama_model_rope_type does: llama's
  // converter permutes Q/K into interleaved pairs, qwen2 keeps HF's rotate-half layout.
  const bool neox = c.arch == Arch::kQwen2;
  // Pair i turns by pos * base^(-2i/n_rot), divided by the linear scaling factor and by the
  // llama3-style per-pair rope_freqs when the file has them.
  std::vector<double> inv_freq = rope_inv_freq(c.rope_freq_base, n_rot);
  if (c.rope_scaling == RopeScaling::kLinear && c.rope_scaling_factor > 0)
    for (double& f : inv_freq) f /= c.rope_scaling_factor;
  if (has_tensor(file, "rope_freqs.weight")) {
    FATHOM_ASSIGN_OR_RETURN(Matrix ff, load(file, "rope_freqs.weight", {n_rot / 2}));
    for (int64_t i = 0; i < n_rot / 2; ++i) inv_freq[i] /= ff.data[i];
  }

  FATHOM_ASSIGN_OR_RETURN(Activations x, embed(file, c, tokens));  // [n_tokens][n_embd] residual stream
  for (int64_t il = 0; il < c.n_layer; ++il) {
    FATHOM_RETURN_IF_ERROR(attention_layer(file, c, il, inv_freq, neox, x));
    FATHOM_RETURN_IF_ERROR(dense_ffn_layer(file, c, il, c.n_ff, x));
  }
  return output_logits(file, c, x);
}

}  // namespace fathom
