// The shapes of the published models: each model's hyper-parameters as its Hugging Face
// config.json gives them, under the names of the GGUF keys llama.cpp's converter writes for them.
// One row per model, read by `fathom plan --arch-preset` (plan/model_shape.cpp) and by the
// real-size presets of `fathom synth` (model/synth_*.cpp), so the two cannot drift apart. synth's
// small test shapes (tiny, small, ...) are no published model and stay in the synth files.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace fathom {

// Multi-head latent attention (deepseek2): keys and values through a cached low-rank latent.
// All zero: not MLA.
struct MlaShape {
  int64_t q_lora_rank = 0;   // {arch}.attention.q_lora_rank (0: plain attn_q, as in V2-Lite)
  int64_t kv_lora_rank = 0;  // {arch}.attention.kv_lora_rank: width of the cached latent
  int64_t n_nope = 0;        // qk_nope_head_dim: per-head q/k dims without rotary
  int64_t n_rot = 0;         // qk_rope_head_dim = {arch}.rope.dimension_count
  int64_t n_v = 0;           // v_head_dim
};

// DeepSeekMoE's FFN (deepseek, deepseek2): fine-grained routed experts plus always-active shared
// ones; the first n_layer_dense_lead blocks keep a dense FFN of ArchShape::n_ff. n_expert 0: dense.
struct MoeShape {
  int64_t n_layer_dense_lead = 0;  // {arch}.leading_dense_block_count (first_k_dense_replace)
  int64_t n_expert = 0;            // {arch}.expert_count (n_routed_experts)
  int64_t n_expert_used = 0;       // {arch}.expert_used_count (num_experts_per_tok)
  int64_t n_expert_shared = 0;     // {arch}.expert_shared_count (n_shared_experts)
  int64_t n_ff_exp = 0;            // {arch}.expert_feed_forward_length (moe_intermediate_size)
  int64_t n_group = 0;             // {arch}.expert_group_count (n_group; 0 or 1: no group limit)
  int64_t n_group_used = 0;        // {arch}.expert_group_used_count (topk_group)
  int gating_func = 1;             // {arch}.expert_gating_func: 1 softmax, 2 sigmoid (+ exp_probs_b)
  bool weights_norm = false;       // {arch}.expert_weights_norm (norm_topk_prob)
  float weights_scale = 1.0f;      // {arch}.expert_weights_scale (routed_scaling_factor)
};

// YaRN context extension as the converters write it for DeepSeek-V2/V3 (factor 0: none).
struct YarnShape {
  float factor = 0.0f;          // {arch}.rope.scaling.factor
  int64_t orig_ctx = 0;         // {arch}.rope.scaling.original_context_length
  float log_multiplier = 0.0f;  // {arch}.rope.scaling.yarn_log_multiplier = 0.1 * mscale_all_dim
};

// A transformer's hyper-parameters, for llama, qwen2 (dense), deepseek (MHA + MoE) and deepseek2
// (MLA + MoE).
struct ArchShape {
  const char* arch = "";         // general.architecture: llama, qwen2, deepseek, deepseek2
  int64_t n_vocab = 0;           // vocab_size: rows of token_embd
  int64_t n_ctx_train = 0;       // {arch}.context_length (max_position_embeddings)
  int64_t n_embd = 0;            // {arch}.embedding_length (hidden_size)
  int64_t n_layer = 0;           // {arch}.block_count (num_hidden_layers; V3's MTP layer apart)
  int64_t n_ff = 0;              // {arch}.feed_forward_length (intermediate_size): the dense FFN
  int64_t n_head = 0;            // {arch}.attention.head_count
  int64_t n_head_kv = 0;         // key/value heads: < n_head with GQA; == n_head for MHA and MLA
  float rope_freq_base = 0.0f;   // {arch}.rope.freq_base (rope_theta)
  float rms_norm_eps = 0.0f;     // {arch}.attention.layer_norm_rms_epsilon
  MlaShape mla;                  // deepseek2 only
  MoeShape moe;                  // deepseek, deepseek2 only
  YarnShape yarn;                // deepseek2 only

  bool is_mla() const { return mla.kv_lora_rank > 0; }
  bool qkv_bias() const { return std::string_view(arch) == "qwen2"; }  // attn_{q,k,v}.bias
  int64_t head_dim() const { return n_embd / n_head; }                 // per-head size without MLA
};

// The shape of a dense llama-family model (llama, qwen2): no MLA, no MoE.
ArchShape dense_shape(const char* arch, int64_t n_vocab, int64_t n_ctx_train, int64_t n_embd, int64_t n_layer,
                      int64_t n_ff, int64_t n_head, int64_t n_head_kv, float rope_freq_base, float rms_norm_eps);
// deepseek: multi-head attention (head_count_kv = head_count) with DeepSeekMoE, rope base 10000.
ArchShape deepseek_shape(int64_t n_vocab, int64_t n_ctx_train, int64_t n_embd, int64_t n_layer, int64_t n_ff,
                         int64_t n_head, const MoeShape& moe);
// deepseek2: MLA with DeepSeekMoE, rope base 10000.
ArchShape deepseek2_shape(int64_t n_vocab, int64_t n_ctx_train, int64_t n_embd, int64_t n_layer, int64_t n_ff,
                          int64_t n_head, const MlaShape& mla, const MoeShape& moe, const YarnShape& yarn);

// A published model.
struct ModelPreset {
  const char* name;     // `fathom plan --arch-preset` name, e.g. "deepseek-v2-lite"
  const char* origin;   // the model's own name, e.g. "DeepSeek-V2-Lite"
  const char* summary;  // one line: parameter count and architecture
  ArchShape shape;
};

// Every published model fathom knows the shape of, in `fathom plan --list-presets` order.
std::vector<ModelPreset> model_presets();
// The preset named `name` (exactly, as listed), or nothing.
std::optional<ModelPreset> find_model_preset(std::string_view name);

}  // namespace fathom
