#include "model/shape_presets.h"

namespace fathom {

namespace {

constexpr float kDeepseekRopeBase = 10000.0f;  // rope_theta of every deepseek/deepseek2 config
constexpr float kDeepseekRmsEps = 1e-6f;       // rms_norm_eps likewise

}  // namespace

ArchShape dense_shape(const char* arch, int64_t n_vocab, int64_t n_ctx_train, int64_t n_embd, int64_t n_layer,
                      int64_t n_ff, int64_t n_head, int64_t n_head_kv, float rope_freq_base, float rms_norm_eps) {
  return {arch, n_vocab, n_ctx_train, n_embd, n_layer, n_ff, n_head, n_head_kv, rope_freq_base, rms_norm_eps,
          MlaShape{}, MoeShape{}, YarnShape{}};
}

ArchShape deepseek_shape(int64_t n_vocab, int64_t n_ctx_train, int64_t n_embd, int64_t n_layer, int64_t n_ff,
                         int64_t n_head, const MoeShape& moe) {
  ArchShape s = dense_shape("deepseek", n_vocab, n_ctx_train, n_embd, n_layer, n_ff, n_head, n_head, kDeepseekRopeBase,
                            kDeepseekRmsEps);
  s.moe = moe;
  return s;
}

ArchShape deepseek2_shape(int64_t n_vocab, int64_t n_ctx_train, int64_t n_embd, int64_t n_layer, int64_t n_ff,
                          int64_t n_head, const MlaShape& mla, const MoeShape& moe, const YarnShape& yarn) {
  ArchShape s = deepseek_shape(n_vocab, n_ctx_train, n_embd, n_layer, n_ff, n_head, moe);
  s.arch = "deepseek2";
  s.mla = mla;
  s.yarn = yarn;
  return s;
}

// Values from each model's published config.json. deepseek-coder's linear rope scaling (factor
// 4) is not modelled: nothing that reads these rows uses it.
std::vector<ModelPreset> model_presets() {
  // V3 and R1: MLA with query compression, 256 routed experts chosen by sigmoid scores plus a
  // learned bias within 4 of 8 groups, normalized and scaled by 2.5; YaRN x40 (mscale_all_dim 1).
  const ArchShape v3 = deepseek2_shape(129280, 163840, 7168, 61, 18432, 128, {1536, 512, 128, 64, 128},
                                       {3, 256, 8, 1, 2048, 8, 4, 2, true, 2.5f}, {40.0f, 4096, 0.1f});
  // V2: softmax routing within 3 of 8 groups, unnormalized, scaled by 16; mscale_all_dim 0.707.
  const ArchShape v2 = deepseek2_shape(102400, 163840, 5120, 60, 12288, 128, {1536, 512, 128, 64, 128},
                                       {1, 160, 6, 2, 1536, 8, 3, 1, false, 16.0f}, {40.0f, 4096, 0.0707f});
  // V2-Lite: no query compression (q_lora_rank null), plain softmax top-6 of 64 experts.
  const ArchShape v2_lite = deepseek2_shape(102400, 163840, 2048, 27, 10944, 16, {0, 512, 128, 64, 128},
                                            {1, 64, 6, 2, 1408, 0, 0, 1, false, 1.0f}, {40.0f, 4096, 0.0707f});
  const ArchShape moe_16b =
      deepseek_shape(102400, 4096, 2048, 28, 10944, 16, {1, 64, 6, 2, 1408, 0, 0, 1, false, 1.0f});
  return {
      {"deepseek-v3", "DeepSeek-V3", "671B MoE (37B active), deepseek2: MLA + 256 routed experts", v3},
      {"deepseek-r1", "DeepSeek-R1", "671B MoE (37B active), same architecture as deepseek-v3", v3},
      {"deepseek-v2", "DeepSeek-V2", "236B MoE (21B active), deepseek2: MLA + 160 routed experts", v2},
      {"deepseek-v2-lite", "DeepSeek-V2-Lite", "15.7B MoE (2.4B active), deepseek2: MLA (no q LoRA) + 64 experts",
       v2_lite},
      {"deepseek-moe-16b", "DeepSeek-MoE-16B", "16.4B MoE (2.8B active), deepseek: MHA + 64 experts", moe_16b},
      {"deepseek-r1-distill-qwen-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B", "1.8B dense, qwen2 GQA",
       dense_shape("qwen2", 151936, 131072, 1536, 28, 8960, 12, 2, 10000.0f, 1e-6f)},
      {"deepseek-r1-distill-qwen-7b", "DeepSeek-R1-Distill-Qwen-7B", "7.6B dense, qwen2 GQA",
       dense_shape("qwen2", 152064, 131072, 3584, 28, 18944, 28, 4, 10000.0f, 1e-6f)},
      {"deepseek-r1-distill-qwen-14b", "DeepSeek-R1-Distill-Qwen-14B", "14.8B dense, qwen2 GQA",
       dense_shape("qwen2", 152064, 131072, 5120, 48, 13824, 40, 8, 1000000.0f, 1e-5f)},
      {"deepseek-r1-distill-qwen-32b", "DeepSeek-R1-Distill-Qwen-32B", "32.8B dense, qwen2 GQA",
       dense_shape("qwen2", 152064, 131072, 5120, 64, 27648, 40, 8, 1000000.0f, 1e-5f)},
      {"deepseek-r1-distill-llama-8b", "DeepSeek-R1-Distill-Llama-8B", "8.0B dense, llama GQA",
       dense_shape("llama", 128256, 131072, 4096, 32, 14336, 32, 8, 500000.0f, 1e-5f)},
      {"deepseek-r1-distill-llama-70b", "DeepSeek-R1-Distill-Llama-70B", "70.6B dense, llama GQA",
       dense_shape("llama", 128256, 131072, 8192, 80, 28672, 64, 8, 500000.0f, 1e-5f)},
      {"deepseek-llm-7b", "deepseek-llm-7b", "6.9B dense, llama MHA",
       dense_shape("llama", 102400, 4096, 4096, 30, 11008, 32, 32, 10000.0f, 1e-6f)},
      {"deepseek-llm-67b", "deepseek-llm-67b", "67B dense, llama GQA",
       dense_shape("llama", 102400, 4096, 8192, 95, 22016, 64, 8, 10000.0f, 1e-6f)},
      {"deepseek-coder-6.7b", "deepseek-coder-6.7b", "6.7B dense, llama MHA",
       dense_shape("llama", 32256, 16384, 4096, 32, 11008, 32, 32, 100000.0f, 1e-6f)},
      {"deepseek-coder-33b", "deepseek-coder-33b", "33B dense, llama GQA",
       dense_shape("llama", 32256, 16384, 7168, 62, 19200, 56, 8, 100000.0f, 1e-6f)},
  };
}

std::optional<ModelPreset> find_model_preset(std::string_view name) {
  for (const ModelPreset& p : model_presets())
    if (name == p.name) return p;
  return std::nullopt;
}

}  // namespace fathom
