#include "model/config.h"

#include <cmath>

#include "gguf/gguf.h"

namespace fathom {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::kLlama: return "llama";
    case Arch::kQwen2: return "qwen2";
    case Arch::kDeepseek: return "deepseek";
    case Arch::kDeepseek2: return "deepseek2";
  }
  return "?";
}

namespace {

// Reads "{arch}.{suffix}" with the helper given; keeps `*out` when the key is absent.
struct KeyReader {
  const gguf::GgufFile& file;
  std::string prefix;  // "{arch}."

  Status require_int(const char* suffix, int64_t* out) const {
    const auto v = file.get_int(prefix + suffix);
    if (!v) return error(ErrorCode::kInvalidFile, strprintf("%s: missing required key '%s%s'", file.path().c_str(), prefix.c_str(), suffix));
    *out = *v;
    return Status::ok();
  }
  void opt_int(const char* suffix, int64_t* out) const {
    if (const auto v = file.get_int(prefix + suffix)) *out = *v;
  }
  void opt_float(const char* suffix, float* out) const {
    if (const auto v = file.get_float(prefix + suffix)) *out = static_cast<float>(*v);
  }
  void opt_bool(const char* suffix, bool* out) const {
    if (const auto v = file.get_bool(prefix + suffix)) *out = *v;
  }
};

Status positive(const gguf::GgufFile& file, const char* what, int64_t v, int64_t max) {
  if (v <= 0 || v > max)
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s = %lld is out of range (1..%lld)", file.path().c_str(), what,
                                                    static_cast<long long>(v), static_cast<long long>(max)));
  return Status::ok();
}

}  // namespace

Expected<LayerCounts> read_layer_counts(const gguf::GgufFile& file, const std::string& arch) {
  const KeyReader r{file, arch + "."};
  LayerCounts c;
  FATHOM_RETURN_IF_ERROR(r.require_int("block_count", &c.n_layer_all));
  r.opt_int("nextn_predict_layers", &c.n_nextn);
  if (c.n_nextn < 0 || c.n_nextn >= c.n_layer_all)
    return error(ErrorCode::kInvalidFile, strprintf("%s: nextn_predict_layers %lld must be below block_count %lld", file.path().c_str(),
                                                    static_cast<long long>(c.n_nextn), static_cast<long long>(c.n_layer_all)));
  return c;
}

