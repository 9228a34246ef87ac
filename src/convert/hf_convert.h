// Hugging Face checkpoint -> GGUF, writing what llama.cpp's convert_hf_to_gguf.py writes for
// LlamaForCausalLM (llama), Qwen2ForCausalLM (qwen2), DeepseekForCausalLM (deepseek) and
// DeepseekV2ForCausalLM / DeepseekV3ForCausalLM (deepseek2): the same metadata keys, tensor
// names, shapes and per-tensor types, and the same weight transforms:
//   llama, deepseek: attn_q / attn_k rows permuted so rotary pairs are adjacent (llama.cpp's
//                    "normal" RoPE) instead of Hugging Face's half-split layout;
//   qwen2:           unpermuted (NEOX RoPE);
//   deepseek2:       kv_b_proj split into attn_k_b (transposed per head: ne {nope, kv_lora_rank,
//                    n_head}) and attn_v_b (ne {kv_lora_rank, v_head_dim, n_head}), current
//                    llama.cpp's MLA convention with attention.key_length_mla/value_length_mla;
//                    legacy_mla writes the single attn_kv_b instead;
//   MoE:             experts stacked into ffn_{gate,up,down}_exps (ne {in, out, n_expert});
//   FP8 (DeepSeek-V3/R1): E4M3 weights times their 128x128 weight_scale_inv blocks.
// The tokenizer comes from tokenizer.json (byte-level BPE -> tokenizer.ggml.model "gpt2") and
// tokenizer_config.json (special tokens, add_bos, chat_template).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace fathom::gguf {
class GgufWriter;
}

namespace fathom::convert {

struct ConvertOptions {
  DType outtype = DType::F16;  // matrices: F32, F16, BF16 or Q8_0; norms/biases/router stay F32
  int n_threads = 0;           // 0: all cores
  bool legacy_mla = false;     // deepseek2: write attn_kv_b instead of attn_k_b + attn_v_b
  std::string name;            // general.name; default: the directory's name
  // After each tensor: (index from 1, count, GGUF name, type written).
  std::function<void(size_t, size_t, const std::string&, DType)> on_tensor;
  std::function<void(const std::string&)> on_warning;
};

// llama.cpp's general.file_type for a converter --outtype (ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7,
// MOSTLY_BF16 32).
uint32_t outtype_file_type(DType outtype);

Status convert_hf(const std::string& dir, const std::string& out_path, const ConvertOptions& options);

// Writes the tokenizer.* keys of a Hugging Face tokenizer (tokenizer.json and, when present,
// tokenizer_config.json in dir; config: the parsed config.json, whose *_token_id fill gaps).
// n_vocab: the model's vocab_size; ids the tokenizer lacks become "[PAD<id>]" (type UNUSED), as
// llama.cpp does.
Status add_hf_tokenizer(const std::string& dir, int64_t n_vocab, const nlohmann::json& config, gguf::GgufWriter& w,
                        const std::function<void(const std::string&)>& warn);

// The llama.cpp pre-tokenizer name (tokenizer.ggml.pre) whose regexes match a tokenizer.json's
// Split patterns: deepseek-llm, deepseek-coder, deepseek-v3, qwen2, llama-bpe, gpt-2; "" if none.
std::string recognize_pre_tokenizer(const std::vector<std::string>& split_patterns, bool byte_level_regex);

}  // namespace fathom::convert
