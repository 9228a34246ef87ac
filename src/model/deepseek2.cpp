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
  KvCacheShape kv_shape(int64_t n_ctx) const override {
    KvCacheShape s;
    s.n_layer = c_.n_layer;
    s.k_width = c_.kv_lora_rank + c_.n_rot;  // the latent row, shared by all heads
    s.v_width = 0;
    s.n_ctx_max = n_ctx;
    return s;
  }

  void forward(const Batch& batch, KvCache& kv, Backend& be, float* logits) override {
    const int64_t n = batch.size();
    if (static_cast<int64_t>(ds_.x.size()) < n * c_.n_embd) {
      ds_.x.resize(static_cast<size_t>(n * c_.n_embd));
      ds_.xn.resize(static_cast<size_t>(n * c_.n_embd));
      ds_.proj.resize(static_cast<size_t>(n * c_.n_embd));
    }
    be.get_rows(token_embd_, batch.tokens.data(), n, ds_.x.data());                  // x: [n, n_embd]
    for (int64_t il = 0; il < c_.n_layer; ++il) {
      mla_block(be, c_, rope_, attn_[static_cast<size_t>(il)], il, batch, kv, ds_.x.data(), ds_.xn.data(), ds_.proj.data(), ms_);
      be.add(ds_.x.data(), ds_.proj.data(), n * c_.n_embd);
      deepseek_ffn_block(be, c_, ffn_[static_cast<size_t>(il)], n, ds_, moe_);
    }
    output_block(be, c_, output_norm_, output_, batch, ds_, logits);
  }

  static Expected<std::unique_ptr<Architecture>> create(const ModelConfig& c, const gguf::GgufFile& file) {
    auto m = std::make_unique<Deepseek2Model>();
    m->c_ = c;
    m->rope_ = mla_rope_params(c);
    const WeightBinder b(file);
    FATHOM_ASSIGN_OR_RETURN(m->token_embd_, b.require("token_embd.weight", {c.n_embd, c.n_vocab}));
    FATHOM_ASSIGN_OR_RETURN(m->output_norm_, b.require_f32("output_norm.weight", c.n_embd, m->f32_));
    FATHOM_ASSIGN_OR_RETURN(m->output_, b.optional("output.weight", {c.n_embd, c.n_vocab}));
    if (!m->output_.data) m->output_ = m->token_embd_;
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
  TensorView token_embd_;                // [n_vocab, n_embd]
  const float* output_norm_ = nullptr;   // [n_embd]
  TensorView output_;                    // [n_vocab, n_embd]
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
