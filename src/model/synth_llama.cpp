// Synthetic llama and qwen2 models in llama.cpp's GGUF layout (convert_hf_to_gguf.py +
// llama-quantize): the same keys, tensor names and ne order, norms and biases in F32.
#include <cmath>
#include <string>
#include <vector>

#include "model/synth_builder.h"

namespace fathom::synth {

namespace {

// Test shapes first, then the published models (shape_presets.h) under synth's short names.
std::vector<SynthShape> llama_shapes() {
  return {
      {"tiny", "", "", dense_shape("llama", 512, 512, 64, 2, 128, 4, 2, 10000.0f, 1e-5f)},
      {"small", "", "", dense_shape("llama", 4096, 2048, 256, 4, 512, 8, 4, 10000.0f, 1e-5f)},
      published_shape("7b", "deepseek-llm-7b"),
      published_shape("8b", "deepseek-r1-distill-llama-8b"),
  };
}

std::vector<SynthShape> qwen2_shapes() {
  return {
      {"tiny", "", "", dense_shape("qwen2", 512, 512, 64, 2, 128, 4, 2, 10000.0f, 1e-6f)},
      {"small", "", "", dense_shape("qwen2", 4096, 2048, 256, 4, 512, 8, 4, 10000.0f, 1e-6f)},
      published_shape("1.5b", "deepseek-r1-distill-qwen-1.5b"),
      published_shape("7b", "deepseek-r1-distill-qwen-7b"),
  };
}

std::vector<SynthPresetInfo> preset_infos(const std::string& arch, const std::vector<SynthShape>& shapes) {
  std::vector<SynthPresetInfo> out;
  for (const SynthShape& p : shapes) {
    const ArchShape& s = p.shape;
    std::string d = strprintf("%lld layers, n_embd %lld, %lld heads (%lld kv), n_ff %lld, vocab %lld, ctx %lld",
                              static_cast<long long>(s.n_layer), static_cast<long long>(s.n_embd),
                              static_cast<long long>(s.n_head), static_cast<long long>(s.n_head_kv),
                              static_cast<long long>(s.n_ff), static_cast<long long>(s.n_vocab),
                              static_cast<long long>(s.n_ctx_train));
    out.push_back(preset_info(arch, p, std::move(d)));
  }
  return out;
}

Status build_dense(SynthBuilder& b, const std::string& arch, const ArchShape& shape) {
  const SynthOptions& opt = b.options();
  FATHOM_RETURN_IF_ERROR(b.load_vocab(shape.n_vocab));
  const int64_t n_vocab = b.n_vocab();
  const int64_t n_layer = opt.n_layer.value_or(shape.n_layer);
  const int64_t n_embd = shape.n_embd;
  const int64_t head_dim = shape.head_dim();
  const int64_t n_embd_q = shape.n_head * head_dim;      // rows of attn_q
  const int64_t n_embd_kv = shape.n_head_kv * head_dim;  // rows of attn_k, attn_v

  b.set_general(arch, "synth-" + arch + "-" + opt.preset);
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
    if (shape.qkv_bias()) {
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
  return build_dense(b, "llama", find_shape(llama_shapes(), b.options().preset).shape);
}

Status build_qwen2(SynthBuilder& b) {
  return build_dense(b, "qwen2", find_shape(qwen2_shapes(), b.options().preset).shape);
}

}  // namespace

std::vector<SynthArchitecture> dense_architectures() {
  return {
      {"llama", preset_infos("llama", llama_shapes()), build_llama},
      {"qwen2", preset_infos("qwen2", qwen2_shapes()), build_qwen2},
  };
}

}  // namespace fathom::synth
