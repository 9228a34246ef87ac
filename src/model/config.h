// Typed model hyper-parameters, read from the GGUF metadata keys llama.cpp writes
// ("{arch}.embedding_length", "{arch}.attention.head_count", ...). Missing optional keys take
// llama.cpp's defaults; missing required ones are errors naming the key.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace fathom::gguf {
class GgufFile;
}

namespace fathom {

enum class Arch { kLlama, kQwen2, kDeepseek, kDeepseek2 };
const char* arch_name(Arch arch);

enum class RopeScaling { kNone, kLinear, kYarn };

// How rotary pairs are formed: kNormal rotates (x[2i], x[2i+1]) (llama, deepseek after
// llama.cpp's Q/K permutation at conversion); kNeox rotates (x[i], x[i + n_rot/2]) (qwen2).
enum class RopeType { kNormal, kNeox };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name;           // general.architecture as written in the file
  std::string name;                // general.name (may be empty)

  int64_t n_vocab = 0;             // rows of token_embd
  int64_t n_ctx_train = 0;         // {arch}.context_length
  int64_t n_embd = 0;              // {arch}.embedding_length (hidden size)
  int64_t n_layer = 0;             // transformer layers the forward pass runs: {arch}.block_count
                                   // minus the MTP layers ({arch}.nextn_predict_layers)
  int64_t n_nextn_layers = 0;      // MTP/NextN layers stored after the main ones (DeepSeek-V3);
                                   // loaded later for speculative decoding, skipped by forward
  int64_t n_ff = 0;                // {arch}.feed_forward_length (dense FFN hidden size)
  int64_t n_head = 0;              // {arch}.attention.head_count
  int64_t n_head_kv = 0;           // {arch}.attention.head_count_kv (GQA), defaults to n_head
  int64_t head_dim_k = 0;          // {arch}.attention.key_length (deepseek2: key_length_mla when
                                   // present = nope + rope dims), defaults to n_embd / n_head
  int64_t head_dim_v = 0;          // {arch}.attention.value_length (deepseek2: value_length_mla)
  float rms_norm_eps = 1e-5f;      // {arch}.attention.layer_norm_rms_epsilon

  // Rotary position embedding.
  int64_t n_rot = 0;               // {arch}.rope.dimension_count, defaults to head_dim_k
  float rope_freq_base = 10000.0f; // {arch}.rope.freq_base
  RopeType rope_type = RopeType::kNormal;
  RopeScaling rope_scaling = RopeScaling::kNone;  // {arch}.rope.scaling.type
  float rope_scaling_factor = 1.0f;               // {arch}.rope.scaling.factor
  int64_t rope_orig_ctx = 0;                      // {arch}.rope.scaling.original_context_length
  float yarn_log_multiplier = 0.0f;               // {arch}.rope.scaling.yarn_log_multiplier (deepseek2)
  float yarn_beta_fast = 32.0f;                   // {arch}.rope.scaling.yarn_beta_fast
  float yarn_beta_slow = 1.0f;                    // {arch}.rope.scaling.yarn_beta_slow

  bool has_qkv_bias = false;       // qwen2: attn_{q,k,v}.bias present
  bool tied_output = false;        // no output.weight: logits use token_embd

  // deepseek / deepseek2 (MoE, MLA); zero for dense models.
  int64_t q_lora_rank = 0;          // {arch}.attention.q_lora_rank (0: plain attn_q)
  int64_t kv_lora_rank = 0;         // {arch}.attention.kv_lora_rank
  int64_t n_expert = 0;             // {arch}.expert_count
  int64_t n_expert_used = 0;        // {arch}.expert_used_count
  int64_t n_expert_shared = 0;      // {arch}.expert_shared_count
  int64_t n_ff_exp = 0;             // {arch}.expert_feed_forward_length
  int64_t n_layer_dense_lead = 0;   // {arch}.leading_dense_block_count
  int64_t n_expert_groups = 0;      // {arch}.expert_group_count
  int64_t n_expert_groups_used = 0; // {arch}.expert_group_used_count
  bool expert_weights_norm = false; // {arch}.expert_weights_norm
  float expert_weights_scale = 1.0f;// {arch}.expert_weights_scale
  int expert_gating_func = 1;       // {arch}.expert_gating_func: 1 softmax, 2 sigmoid

  // KV cache values per token per layer: deepseek2 keeps the MLA latent (kv_lora_rank + n_rot,
  // shared by all heads); the others n_head_kv * (head_dim_k + head_dim_v).
  int64_t kv_values_per_token_per_layer() const {
    return arch == Arch::kDeepseek2 ? kv_lora_rank + n_rot : n_head_kv * (head_dim_k + head_dim_v);
  }

  static Expected<ModelConfig> from_gguf(const gguf::GgufFile& file);
  std::string summary() const;  // one line: "llama, 5 layers, n_embd 64, 8 heads (4 kv), ..."
};

// The layers a file holds: {arch}.block_count counts the MTP/NextN layers
// ({arch}.nextn_predict_layers, DeepSeek-V3) stored after the ones the forward pass runs. The one
// reading of both keys, for the engine's config and the planner.
struct LayerCounts {
  int64_t n_layer_all = 0;  // block_count: every blk.N in the file
  int64_t n_nextn = 0;      // MTP layers among them, the last ones
  int64_t n_layer() const { return n_layer_all - n_nextn; }  // layers the forward pass runs
};
// Errors: block_count missing, or nextn_predict_layers outside [0, block_count).
Expected<LayerCounts> read_layer_counts(const gguf::GgufFile& file, const std::string& arch);

}  // namespace fathom
