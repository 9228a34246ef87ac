// llama: DeepSeek-LLM, DeepSeek-Coder, DeepSeek-R1-Distill-Llama (and the stories test model).
// Pre-norm decoder, RMSNorm, rotary embedding on adjacent pairs, GQA, SwiGLU FFN, optional
// tied output. qwen2 (qwen2.cpp) is this graph with q/k/v biases and NEOX rotary pairs.
#include "model/llama.h"

#include "model/dense_decoder.h"

namespace fathom {

namespace {

class DenseModel final : public Architecture {
 public:
  KvCacheShape kv_shape(int64_t n_ctx) const override { return mha_kv_shape(config_, n_ctx); }

  void forward(const Batch& batch, KvCache& kv, Backend& be, float* logits) override {
    const int64_t n = batch.size();
    embed_tokens(be, config_, head_, batch, s_);  // x: [n, n_embd]
    for (int64_t il = 0; il < config_.n_layer; ++il) {
      attention_block(be, config_, rope_, attn_[static_cast<size_t>(il)], il, batch, kv, s_);
      ffn_block(be, config_, ffn_[static_cast<size_t>(il)], n, s_);
    }
    output_block(be, config_, head_.output_norm, head_.output, batch, s_, logits);
  }

  void rotate_keys(Backend& be, float* k_rows, int64_t n_rows, int32_t delta) const override {
    rotate_mha_keys(be, config_, rope_, k_rows, n_rows, delta);
  }

  static Expected<std::unique_ptr<Architecture>> create(const ModelConfig& c, const gguf::GgufFile& file) {
    auto m = std::make_unique<DenseModel>();
    m->config_ = c;
    m->rope_ = rope_params(c);
    const WeightBinder b(file);
    FATHOM_ASSIGN_OR_RETURN(m->head_, bind_embedding_and_head(b, c, m->f32_));
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
  EmbeddingAndHead head_;                // token embedding, final norm, output projection
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
