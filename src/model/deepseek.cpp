// deepseek: DeepSeek-MoE-16B. The llama attention (rotary on adjacent pairs, no biases) with
// DeepSeek's FFN: dense for the leading layers, then routed experts (softmax gating) plus
// shared experts.
#include "model/deepseek.h"

#include "model/dense_decoder.h"
#include "model/moe.h"

namespace fathom {

namespace {

class DeepseekModel final : public Architecture {
 public:
  KvCacheShape kv_shape(int64_t n_ctx) const override { return mha_kv_shape(c_, n_ctx); }

  void forward(const Batch& batch, KvCache& kv, Backend& be, float* logits) override {
    const int64_t n = batch.size();
    embed_tokens(be, c_, head_, batch, ds_);  // x: [n, n_embd]
    for (int64_t il = 0; il < c_.n_layer; ++il) {
      attention_block(be, c_, rope_, attn_[static_cast<size_t>(il)], il, batch, kv, ds_);
      deepseek_ffn_block(be, c_, ffn_[static_cast<size_t>(il)], n, ds_, moe_);
    }
    output_block(be, c_, head_.output_norm, head_.output, batch, ds_, logits);
  }

  void rotate_keys(Backend& be, float* k_rows, int64_t n_rows, int32_t delta) const override {
    rotate_mha_keys(be, c_, rope_, k_rows, n_rows, delta);
  }

  static Expected<std::unique_ptr<Architecture>> create(const ModelConfig& c, const gguf::GgufFile& file) {
    auto m = std::make_unique<DeepseekModel>();
    m->c_ = c;
    m->rope_ = rope_params(c);
    const WeightBinder b(file);
    FATHOM_ASSIGN_OR_RETURN(m->head_, bind_embedding_and_head(b, c, m->f32_));
    for (int64_t il = 0; il < c.n_layer; ++il) {
      FATHOM_ASSIGN_OR_RETURN(AttentionWeights a, bind_attention(b, c, il, m->f32_));
      FATHOM_ASSIGN_OR_RETURN(DeepseekFfn f, bind_deepseek_ffn(b, c, il, m->f32_));
      m->attn_.push_back(a);
      m->ffn_.push_back(f);
    }
    return std::unique_ptr<Architecture>(std::move(m));
  }

 private:
  ModelConfig c_;
  RopeParams rope_;
  EmbeddingAndHead head_;                // token embedding, final norm, output projection
  std::vector<AttentionWeights> attn_;   // [n_layer]
  std::vector<DeepseekFfn> ffn_;         // [n_layer]
  std::vector<std::vector<float>> f32_;  // dequantized norm vectors
  DenseScratch ds_;
  MoeScratch moe_;
};

}  // namespace

Expected<std::unique_ptr<Architecture>> make_deepseek(const ModelConfig& config, const gguf::GgufFile& file) {
  return DeepseekModel::create(config, file);
}

}  // namespace fathom
