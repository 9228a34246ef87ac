// Synthetic llama and qwen2 models in llama.cpp's GGUF layout (convert_hf_to_gguf.py +
// llama-quantize): the same keys, tensor names and ne order, norms and biases in F32.
#include <cmath>
#include <string>
#include <vector>

#include "model/synth_builder.h"

namespace fathom::synth {

namespace {

// The shape of a dense llama-family transformer, as the GGUF keys name it.
struct DenseShape {
  const char* name;       // preset name
  const char* origin;     // which real model has this shape ("" for test sizes)
  int64_t n_vocab;        // token count (replaced by --vocab's)
  int64_t n_ctx_train;    // {arch}.context_length
  int64_t n_embd;         // {arch}.embedding_length
  int64_t n_layer;        // {arch}.block_count
  int64_t n_ff;           // {arch}.feed_forward_length
  int64_t n_head;         // {arch}.attention.head_count
  int64_t n_head_kv;      // {arch}.attention.head_count_kv
  float rope_freq_base;   // {arch}.rope.freq_base
  float rms_norm_eps;     // {arch}.attention.layer_norm_rms_epsilon
};

constexpr DenseShape kLlamaShapes[] = {
    {"tiny", "", 512, 512, 64, 2, 128, 4, 2, 10000.0f, 1e-5f},
    {"small", "", 4096, 2048, 256, 4, 512, 8, 4, 10000.0f, 1e-5f},
    {"7b", "deepseek-llm-7b", 102400, 4096, 4096, 30, 11008, 32, 32, 10000.0f, 1e-6f},
    {"8b", "DeepSeek-R1-Distill-Llama-8B", 128256, 131072, 4096, 32, 14336, 32, 8, 500000.0f, 1e-5f},
};

constexpr DenseShape kQwen2Shapes[] = {
    {"tiny", "", 512, 512, 64, 2, 128, 4, 2, 10000.0f, 1e-6f},
    {"small", "", 4096, 2048, 256, 4, 512, 8, 4, 10000.0f, 1e-6f},
    {"1.5b", "DeepSeek-R1-Distill-Qwen-1.5B", 151936, 131072, 1536, 28, 8960, 12, 2, 10000.0f, 1e-6f},
    {"7b", "DeepSeek-R1-Distill-Qwen-7B", 152064, 131072, 3584, 28, 18944, 28, 4, 10000.0f, 1e-6f},
};

template <size_t N>
std::vector<SynthPresetInfo> preset_infos(const char* arch, const DenseShape (&shapes)[N]) {
  std::vector<SynthPresetInfo> out;
  for (const DenseShape& s : shapes) {
    std::string d = strprintf("%lld layers, n_embd %lld, %lld heads (%lld kv), n_ff %lld, vocab %lld, ctx %lld",
                              static_cast<long long>(s.n_layer), static_cast<long long>(s.n_embd),
                              static_cast<long long>(s.n_head), static_cast<long long>(s.n_head_kv),
                              static_cast<long long>(s.n_ff), static_cast<long long>(s.n_vocab),
                              static_cast<long long>(s.n_ctx_train));
    if (*s.origin) d += strprintf(" (%s)", s.origin);
    out.push_back({arch, s.name, d});
  }
  return out;
}

template <size_t N>
const DenseShape* find_shape(const std::string& name, const DenseShape (&shapes)[N]) {
  for (const DenseShape& s : shapes)
    if (name == s.name) return &s;
  return nullptr;
}

Status build_dense(SynthBuilder& b, const std::string& arch, const DenseShape& shape, bool qkv_bias) {
  const SynthOptions& opt = b.options();
  FATHOM_RETURN_IF_ERROR(b.load_vocab(shape.n_vocab));
  const int64_t n_vocab = b.n_vocab();
  const int64_t n_layer = opt.n_layer.value_or(shape.n_layer);
  const int64_t n_embd = shape.n_embd;
  const int64_t head_dim = shape.n_embd / shape.n_head;
  const int64_t n_embd_q = shape.n_head * head_dim;      // rows of attn_q
  const int64_t n_embd_kv = shape.n_head_kv * head_dim;  // rows of attn_k, attn_v

  b.set_general(arch, "synth-" + arch + "-" + shape.name);
  gguf::GgufWriter& w = b.writer();
  const std::string k = arch + ".";
  w.set_u32(k + "context_length", static_cast<uint32_t>(shape.n_ctx_train));
  w.set_u32(k + "embedding_length", static_cast<uint32_t>(n_embd));
  w.set_u32(k + "block_count", static_cast<uint32_t>(n_layer));
  w.set_u32(k + "feed_forward_length", static_cast<uint32_t>(shape.n_ff));
  w.set_u32(k + "attention.head_count", static_cast<uint32_t>(shape.n_head));
  w.set_u32(k + "attention.head_count_kv", static_cast<uint32_t>(shape.n_head_kv));
  w.set_f32(k + "rope.freq_base", shape.rope_freq_base);
  w.set_f32(k + "attention.layer_norm_rms_epsilon", shape.rms_norm_eps);
  if (arch == "llama") {  // convert_hf_to_gguf writes these two for llama only
    w.set_u32(k + "rope.dimension_count", static_cast<uint32_t>(head_dim));
    w.set_u32(k + "vocab_size", static_cast<uint32_t>(n_vocab));
  }
  b.set_tokenizer();

  const DType wt = b.main_dtype();
  b.add_matrix("token_embd.weight", n_embd, n_vocab, wt, kEmbedding);
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = strprintf("blk.%lld.", static_cast<long long>(il));
    b.add_f32(p + "attn_norm.weight", {n_embd}, kNormWeight);
    b.add_matrix(p + "attn_q.weight", n_embd, n_embd_q, wt, projection(n_embd));
    b.add_matrix(p + "attn_k.weight", n_embd, n_embd_kv, wt, projection(n_embd));
    b.add_matrix(p + "attn_v.weight", n_embd, n_embd_kv, wt, projection(n_embd));
    if (qkv_bias) {
      b.add_f32(p + "attn_q.bias", {n_embd_q}, kBias);
      b.add_f32(p + "attn_k.bias", {n_embd_kv}, kBias);
      b.add_f32(p + "attn_v.bias", {n_embd_kv}, kBias);
    }
    b.add_matrix(p + "attn_output.weight", n_embd_q, n_embd, wt, projection(n_embd_q));
    b.add_f32(p + "ffn_norm.weight", {n_embd}, kNormWeight);
    b.add_matrix(p + "ffn_gate.weight", n_embd, shape.n_ff, wt, projection(n_embd));
    b.add_matrix(p + "ffn_up.weight", n_embd, shape.n_ff, wt, projection(n_embd));
    b.add_matrix(p + "ffn_down.weight", shape.n_ff, n_embd, wt, projection(shape.n_ff));
  }
  b.add_f32("output_norm.weight", {n_embd}, kNormWeight);
  if (!opt.tied_output) {
    Init out = projection(n_embd);
    out.stddev *= 2.0f;
    b.add_matrix("output.weight", n_embd, n_vocab, b.output_dtype(), out);
  }
  return Status::ok();
}

Status build_llama(SynthBuilder& b) {
  return build_dense(b, "llama", *find_shape(b.options().preset, kLlamaShapes), /*qkv_bias=*/false);
}

Status build_qwen2(SynthBuilder& b) {
  return build_dense(b, "qwen2", *find_shape(b.options().preset, kQwen2Shapes), /*qkv_bias=*/true);
}

}  // namespace

std::vector<SynthArchitecture> dense_architectures() {
  return {
      {"llama", preset_infos("llama", kLlamaShapes), build_llama},
      {"qwen2", preset_infos("qwen2", kQwen2Shapes), build_qwen2},
  };
}

}  // namespace fathom::synth