Expected<ModelConfig> ModelConfig::from_gguf(const gguf::GgufFile& file) {
  ModelConfig c;
  c.arch_name = file.architecture();
  if (c.arch_name == "llama") {
    c.arch = Arch::kLlama;
  } else if (c.arch_name == "qwen2") {
    c.arch = Arch::kQwen2;
  } else if (c.arch_name == "deepseek") {
    c.arch = Arch::kDeepseek;
  } else if (c.arch_name == "deepseek2") {
    c.arch = Arch::kDeepseek2;
  } else if (c.arch_name.empty()) {
    return error(ErrorCode::kInvalidFile, file.path() + ": no general.architecture key; is this a model file?");
  } else {
    return error(ErrorCode::kUnsupported, strprintf("%s: architecture '%s' is not supported (supported: llama, qwen2, deepseek, deepseek2)",
                                                    file.path().c_str(), c.arch_name.c_str()));
  }
  c.name = file.get_string("general.name").value_or("");
  const KeyReader r{file, c.arch_name + "."};
  FATHOM_RETURN_IF_ERROR(r.require_int("embedding_length", &c.n_embd));
  FATHOM_ASSIGN_OR_RETURN(const LayerCounts layers, read_layer_counts(file, c.arch_name));
  c.n_layer = layers.n_layer();  // MTP layers (blk.N for N >= n_layer) are not part of the forward pass
  c.n_nextn_layers = layers.n_nextn;
  FATHOM_RETURN_IF_ERROR(r.require_int("attention.head_count", &c.n_head));
  r.opt_int("feed_forward_length", &c.n_ff);
  r.opt_int("context_length", &c.n_ctx_train);
  c.n_head_kv = c.n_head;
  r.opt_int("attention.head_count_kv", &c.n_head_kv);
  FATHOM_RETURN_IF_ERROR(positive(file, "embedding_length", c.n_embd, 1 << 20));
  FATHOM_RETURN_IF_ERROR(positive(file, "block_count", c.n_layer, 4096));
  FATHOM_RETURN_IF_ERROR(positive(file, "attention.head_count", c.n_head, 1 << 16));
  FATHOM_RETURN_IF_ERROR(positive(file, "attention.head_count_kv", c.n_head_kv, c.n_head));
  if (c.n_head % c.n_head_kv != 0)
    return error(ErrorCode::kInvalidFile, strprintf("%s: head_count %lld is not a multiple of head_count_kv %lld", file.path().c_str(),
                                                    static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv)));
  c.head_dim_k = c.n_embd / c.n_head;
  r.opt_int("attention.key_length", &c.head_dim_k);
  c.head_dim_v = c.head_dim_k;
  r.opt_int("attention.value_length", &c.head_dim_v);
  // deepseek2 files converted for MLA give the per-head q/k and v sizes as *_mla keys (key_length
  // then describes the latent cache row); older files give them as key_length/value_length.
  if (const auto k_mla = file.get_int(c.arch_name + ".attention.key_length_mla")) c.head_dim_k = *k_mla;
  if (const auto v_mla = file.get_int(c.arch_name + ".attention.value_length_mla")) c.head_dim_v = *v_mla;
  r.opt_float("attention.layer_norm_rms_epsilon", &c.rms_norm_eps);
  c.n_rot = c.head_dim_k;
  r.opt_int("rope.dimension_count", &c.n_rot);
  r.opt_float("rope.freq_base", &c.rope_freq_base);
  if (c.n_rot <= 0 || c.n_rot % 2 != 0)
    return error(ErrorCode::kInvalidFile, strprintf("%s: rope.dimension_count %lld must be positive and even", file.path().c_str(),
                                                    static_cast<long long>(c.n_rot)));

  const std::string scaling = file.get_string(c.arch_name + ".rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    c.rope_scaling = RopeScaling::kLinear;
  } else if (scaling == "yarn") {
    c.rope_scaling = RopeScaling::kYarn;
  } else if (scaling != "none" && !scaling.empty()) {
    return error(ErrorCode::kUnsupported, strprintf("%s: rope scaling type '%s' is not supported (none, linear, yarn)",
                                                    file.path().c_str(), scaling.c_str()));
  }
  r.opt_float("rope.scaling.factor", &c.rope_scaling_factor);
  // Older files give linear scaling only as rope.scale_linear.
  if (const auto lin = file.get_float(c.arch_name + ".rope.scale_linear"); lin && c.rope_scaling == RopeScaling::kNone && *lin != 1.0) {
    c.rope_scaling = RopeScaling::kLinear;
    c.rope_scaling_factor = static_cast<float>(*lin);
  }
  if (c.rope_scaling != RopeScaling::kNone && !(c.rope_scaling_factor > 0.0f))
    return error(ErrorCode::kInvalidFile, file.path() + ": rope.scaling.factor must be positive");
  r.opt_int("rope.scaling.original_context_length", &c.rope_orig_ctx);
  r.opt_float("rope.scaling.yarn_log_multiplier", &c.yarn_log_multiplier);
  r.opt_float("rope.scaling.yarn_beta_fast", &c.yarn_beta_fast);
  r.opt_float("rope.scaling.yarn_beta_slow", &c.yarn_beta_slow);

  // llama.cpp's rope type per architecture: qwen2 uses NEOX ordering, llama/deepseek NORM.
  c.rope_type = c.arch == Arch::kQwen2 ? RopeType::kNeox : RopeType::kNormal;

  // MoE / MLA keys (deepseek, deepseek2).
  r.opt_int("attention.q_lora_rank", &c.q_lora_rank);
  r.opt_int("attention.kv_lora_rank", &c.kv_lora_rank);
  r.opt_int("expert_count", &c.n_expert);
  r.opt_int("expert_used_count", &c.n_expert_used);
  r.opt_int("expert_shared_count", &c.n_expert_shared);
  r.opt_int("expert_feed_forward_length", &c.n_ff_exp);
  r.opt_int("leading_dense_block_count", &c.n_layer_dense_lead);
  r.opt_int("expert_group_count", &c.n_expert_groups);
  r.opt_int("expert_group_used_count", &c.n_expert_groups_used);
  r.opt_bool("expert_weights_norm", &c.expert_weights_norm);
  r.opt_float("expert_weights_scale", &c.expert_weights_scale);
  int64_t gating = c.expert_gating_func;
  r.opt_int("expert_gating_func", &gating);
  c.expert_gating_func = static_cast<int>(gating);

  const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight");
  if (!embd) return error(ErrorCode::kInvalidFile, file.path() + ": tensor 'token_embd.weight' is missing");
  if (embd->view.ne[0] != c.n_embd)
    return error(ErrorCode::kInvalidFile, strprintf("%s: token_embd.weight has %lld columns, expected embedding_length %lld",
                                                    file.path().c_str(), static_cast<long long>(embd->view.ne[0]), static_cast<long long>(c.n_embd)));
  c.n_vocab = embd->view.ne[1];
  c.tied_output = file.find_tensor("output.weight") == nullptr;
  c.has_qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (c.n_ctx_train <= 0) c.n_ctx_train = 2048;
  if (c.n_expert > 0) {
    if (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert)
      return error(ErrorCode::kInvalidFile, strprintf("%s: expert_used_count %lld must be in 1..expert_count (%lld)", file.path().c_str(),
                                                      static_cast<long long>(c.n_expert_used), static_cast<long long>(c.n_expert)));
    if (c.n_expert_groups > 1 && (c.n_expert % c.n_expert_groups != 0 || c.n_expert_groups_used <= 0 ||
                                  c.n_expert_groups_used > c.n_expert_groups))
      return error(ErrorCode::kInvalidFile, file.path() + ": expert_group_count / expert_group_used_count are inconsistent");
    if (c.expert_gating_func != 1 && c.expert_gating_func != 2)
      return error(ErrorCode::kUnsupported, strprintf("%s: expert_gating_func %d is not supported (1 softmax, 2 sigmoid)",
                                                      file.path().c_str(), c.expert_gating_func));
  }
  if (c.arch == Arch::kDeepseek2) {
    if (c.kv_lora_rank <= 0) return error(ErrorCode::kInvalidFile, file.path() + ": deepseek2 needs attention.kv_lora_rank");
    if (c.head_dim_k <= c.n_rot)
      return error(ErrorCode::kInvalidFile, file.path() + ": deepseek2 key length must exceed rope.dimension_count");
  }
  return c;
}

std::string ModelConfig::summary() const {
  std::string s = strprintf("%s, %lld layers, n_embd %lld, %lld heads (%lld kv, head dim %lld), n_ff %lld, vocab %lld, ctx %lld",
                            arch_name.c_str(), static_cast<long long>(n_layer), static_cast<long long>(n_embd),
                            static_cast<long long>(n_head), static_cast<long long>(n_head_kv), static_cast<long long>(head_dim_k),
                            static_cast<long long>(n_ff), static_cast<long long>(n_vocab), static_cast<long long>(n_ctx_train));
  if (n_expert > 0)
    s += strprintf(", %lld experts (%lld used, %lld shared)", static_cast<long long>(n_expert), static_cast<long long>(n_expert_used),
                   static_cast<long long>(n_expert_shared));
  if (kv_lora_rank > 0) s += strprintf(", MLA kv_lora_rank %lld", static_cast<long long>(kv_lora_rank));
  if (n_nextn_layers > 0)
    s += strprintf(", %lld MTP layer(s) present, not used yet (speculative decoding)", static_cast<long long>(n_nextn_layers));
  return s;
}

}  // namespace fathom
