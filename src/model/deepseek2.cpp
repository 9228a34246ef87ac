// deepseek2: DeepSeek-V2, V2-Lite, V2.5, V3, V3.1, R1. Per layer:
//   x += W_o · MLA(RMSNorm(x))        latent KV cache, absorbed up-projections (mla.h)
//   x += FFN(RMSNorm(x))              dense for the leading layers, then MoE with shared experts (moe.h)
// logits = W_out · RMSNorm(x). MTP/NextN layers (blk.N for N >= block_count) are not used.
#include "model/deepseek.h"

#include "model/dense_decoder.h"
#include "model/mla.h"
#include "model/moe.h"

namespace fathom {

namespace {

class Deepseek2Model final : public Architecture {
 public:
  KvCacheShape kv_shape(int64_t n_ctx) const override { return mla_kv_shape(c_, n_ctx); }

  void forward(const Batch& batch, KvCache& kv, Backend& be, float* logits) override {
    const int64_t n = batch.size();
    embed_tokens(be, c_, head_, batch, ds_);  // x: [n, n_embd]
    for (int64_t il = 0; il < c_.n_layer; ++il) {
      mla_block(be, c_, rope_, attn_[static_cast<size_t>(il)], il, batch, kv, ds_.x.data(), ds_.xn.data(), ds_.proj.data(), ms_);
      be.add(ds_.x.data(), ds_.proj.data(), n * c_.n_embd);
      deepseek_ffn_block(be, c_, ffn_[static_cast<size_t>(il)], n, ds_, moe_);
    }
    output_block(be, c_, head_.output_norm, head_.output, batch, ds_, logits);
  }

  void rotate_keys(Backend& be, float* rows, int64_t n_rows, int32_t delta) const override {
    rotate_mla_keys(be, c_, rope_, rows, n_rows, delta);
  }

  static Expected<std::unique_ptr<Architecture>> create(const ModelConfig& c, const gguf::GgufFile& file) {
    auto m = std::make_unique<Deepseek2Model>();
    m->c_ = c;
    m->rope_ = mla_rope_params(c);
    const WeightBinder b(file);
    FATHOM_ASSIGN_OR_RETURN(m->head_, bind_embedding_and_head(b, c, m->f32_));
    for (int64_t il = 0; il < c.n_layer; ++il) {
      FATHOM_ASSIGN_OR_RETURN(MlaWeights a, bind_mla(b, c, il, m->f32_));
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
  std::vector<MlaWeights> attn_;         // [n_layer]
  std::vector<DeepseekFfn> ffn_;         // [n_layer]
  std::vector<std::vector<float>> f32_;  // f32 copies: norms that were not F32, W_kb^T from legacy attn_kv_b
  DenseScratch ds_;
  MlaScratch ms_;
  MoeScratch moe_;
};

}  // namespace

Expected<std::unique_ptr<Architecture>> make_deepseek2(const ModelConfig& config, const gguf::GgufFile& file) {
  return Deepseek2Model::create(config, file);
}

}  // namespace fathom
