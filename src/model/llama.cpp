// llama: DeepSeek-LLM, DeepSeek-Coder, DeepSeek-R1-Distill-Llama (and the stories test model).
// Pre-norm decoder, RMSNorm, rotary embedding on adjacent pairs, GQA, SwiGLU FFN, optional
// tied output. qwen2 (qwen2.cpp) is this graph with q/k/v biases and NEOX rotary pairs.
#include "model/llama.h"

#include "model/dense_decoder.h"

namespace fathom {

namespace {

class DenseModel final : public Architecture {
 public:
  KvCacheShape kv_shape(int64_t n_ctx) const override {
    KvCacheShape s;
    s.n_layer = config_.n_layer;
    s.k_width = config_.n_head_kv * config_.head_dim_k;
    s.v_width = config_.n_head_kv * config_.head_dim_v;
    s.n_ctx_max = n_ctx;
    return s;
  }

  void forward(const Batch& batch, KvCache& kv, Backend& be, float* logits) override {
    const int64_t n = batch.size();
    if (static_cast<int64_t>(s_.x.size()) < n * config_.n_embd) {
      s_.x.resize(static_cast<size_t>(n * config_.n_embd));
      s_.xn.resize(static_cast<size_t>(n * config_.n_embd));
    }
    be.get_rows(token_embd_, batch.tokens.data(), n, s_.x.data());  // x: [n, n_embd]
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      attention_block(be, config_, rope_, attn_[static_cast<size_t>(il)], il, batch, kv, s_);
      ffn_block(be, config_, ffn_[static_cast<size_t>(il)], n, s_);
    }
    output_block(be, config_, output_norm_, output_, batch, s_, logits);
  }

  static Expected<std::unique_ptr<Architecture>> create(const ModelConfig& c, const gguf::GgufFile& file) {
    auto m = std::make_unique<DenseModel>();
    m->config_ = c;
    m->rope_ = rope_params(c);
    const WeightBinder b(file);
    FATHOM_ASSIGN_OR_RETURN(m->token_embd_, b.require("token_embd.weight", {c.n_embd, c.n_vocab}));
    FATHOM_ASSIGN_OR_RETURN(m->output_norm_, b.require_f32("output_norm.weight", c.n_embd, m->f32_));
    FATHOM_ASSIGN_OR_RETURN(m->output_, b.optional("output.weight", {c.n_embd, c.n_vocab}));
    if (!m->output_.data) m->output_ = m->token_embd_;  // tied embeddings
    // llama3-style rope scaling ships per-pair frequency divisors as a tensor.
    FATHOM_ASSIGN_OR_RETURN(m->rope_.freq_factors, b.optional_f32("rope_freqs.weight", c.n_rot / 2, m->f32_));
    for (int64_t il = 0; il < c.n_layer; ++il) {
      FATHOM_ASSIGN_OR_RETURN(AttentionWeights a, bind_attention(b, c, il, m->f32_));
      FATHOM_ASSIGN_OR_RETURN(FfnWeights f, bind_ffn(b, c, il, c.n_ff, m->f32_));
      m->attn_.push_back(a);
      m->ffn_.push_back(f);
    }
    return std::unique_ptr<Architecture>(std::move(m));
  }

 private:
  ModelConfig config_;
  RopeParams rope_;
  TensorView token_embd_;                  // [n_vocab, n_embd]
  const float* output_norm_ = nullptr;     // [n_embd]
  TensorView output_;                      // [n_vocab, n_embd] (token_embd when tied)
  std::vector<AttentionWeights> attn_;     // [n_layer]
  std::vector<FfnWeights> ffn_;            // [n_layer]
  std::vector<std::vector<float>> f32_;    // dequantized norm/bias vectors that were not F32 in the file
  DenseScratch s_;
};

}  // namespace

Expected<std::unique_ptr<Architecture>> make_llama(const ModelConfig& config, const gguf::GgufFile& file) {
  if (config.n_ff <= 0) return error(ErrorCode::kInvalidFile, file.path() + ": llama.feed_forward_length is missing");
  return DenseModel::create(config, file);
}

}  // namespace fathom
