// The shape of a model as the planner needs it: hyper-parameters plus the full tensor list
// (names and extents as llama.cpp writes them into GGUF), either read from a GGUF file or
// synthesized from a built-in architecture preset. No weights are touched.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace fathom::plan {

struct ModelShape {
  std::string name;               // preset name or general.name
  std::string arch;               // GGUF architecture: "deepseek2", "deepseek", "qwen2", "llama"
  int64_t n_vocab = 0;            // rows of token_embd
  int64_t n_ctx_train = 0;        // trained context length
  int64_t n_embd = 0;             // hidden size
  int64_t n_layer = 0;            // transformer blocks the forward pass runs
  int64_t n_nextn_layers = 0;     // MTP layers stored after them (DeepSeek-V3 files), not run
  int64_t n_ff = 0;               // dense FFN hidden size
  int64_t n_head = 0;             // query heads
  int64_t n_head_kv = 0;          // key/value heads (GQA); == n_head for MHA
  int64_t head_dim = 0;           // per-head K/V size for non-MLA attention
  bool tied_output = false;       // no output.weight (logits reuse token_embd)
  bool qkv_bias = false;          // qwen2: attn_{q,k,v}.bias
  // MLA (deepseek2): per-token latent cache is kv_lora_rank + rope_dim values per layer.
  int64_t q_lora_rank = 0;        // 0: plain attn_q
  int64_t kv_lora_rank = 0;       // compressed KV width; 0 for non-MLA models
  int64_t rope_dim = 0;           // decoupled rotary dims per head (qk_rope_head_dim)
  int64_t nope_dim = 0;           // non-rotary query/key dims per head (qk_nope_head_dim)
  int64_t v_head_dim = 0;         // value dims per head
  // MoE (deepseek, deepseek2); zero for dense models.
  int64_t n_expert = 0;           // routed experts per MoE layer
  int64_t n_expert_used = 0;      // routed experts active per token
  int64_t n_expert_shared = 0;    // always-active shared experts
  int64_t n_ff_exp = 0;           // expert FFN hidden size
  int64_t n_layer_dense_lead = 0; // leading blocks with a dense FFN instead of MoE
  bool expert_score_bias = false; // V3: learned per-expert routing bias (exp_probs_b)

  bool is_mla() const { return kv_lora_rank > 0; }
  bool is_moe() const { return n_expert > 0; }
};

struct TensorShape {
  std::string name;                       // GGUF name, e.g. "blk.3.ffn_down_exps.weight"
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // extents, ne[0] innermost (row length)
  int n_dims = 1;                         // meaningful dims
  DType dtype = DType::F32;               // dtype in the file; presets: F32 (to be re-quantized)
  uint64_t file_bytes = 0;                // bytes in the file (0 for presets)

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  bool is_expert() const;   // routed expert stack ("_exps"): only n_expert_used/n_expert is read per token
  int layer() const;        // block index from "blk.N.", -1 for global tensors
};

struct ModelDesc {
  ModelShape shape;                  // hyper-parameters
  std::vector<TensorShape> tensors;  // every weight tensor
  bool from_file = false;            // tensors carry the file's dtypes and exact sizes
  std::string file_type;             // from_file: dominant quantized dtype, e.g. "q4_K"
};

struct PresetInfo {
  const char* name;     // --arch-preset value
  const char* summary;  // one line: parameter count and architecture
};
std::vector<PresetInfo> list_presets();

// A preset's shape (published config.json values) and synthesized tensor list.
Expected<ModelDesc> model_from_preset(std::string_view name);
// Reads metadata and the tensor index of a GGUF file (sizes exact from the tensors).
Expected<ModelDesc> model_from_gguf(const std::string& path);
// The tensor list llama.cpp's converter writes for this shape (all F32, file_bytes 0).
std::vector<TensorShape> synthesize_tensors(const ModelShape& shape);

}  // namespace fathom::plan
