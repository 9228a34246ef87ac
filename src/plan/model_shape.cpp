#include "plan/model_shape.h"

#include <cctype>
#include <cstdlib>

namespace fathom::plan {

namespace {

struct Preset {
  const char* name;
  const char* summary;
  ModelShape shape;
};

ModelShape dense(const char* arch, int64_t vocab, int64_t ctx, int64_t embd, int64_t layers, int64_t ff, int64_t heads,
                 int64_t heads_kv, bool qkv_bias) {
  ModelShape s;
  s.arch = arch;
  s.n_vocab = vocab;
  s.n_ctx_train = ctx;
  s.n_embd = embd;
  s.n_layer = layers;
  s.n_ff = ff;
  s.n_head = heads;
  s.n_head_kv = heads_kv;
  s.head_dim = embd / heads;
  s.qkv_bias = qkv_bias;
  return s;
}

// DeepSeek-V2/V3 family: MLA attention + DeepSeekMoE with leading dense blocks.
ModelShape mla_moe(int64_t vocab, int64_t embd, int64_t layers, int64_t ff, int64_t heads, int64_t q_lora,
                   int64_t experts, int64_t used, int64_t shared, int64_t ff_exp, int64_t dense_lead) {
  ModelShape s = dense("deepseek2", vocab, 163840, embd, layers, ff, heads, heads, false);
  s.q_lora_rank = q_lora;
  s.kv_lora_rank = 512;
  s.rope_dim = 64;
  s.nope_dim = 128;
  s.v_head_dim = 128;
  s.head_dim = s.nope_dim + s.rope_dim;
  s.n_expert = experts;
  s.n_expert_used = used;
  s.n_expert_shared = shared;
  s.n_ff_exp = ff_exp;
  s.n_layer_dense_lead = dense_lead;
  return s;
}

// Shapes from the published Hugging Face config.json of each model.
std::vector<Preset> presets() {
  ModelShape moe16 = dense("deepseek", 102400, 4096, 2048, 28, 10944, 16, 16, false);
  moe16.n_expert = 64;
  moe16.n_expert_used = 6;
  moe16.n_expert_shared = 2;
  moe16.n_ff_exp = 1408;
  moe16.n_layer_dense_lead = 1;
  ModelShape v3 = mla_moe(129280, 7168, 61, 18432, 128, 1536, 256, 8, 1, 2048, 3);
  v3.expert_score_bias = true;  // V3 routes with a sigmoid plus e_score_correction_bias
  return {
      {"deepseek-v3", "671B MoE (37B active), deepseek2: MLA + 256 routed experts", v3},
      {"deepseek-r1", "671B MoE (37B active), same architecture as deepseek-v3", v3},
      {"deepseek-v2", "236B MoE (21B active), deepseek2: MLA + 160 routed experts",
       mla_moe(102400, 5120, 60, 12288, 128, 1536, 160, 6, 2, 1536, 1)},
      {"deepseek-v2-lite", "15.7B MoE (2.4B active), deepseek2: MLA (no q LoRA) + 64 experts",
       mla_moe(102400, 2048, 27, 10944, 16, 0, 64, 6, 2, 1408, 1)},
      {"deepseek-moe-16b", "16.4B MoE (2.8B active), deepseek: MHA + 64 experts", moe16},
      {"deepseek-r1-distill-qwen-1.5b", "1.8B dense, qwen2 GQA", dense("qwen2", 151936, 131072, 1536, 28, 8960, 12, 2, true)},
      {"deepseek-r1-distill-qwen-7b", "7.6B dense, qwen2 GQA", dense("qwen2", 152064, 131072, 3584, 28, 18944, 28, 4, true)},
      {"deepseek-r1-distill-qwen-14b", "14.8B dense, qwen2 GQA", dense("qwen2", 152064, 131072, 5120, 48, 13824, 40, 8, true)},
      {"deepseek-r1-distill-qwen-32b", "32.8B dense, qwen2 GQA", dense("qwen2", 152064, 131072, 5120, 64, 27648, 40, 8, true)},
      {"deepseek-r1-distill-llama-8b", "8.0B dense, llama GQA", dense("llama", 128256, 131072, 4096, 32, 14336, 32, 8, false)},
      {"deepseek-r1-distill-llama-70b", "70.6B dense, llama GQA", dense("llama", 128256, 131072, 8192, 80, 28672, 64, 8, false)},
      {"deepseek-llm-7b", "6.9B dense, llama MHA", dense("llama", 102400, 4096, 4096, 30, 11008, 32, 32, false)},
      {"deepseek-llm-67b", "67B dense, llama GQA", dense("llama", 102400, 4096, 8192, 95, 22016, 64, 8, false)},
      {"deepseek-coder-6.7b", "6.7B dense, llama MHA", dense("llama", 32256, 16384, 4096, 32, 11008, 32, 32, false)},
      {"deepseek-coder-33b", "33B dense, llama GQA", dense("llama", 32256, 16384, 7168, 62, 19200, 56, 8, false)},
  };
}

std::string lower(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

}  // namespace

bool TensorShape::is_expert() const { return name.find("_exps.") != std::string::npos; }

int TensorShape::layer() const {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

std::vector<PresetInfo> list_presets() {
  std::vector<PresetInfo> out;
  // The names/summaries are string literals, so pointers into the temporary table stay valid.
  for (const Preset& p : presets()) out.push_back({p.name, p.summary});
  return out;
}

std::vector<TensorShape> synthesize_tensors(const ModelShape& s) {
  std::vector<TensorShape> out;
  auto add = [&](std::string name, std::initializer_list<int64_t> ne) {
    TensorShape t;
    t.name = std::move(name);
    int i = 0;
    for (int64_t n : ne) t.ne[i++] = n;
    t.n_dims = i;
    out.push_back(std::move(t));
  };
  add("token_embd.weight", {s.n_embd, s.n_vocab});
  add("output_norm.weight", {s.n_embd});
  if (!s.tied_output) add("output.weight", {s.n_embd, s.n_vocab});
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.n_embd});
    add(p + "ffn_norm.weight", {s.n_embd});
    if (s.is_mla()) {
      const int64_t qk_dim = s.nope_dim + s.rope_dim;
      if (s.q_lora_rank > 0) {
        add(p + "attn_q_a.weight", {s.n_embd, s.q_lora_rank});
        add(p + "attn_q_a_norm.weight", {s.q_lora_rank});
        add(p + "attn_q_b.weight", {s.q_lora_rank, s.n_head * qk_dim});
      } else {
        add(p + "attn_q.weight", {s.n_embd, s.n_head * qk_dim});
      }
      add(p + "attn_kv_a_mqa.weight", {s.n_embd, s.kv_lora_rank + s.rope_dim});
      add(p + "attn_kv_a_norm.weight", {s.kv_lora_rank});
      add(p + "attn_kv_b.weight", {s.kv_lora_rank, s.n_head * (s.nope_dim + s.v_head_dim)});
      add(p + "attn_output.weight", {s.n_head * s.v_head_dim, s.n_embd});
    } else {
      add(p + "attn_q.weight", {s.n_embd, s.n_head * s.head_dim});
      add(p + "attn_k.weight", {s.n_embd, s.n_head_kv * s.head_dim});
      add(p + "attn_v.weight", {s.n_embd, s.n_head_kv * s.head_dim});
      add(p + "attn_output.weight", {s.n_head * s.head_dim, s.n_embd});
      if (s.qkv_bias) {
        add(p + "attn_q.bias", {s.n_head * s.head_dim});
        add(p + "attn_k.bias", {s.n_head_kv * s.head_dim});
        add(p + "attn_v.bias", {s.n_head_kv * s.head_dim});
      }
    }
    if (!s.is_moe() || l < s.n_layer_dense_lead) {
      add(p + "ffn_gate.weight", {s.n_embd, s.n_ff});
      add(p + "ffn_up.weight", {s.n_embd, s.n_ff});
      add(p + "ffn_down.weight", {s.n_ff, s.n_embd});
      continue;
    }
    add(p + "ffn_gate_inp.weight", {s.n_embd, s.n_expert});
    if (s.expert_score_bias) add(p + "exp_probs_b.bias", {s.n_expert});
    add(p + "ffn_gate_exps.weight", {s.n_embd, s.n_ff_exp, s.n_expert});
    add(p + "ffn_up_exps.weight", {s.n_embd, s.n_ff_exp, s.n_expert});
    add(p + "ffn_down_exps.weight", {s.n_ff_exp, s.n_embd, s.n_expert});
    if (s.n_expert_shared > 0) {
      const int64_t ff_sh = s.n_ff_exp * s.n_expert_shared;
      add(p + "ffn_gate_shexp.weight", {s.n_embd, ff_sh});
      add(p + "ffn_up_shexp.weight", {s.n_embd, ff_sh});
      add(p + "ffn_down_shexp.weight", {ff_sh, s.n_embd});
    }
  }
  return out;
}

Expected<ModelDesc> model_from_preset(std::string_view name) {
  const std::string want = lower(name);
  std::string names;
  for (const Preset& p : presets()) {
    if (want == p.name) {
      ModelDesc d;
      d.shape = p.shape;
      d.shape.name = p.name;
      d.tensors = synthesize_tensors(d.shape);
      return d;
    }
    names += std::string(names.empty() ? "" : ", ") + p.name;
  }
  return error(ErrorCode::kNotFound, "unknown architecture preset '" + std::string(name) + "'; known: " + names);
}

}  // namespace fathom::plan
