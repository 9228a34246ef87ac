// Internal to reference*.cpp: the building blocks of the naive FP32 reference forward pass
// (dequantized weights, plain loops, double accumulation), shared by the dense architectures
// (reference.cpp) and the DeepSeek ones (reference_deepseek.cpp). Tests only, never the engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/reference.h"

namespace fathom::gguf {
class GgufFile;
struct TensorInfo;
}  // namespace fathom::gguf

namespace fathom::reference {

// A weight dequantized to float: n_rows rows of n_cols values (n_cols = ne[0], the input size;
// n_rows = ne[1] * ne[2], so a 3-D stack of matrices is its matrices' rows one after another).
struct Matrix {
  std::vector<float> data;  // [n_rows, n_cols] row-major
  int64_t n_cols = 0;       // ne[0]
  int64_t n_rows = 0;       // ne[1] * ne[2] (1 for vectors)
  const float* row(int64_t r) const { return data.data() + r * n_cols; }
};

// The residual stream or any per-token activations: [n_tokens][width].
using Activations = std::vector<std::vector<float>>;

// Checks tensor t has exactly shape ne (ne[0] innermost; missing trailing dims are 1) and a
// type we can dequantize.
Status check_tensor(const gguf::TensorInfo& t, const std::vector<int64_t>& ne);
// Dequantizes tensor `name` of shape ne (1 to 3 dims) into a Matrix of ne[0] columns.
Expected<Matrix> load(const gguf::GgufFile& file, const std::string& name, const std::vector<int64_t>& ne);
bool has_tensor(const gguf::GgufFile& file, const std::string& name);
std::string layer_tensor(int64_t il, const char* suffix);  // "blk.{il}.{suffix}"

// y[r] = sum_c W[first_row + r, c] * x[c] for r < n_rows: rows of one head or one expert.
std::vector<float> matvec_rows(const Matrix& w, int64_t first_row, int64_t n_rows, const std::vector<float>& x);
// y = W x over all rows.
std::vector<float> matvec(const Matrix& w, const std::vector<float>& x);
// RMSNorm: x / sqrt(mean(x^2) + eps) * weight.
std::vector<float> rms_norm(const std::vector<float>& x, const Matrix& weight, float eps);
float silu(float x);
void add_in_place(std::vector<float>& x, const std::vector<float>& y);

// Causal attention's second half for one head: turns the raw scaled scores of positions 0..t
// into softmax probabilities in place, then out[d] = sum_s p[s] * v[s][offset + d], d < width.
void softmax_weighted_sum(std::vector<double>& score, const Activations& v, int64_t offset, int64_t width, float* out);

// Rotary embedding of one head in place: pair i (i < n_rot/2) is rotated by pos * inv_freq[i].
// Normal pairs are (x[2i], x[2i+1]); NEOX pairs are (x[i], x[i + n_rot/2]). Dims >= n_rot pass.
void rope(float* x, int64_t n_rot, int64_t pos, bool neox, const std::vector<double>& inv_freq);
// Plain rotary frequencies: inv_freq[i] = base^(-2i/n_rot).
std::vector<double> rope_inv_freq(double freq_base, int64_t n_rot);

// x[t] = token_embd row tokens[t]. Errors: missing tensor, token ids out of range.
Expected<Activations> embed(const gguf::GgufFile& file, const ModelConfig& c, const std::vector<int32_t>& tokens);
// logits [n_tokens, n_vocab] = output (or tied token_embd) · RMSNorm(x).
Expected<std::vector<float>> output_logits(const gguf::GgufFile& file, const ModelConfig& c, Activations& x);

// x += W_o · softmax(q k^T / sqrt(hd_k)) v over RMSNorm(x) for layer il: the llama attention
// (GQA, optional QKV bias) shared by llama, qwen2 and deepseek. inv_freq: [n_rot/2].
Status attention_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, const std::vector<double>& inv_freq,
                       bool neox, Activations& x);
// SwiGLU: down · (silu(gate · h) * (up · h)) with matrix `expert` of (possibly stacked)
// gate/up [n_ff rows of n_in] and down [n_in rows of n_ff], so one function serves dense FFNs,
// routed experts (expert = id) and shared experts (expert = 0).
std::vector<float> swiglu(const Matrix& gate, const Matrix& up, const Matrix& down, int64_t expert, int64_t n_ff,
                          const std::vector<float>& h);
// x += dense SwiGLU FFN of RMSNorm(x) (ffn_norm, ffn_gate/up/down of n_ff) for layer il.
Status dense_ffn_layer(const gguf::GgufFile& file, const ModelConfig& c, int64_t il, int64_t n_ff, Activations& x);

// deepseek (MoE) and deepseek2 (MLA + MoE), in reference_deepseek.cpp.
Expected<std::vector<float>> forward_deepseek(const gguf::GgufFile& file, const ModelConfig& c,
                                              const std::vector<int32_t>& tokens, ReferenceRouting* routing);

}  // namespace fathom::reference
