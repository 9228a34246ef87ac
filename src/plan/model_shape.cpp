#include "plan/model_shape.h"

#include <cctype>
#include <cstdlib>

#include "model/shape_presets.h"

namespace fathom::plan {

namespace {

// A published model's shape (model/shape_presets.h, the rows `fathom synth` reads too) as the
// planner describes it.
ModelShape plan_shape(const ArchShape& a) {
  ModelShape s;
  s.arch = a.arch;
  s.n_vocab = a.n_vocab;
  s.n_ctx_train = a.n_ctx_train;
  s.n_embd = a.n_embd;
  s.n_layer = a.n_layer;
  s.n_ff = a.n_ff;
  s.n_head = a.n_head;
  s.n_head_kv = a.n_head_kv;
  s.head_dim = a.is_mla() ? a.mla.n_nope + a.mla.n_rot : a.head_dim();
  s.qkv_bias = a.qkv_bias();
  s.q_lora_rank = a.mla.q_lora_rank;
  s.kv_lora_rank = a.mla.kv_lora_rank;
  s.rope_dim = a.mla.n_rot;
  s.nope_dim = a.mla.n_nope;
  s.v_head_dim = a.mla.n_v;
  s.n_expert = a.moe.n_expert;
  s.n_expert_used = a.moe.n_expert_used;
  s.n_expert_shared = a.moe.n_expert_shared;
  s.n_ff_exp = a.moe.n_ff_exp;
  s.n_layer_dense_lead = a.moe.n_layer_dense_lead;
  s.expert_score_bias = a.moe.gating_func == 2;  // V3 routes with a sigmoid plus e_score_correction_bias
  return s;
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
  for (const ModelPreset& p : model_presets()) out.push_back({p.name, p.summary});
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
  if (const std::optional<ModelPreset> p = find_model_preset(lower(name))) {
    ModelDesc d;
    d.shape = plan_shape(p->shape);
    d.shape.name = p->name;
    d.tensors = synthesize_tensors(d.shape);
    return d;
  }
  std::string names;
  for (const ModelPreset& p : model_presets()) names += std::string(names.empty() ? "" : ", ") + p.name;
  return error(ErrorCode::kNotFound, "unknown architecture preset '" + std::string(name) + "'; known: " + names);
}

}  // namespace fathom::plan
