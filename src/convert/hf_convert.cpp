#include "convert/hf_convert.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>

#include "convert/hf_checkpoint.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "quant/ftype.h"
#include "quant/quant.h"

namespace fathom::convert {

namespace {

using json = nlohmann::json;

enum class HfArch { kLlama, kQwen2, kDeepseek, kDeepseek2 };

// A GGUF tensor to write and how to produce it: matrix by matrix (ne[2] of them; experts and
// per-head MLA matrices), so a stacked expert tensor is never held in memory whole.
struct OutTensor {
  std::string name;          // GGUF name
  std::vector<int64_t> ne;   // GGUF extents, innermost first
  DType type;                // stored type
  // Fills out ([ne[0] * ne[1]] f32) with matrix `mat`; called for mat = 0, 1, ... in order.
  std::function<Status(int64_t mat, float* out)> produce;
};

// Typed access to config.json with errors that name the key.
struct Hparams {
  const json& c;
  std::optional<int64_t> opt_int(const char* key) const {
    auto it = c.find(key);
    if (it == c.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
  }
  std::optional<double> opt_float(const char* key) const {
    auto it = c.find(key);
    if (it == c.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  }
  Expected<int64_t> req_int(const char* key) const {
    auto v = opt_int(key);
    if (!v || *v < 0) return error(ErrorCode::kInvalidFile, strprintf("config.json: missing or invalid integer '%s'", key));
    return *v;
  }
};

// llama.cpp's LlamaModel.permute: Hugging Face stores each head's rotary dims as two halves;
// llama.cpp's normal RoPE rotates adjacent pairs. Row h*D + 2i + j <- row h*D + j*D/2 + i.
void permute_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t n_head) {
  const int64_t d = rows / n_head;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::copy_n(w.data() + (h * d + j * (d / 2) + i) * cols, cols, out.data() + (h * d + 2 * i + j) * cols);
  w.swap(out);
}

class Planner {
 public:
  Planner(const HfCheckpoint& ck, const ConvertOptions& o) : ck_(ck), o_(o) {}

  std::vector<OutTensor>& tensors() { return out_; }
  const std::set<std::string>& used() const { return used_; }

  // The converter's per-tensor type: 1-D tensors, norms, the MoE router and biases stay F32.
  DType type_for(const std::string& name, const std::vector<int64_t>& ne) const {
    int n_dims = 0;
    for (size_t i = 0; i < ne.size(); ++i)
      if (ne[i] > 1) n_dims = static_cast<int>(i) + 1;
    if (n_dims <= 1 || name.ends_with("_norm.weight") || name.find("ffn_gate_inp") != std::string::npos ||
        !name.ends_with(".weight"))
      return DType::F32;
    if (o_.outtype == DType::Q8_0 && ne[0] % 32 != 0) return DType::F16;  // gguf-py's QuantError fallback
    return o_.outtype;
  }

  // A tensor copied from one HF tensor; n_head > 0 applies the Q/K RoPE permutation.
  Status plain(const std::string& gguf_name, const std::string& hf, bool required = true, int64_t permute_heads = 0) {
    const StTensor* t = ck_.find(hf);
    if (t == nullptr) {
      if (!required) return Status::ok();
      return error(ErrorCode::kNotFound, ck_.dir() + ": checkpoint has no tensor " + hf + " (needed for " + gguf_name + ")");
    }
    if (t->shape.empty() || t->shape.size() > 2)
      return error(ErrorCode::kUnsupported, hf + ": expected a 1-D or 2-D tensor");
    mark(hf);
    std::vector<int64_t> ne(t->shape.rbegin(), t->shape.rend());
    const int64_t rows = t->shape[0], cols = t->shape.size() == 2 ? t->shape[1] : 1;
    if (permute_heads > 0 && rows % (2 * permute_heads) != 0)
      return error(ErrorCode::kInvalidFile, strprintf("%s: %lld rows do not split into %lld heads of even size", hf.c_str(),
                                                      static_cast<long long>(rows), static_cast<long long>(permute_heads)));
    const HfCheckpoint* ck = &ck_;
    out_.push_back({gguf_name, ne, type_for(gguf_name, ne), [ck, hf, rows, cols, permute_heads](int64_t, float* out) -> Status {
                      std::vector<float> w;
                      FATHOM_RETURN_IF_ERROR(ck->read_f32(hf, &w));
                      if (permute_heads > 0) permute_rows(w, rows, cols, permute_heads);
                      std::copy(w.begin(), w.end(), out);
                      return Status::ok();
                    }});
    return Status::ok();
  }

  // n_expert HF matrices "<prefix>.<e>.<suffix>" stacked into one [n_expert, out, in] tensor.
  Status experts(const std::string& gguf_name, const std::string& prefix, const std::string& suffix, int64_t n_expert) {
    const StTensor* first = ck_.find(prefix + ".0." + suffix);
    if (first == nullptr || first->shape.size() != 2)
      return error(ErrorCode::kNotFound, ck_.dir() + ": checkpoint has no 2-D tensor " + prefix + ".0." + suffix);
    for (int64_t e = 0; e < n_expert; ++e) {
      const std::string n = prefix + "." + std::to_string(e) + "." + suffix;
      const StTensor* t = ck_.find(n);
      if (t == nullptr || t->shape != first->shape)
        return error(ErrorCode::kInvalidFile, ck_.dir() + ": expert tensor " + n + " is missing or differs in shape from expert 0");
      mark(n);
    }
    std::vector<int64_t> ne = {first->shape[1], first->shape[0], n_expert};
    const HfCheckpoint* ck = &ck_;
    out_.push_back({gguf_name, ne, type_for(gguf_name, ne), [ck, prefix, suffix](int64_t e, float* out) -> Status {
                      std::vector<float> w;
                      FATHOM_RETURN_IF_ERROR(ck->read_f32(prefix + "." + std::to_string(e) + "." + suffix, &w));
                      std::copy(w.begin(), w.end(), out);
                      return Status::ok();
                    }});
    return Status::ok();
  }

  // MLA kv_b_proj [n_head * (nope + v), r] split per head into attn_k_b (k rows transposed:
  // ne {nope, r, n_head}) and attn_v_b (ne {r, v, n_head}), as current llama.cpp converts it.
  Status split_kv_b(const std::string& layer_prefix, const std::string& hf, int64_t n_head, int64_t nope, int64_t v_dim) {
    const StTensor* t = ck_.find(hf);
    if (t == nullptr) return error(ErrorCode::kNotFound, ck_.dir() + ": checkpoint has no tensor " + hf);
    if (t->shape.size() != 2 || t->shape[0] != n_head * (nope + v_dim))
      return error(ErrorCode::kInvalidFile, hf + ": shape is not [n_head * (qk_nope_head_dim + v_head_dim), kv_lora_rank]");
    mark(hf);
    const int64_t r = t->shape[1], per_head = nope + v_dim;
    // Both tensors read the same source; it is loaded once and dropped after the last head.
    auto cache = std::make_shared<std::vector<float>>();
    const HfCheckpoint* ck = &ck_;
    auto load = [ck, hf, cache, n_head](int64_t h) -> Status {
      if (h == 0) FATHOM_RETURN_IF_ERROR(ck->read_f32(hf, cache.get()));
      return Status::ok();
    };
    auto release = [cache, n_head](int64_t h) {
      if (h == n_head - 1) std::vector<float>().swap(*cache);
    };
    std::vector<int64_t> ne_k = {nope, r, n_head}, ne_v = {r, v_dim, n_head};
    out_.push_back({layer_prefix + "attn_k_b.weight", ne_k, type_for(layer_prefix + "attn_k_b.weight", ne_k),
                    [=](int64_t h, float* out) -> Status {
                      FATHOM_RETURN_IF_ERROR(load(h));
                      const float* src = cache->data() + h * per_head * r;  // rows j < nope of head h
                      for (int64_t ci = 0; ci < r; ++ci)
                        for (int64_t j = 0; j < nope; ++j) out[ci * nope + j] = src[j * r + ci];
                      release(h);
                      return Status::ok();
                    }});
    out_.push_back({layer_prefix + "attn_v_b.weight", ne_v, type_for(layer_prefix + "attn_v_b.weight", ne_v),
                    [=](int64_t h, float* out) -> Status {
                      FATHOM_RETURN_IF_ERROR(load(h));
                      const float* src = cache->data() + (h * per_head + nope) * r;
                      std::copy(src, src + v_dim * r, out);
                      release(h);
                      return Status::ok();
                    }});
    return Status::ok();
  }

  // llama3 rope scaling: per-pair frequency divisors as llama.cpp's rope_freqs.weight.
  void rope_freqs(std::vector<float> factors) {
    std::vector<int64_t> ne = {static_cast<int64_t>(factors.size())};
    out_.push_back({"rope_freqs.weight", ne, DType::F32, [factors](int64_t, float* out) -> Status {
                      std::copy(factors.begin(), factors.end(), out);
                      return Status::ok();
                    }});
  }

 private:
  void mark(const std::string& hf) {
    used_.insert(hf);
    if (ck_.has(hf + "_scale_inv")) used_.insert(hf + "_scale_inv");
  }
  const HfCheckpoint& ck_;
  const ConvertOptions& o_;
  std::vector<OutTensor> out_;   // tensors in write order
  std::set<std::string> used_;   // HF tensors consumed
};

Expected<HfArch> detect_arch(const json& config) {
  const auto archs = config.find("architectures");
  if (archs == config.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    return error(ErrorCode::kInvalidFile, "config.json: no \"architectures\" list");
  const std::string a = (*archs)[0].get<std::string>();
  if (a == "LlamaForCausalLM") return HfArch::kLlama;
  if (a == "Qwen2ForCausalLM") return HfArch::kQwen2;
  if (a == "DeepseekForCausalLM") return HfArch::kDeepseek;
  if (a == "DeepseekV2ForCausalLM" || a == "DeepseekV3ForCausalLM") return HfArch::kDeepseek2;
  return error(ErrorCode::kUnsupported, "architecture " + a +
                                            " is not supported (LlamaForCausalLM, Qwen2ForCausalLM, DeepseekForCausalLM, "
                                            "DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)");
}

const char* gguf_arch_name(HfArch a) {
  switch (a) {
    case HfArch::kLlama: return "llama";
    case HfArch::kQwen2: return "qwen2";
    case HfArch::kDeepseek: return "deepseek";
    case HfArch::kDeepseek2: return "deepseek2";
  }
  return "?";
}

// llama.cpp's llama3 rope_freqs: 1 for short wavelengths, `factor` for long, smooth between.
std::vector<float> llama3_rope_factors(const json& rs, double base, int64_t dim) {
  const double factor = rs.value("factor", 8.0), low = rs.value("low_freq_factor", 1.0), high = rs.value("high_freq_factor", 4.0);
  const double old_ctx = rs.value("original_max_position_embeddings", 8192.0);
  const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const double freq = 1.0 / std::pow(base, static_cast<double>(i) / static_cast<double>(dim));
    const double wavelen = 2.0 * 3.14159265358979323846 / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      out.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / factor + smooth)));
    }
  }
  return out;
}

// Keys written by llama.cpp's TextModel.set_gguf_parameters and the per-architecture overrides.
Status set_hparams(HfArch arch, const Hparams& hp, const ConvertOptions& o, gguf::GgufWriter& w, Planner& plan) {
  const std::string k = std::string(gguf_arch_name(arch)) + ".";
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_layer, hp.req_int("num_hidden_layers"));
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_embd, hp.req_int("hidden_size"));
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_head, hp.req_int("num_attention_heads"));
  w.set_u32(k + "block_count", static_cast<uint32_t>(n_layer));
  if (auto v = hp.opt_int("max_position_embeddings")) w.set_u32(k + "context_length", static_cast<uint32_t>(*v));
  w.set_u32(k + "embedding_length", static_cast<uint32_t>(n_embd));
  if (auto v = hp.opt_int("intermediate_size")) w.set_u32(k + "feed_forward_length", static_cast<uint32_t>(*v));
  w.set_u32(k + "attention.head_count", static_cast<uint32_t>(n_head));
  // MLA is stored as MQA with one latent "head" (llama.cpp's deepseek2 convention).
  if (arch == HfArch::kDeepseek2) {
    w.set_u32(k + "attention.head_count_kv", 1);
  } else if (auto v = hp.opt_int("num_key_value_heads")) {
    w.set_u32(k + "attention.head_count_kv", static_cast<uint32_t>(*v));
  }
  if (auto v = hp.opt_float("rope_theta")) w.set_f32(k + "rope.freq_base", static_cast<float>(*v));
  if (auto v = hp.opt_float("rms_norm_eps")) w.set_f32(k + "attention.layer_norm_rms_epsilon", static_cast<float>(*v));
  if (auto v = hp.opt_int("num_experts_per_tok")) w.set_u32(k + "expert_used_count", static_cast<uint32_t>(*v));
  if (auto v = hp.opt_int("head_dim"); v && arch != HfArch::kDeepseek2) {
    w.set_u32(k + "attention.key_length", static_cast<uint32_t>(*v));
    w.set_u32(k + "attention.value_length", static_cast<uint32_t>(*v));
  }
  w.set_u32("general.file_type", outtype_file_type(o.outtype));
  const int64_t head_dim = hp.opt_int("head_dim").value_or(n_head > 0 ? n_embd / n_head : 0);
  const json rope_scaling = hp.c.contains("rope_scaling") && hp.c["rope_scaling"].is_object() ? hp.c["rope_scaling"] : json::object();
  const std::string rope_type = rope_scaling.value("rope_type", rope_scaling.value("type", ""));

  if (arch == HfArch::kLlama) {
    if (auto v = hp.opt_int("vocab_size")) w.set_u32(k + "vocab_size", static_cast<uint32_t>(*v));
    w.set_u32(k + "rope.dimension_count", static_cast<uint32_t>(head_dim));
    if (rope_type == "linear" && rope_scaling.contains("factor")) {
      w.set_string(k + "rope.scaling.type", "linear");
      w.set_f32(k + "rope.scaling.factor", rope_scaling["factor"].get<float>());
    } else if (rope_type == "llama3") {
      plan.rope_freqs(llama3_rope_factors(rope_scaling, hp.opt_float("rope_theta").value_or(10000.0), head_dim));
    }
  } else if (arch == HfArch::kQwen2) {
    if (rope_type == "yarn" && rope_scaling.contains("factor")) {
      w.set_string(k + "rope.scaling.type", "yarn");
      w.set_f32(k + "rope.scaling.factor", rope_scaling["factor"].get<float>());
      if (rope_scaling.contains("original_max_position_embeddings"))
        w.set_u32(k + "rope.scaling.original_context_length", rope_scaling["original_max_position_embeddings"].get<uint32_t>());
    }
  } else if (arch == HfArch::kDeepseek) {
    w.set_u32(k + "rope.dimension_count", static_cast<uint32_t>(head_dim));
    w.set_string(k + "rope.scaling.type", "none");
    FATHOM_ASSIGN_OR_RETURN(const int64_t dense, hp.req_int("first_k_dense_replace"));
    w.set_u32(k + "leading_dense_block_count", static_cast<uint32_t>(dense));
    if (auto v = hp.opt_int("vocab_size")) w.set_u32(k + "vocab_size", static_cast<uint32_t>(*v));
    FATHOM_ASSIGN_OR_RETURN(const int64_t n_ff_exp, hp.req_int("moe_intermediate_size"));
    w.set_u32(k + "expert_feed_forward_length", static_cast<uint32_t>(n_ff_exp));
    w.set_f32(k + "expert_weights_scale", 1.0f);
    FATHOM_ASSIGN_OR_RETURN(const int64_t n_expert, hp.req_int("n_routed_experts"));
    w.set_u32(k + "expert_count", static_cast<uint32_t>(n_expert));
    w.set_u32(k + "expert_shared_count", static_cast<uint32_t>(hp.opt_int("n_shared_experts").value_or(0)));
  } else {  // deepseek2
    FATHOM_ASSIGN_OR_RETURN(const int64_t dense, hp.req_int("first_k_dense_replace"));
    w.set_u32(k + "leading_dense_block_count", static_cast<uint32_t>(dense));
    if (auto v = hp.opt_int("vocab_size")) w.set_u32(k + "vocab_size", static_cast<uint32_t>(*v));
    if (auto v = hp.opt_int("q_lora_rank")) w.set_u32(k + "attention.q_lora_rank", static_cast<uint32_t>(*v));
    FATHOM_ASSIGN_OR_RETURN(const int64_t kv_lora, hp.req_int("kv_lora_rank"));
    FATHOM_ASSIGN_OR_RETURN(const int64_t nope, hp.req_int("qk_nope_head_dim"));
    FATHOM_ASSIGN_OR_RETURN(const int64_t rope_dim, hp.req_int("qk_rope_head_dim"));
    FATHOM_ASSIGN_OR_RETURN(const int64_t v_dim, hp.req_int("v_head_dim"));
    w.set_u32(k + "attention.kv_lora_rank", static_cast<uint32_t>(kv_lora));
    if (o.legacy_mla) {  // the pre-split convention: per-head K/V sizes in key/value_length
      w.set_u32(k + "attention.key_length", static_cast<uint32_t>(nope + rope_dim));
      w.set_u32(k + "attention.value_length", static_cast<uint32_t>(v_dim));
    } else {
      w.set_u32(k + "attention.key_length", static_cast<uint32_t>(kv_lora + rope_dim));
      w.set_u32(k + "attention.value_length", static_cast<uint32_t>(kv_lora));
      w.set_u32(k + "attention.key_length_mla", static_cast<uint32_t>(nope + rope_dim));
      w.set_u32(k + "attention.value_length_mla", static_cast<uint32_t>(v_dim));
    }
    FATHOM_ASSIGN_OR_RETURN(const int64_t n_ff_exp, hp.req_int("moe_intermediate_size"));
    w.set_u32(k + "expert_feed_forward_length", static_cast<uint32_t>(n_ff_exp));
    FATHOM_ASSIGN_OR_RETURN(const int64_t n_expert, hp.req_int("n_routed_experts"));
    w.set_u32(k + "expert_count", static_cast<uint32_t>(n_expert));
    w.set_u32(k + "expert_shared_count", static_cast<uint32_t>(hp.opt_int("n_shared_experts").value_or(0)));
    w.set_f32(k + "expert_weights_scale", static_cast<float>(hp.opt_float("routed_scaling_factor").value_or(1.0)));
    w.set_bool(k + "expert_weights_norm", hp.c.value("norm_topk_prob", false));
    const std::string scoring = hp.c.value("scoring_func", "softmax");
    if (scoring != "softmax" && scoring != "sigmoid")
      return error(ErrorCode::kUnsupported, "config.json: scoring_func '" + scoring + "' is not supported (softmax, sigmoid)");
    w.set_u32(k + "expert_gating_func", scoring == "sigmoid" ? 2 : 1);
    // Group-limited routing (V2 "group_limited_greedy", V3 "noaux_tc"); plain "greedy" has none.
    if (hp.c.value("topk_method", "greedy") != "greedy") {
      if (auto g = hp.opt_int("n_group"); g && *g > 1) {
        w.set_u32(k + "expert_group_count", static_cast<uint32_t>(*g));
        w.set_u32(k + "expert_group_used_count", static_cast<uint32_t>(hp.opt_int("topk_group").value_or(*g)));
      }
    }
    w.set_u32(k + "rope.dimension_count", static_cast<uint32_t>(rope_dim));
    if (rope_type == "yarn" && rope_scaling.contains("factor")) {
      w.set_string(k + "rope.scaling.type", "yarn");
      w.set_f32(k + "rope.scaling.factor", rope_scaling["factor"].get<float>());
      if (rope_scaling.contains("original_max_position_embeddings"))
        w.set_u32(k + "rope.scaling.original_context_length", rope_scaling["original_max_position_embeddings"].get<uint32_t>());
      w.set_f32(k + "rope.scaling.yarn_log_multiplier", 0.1f * rope_scaling.value("mscale_all_dim", 0.0f));
    }
  }
  return Status::ok();
}

// Plans every tensor in write order: embeddings, blocks, output norm, output.
Status plan_tensors(HfArch arch, const Hparams& hp, const ConvertOptions& o, Planner& p) {
  FATHOM_RETURN_IF_ERROR(p.plain("token_embd.weight", "model.embed_tokens.weight"));
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_layer, hp.req_int("num_hidden_layers"));
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_head, hp.req_int("num_attention_heads"));
  const int64_t n_head_kv = hp.opt_int("num_key_value_heads").value_or(n_head);
  const bool permute = arch == HfArch::kLlama || arch == HfArch::kDeepseek;
  const int64_t n_expert = hp.opt_int("n_routed_experts").value_or(0);
  const int64_t n_dense = hp.opt_int("first_k_dense_replace").value_or(n_layer);
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string g = "blk." + std::to_string(il) + ".";
    const std::string h = "model.layers." + std::to_string(il) + ".";
    FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_norm.weight", h + "input_layernorm.weight"));
    if (arch == HfArch::kDeepseek2) {
      if (hp.opt_int("q_lora_rank")) {
        FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_q_a.weight", h + "self_attn.q_a_proj.weight"));
        FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_q_a_norm.weight", h + "self_attn.q_a_layernorm.weight"));
        FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_q_b.weight", h + "self_attn.q_b_proj.weight"));
      } else {
        FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_q.weight", h + "self_attn.q_proj.weight"));
      }
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_kv_a_mqa.weight", h + "self_attn.kv_a_proj_with_mqa.weight"));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_kv_a_norm.weight", h + "self_attn.kv_a_layernorm.weight"));
      if (o.legacy_mla) {
        FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_kv_b.weight", h + "self_attn.kv_b_proj.weight"));
      } else {
        FATHOM_ASSIGN_OR_RETURN(const int64_t nope, hp.req_int("qk_nope_head_dim"));
        FATHOM_ASSIGN_OR_RETURN(const int64_t v_dim, hp.req_int("v_head_dim"));
        FATHOM_RETURN_IF_ERROR(p.split_kv_b(g, h + "self_attn.kv_b_proj.weight", n_head, nope, v_dim));
      }
    } else {
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_q.weight", h + "self_attn.q_proj.weight", true, permute ? n_head : 0));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_k.weight", h + "self_attn.k_proj.weight", true, permute ? n_head_kv : 0));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_v.weight", h + "self_attn.v_proj.weight"));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_q.bias", h + "self_attn.q_proj.bias", false, permute ? n_head : 0));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_k.bias", h + "self_attn.k_proj.bias", false, permute ? n_head_kv : 0));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_v.bias", h + "self_attn.v_proj.bias", false));
    }
    FATHOM_RETURN_IF_ERROR(p.plain(g + "attn_output.weight", h + "self_attn.o_proj.weight"));
    FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_norm.weight", h + "post_attention_layernorm.weight"));
    const bool moe = (arch == HfArch::kDeepseek || arch == HfArch::kDeepseek2) && n_expert > 0 && il >= n_dense;
    if (!moe) {
      FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_gate.weight", h + "mlp.gate_proj.weight"));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_up.weight", h + "mlp.up_proj.weight"));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_down.weight", h + "mlp.down_proj.weight"));
      continue;
    }
    FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_gate_inp.weight", h + "mlp.gate.weight"));
    FATHOM_RETURN_IF_ERROR(p.plain(g + "exp_probs_b.bias", h + "mlp.gate.e_score_correction_bias", false));
    FATHOM_RETURN_IF_ERROR(p.experts(g + "ffn_gate_exps.weight", h + "mlp.experts", "gate_proj.weight", n_expert));
    FATHOM_RETURN_IF_ERROR(p.experts(g + "ffn_up_exps.weight", h + "mlp.experts", "up_proj.weight", n_expert));
    FATHOM_RETURN_IF_ERROR(p.experts(g + "ffn_down_exps.weight", h + "mlp.experts", "down_proj.weight", n_expert));
    if (hp.opt_int("n_shared_experts").value_or(0) > 0) {
      FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_gate_shexp.weight", h + "mlp.shared_experts.gate_proj.weight"));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_up_shexp.weight", h + "mlp.shared_experts.up_proj.weight"));
      FATHOM_RETURN_IF_ERROR(p.plain(g + "ffn_down_shexp.weight", h + "mlp.shared_experts.down_proj.weight"));
    }
  }
  FATHOM_RETURN_IF_ERROR(p.plain("output_norm.weight", "model.norm.weight"));
  if (!hp.c.value("tie_word_embeddings", false)) FATHOM_RETURN_IF_ERROR(p.plain("output.weight", "lm_head.weight", false));
  return Status::ok();
}

}  // namespace

uint32_t outtype_file_type(DType outtype) {
  for (const quant::FileType& f : quant::file_types())
    if (f.base == outtype) return static_cast<uint32_t>(f.id);
  return static_cast<uint32_t>(quant::LlamaFtype::kF16);
}

Status convert_hf(const std::string& dir, const std::string& out_path, const ConvertOptions& options) {
  if (options.outtype != DType::F32 && options.outtype != DType::F16 && options.outtype != DType::BF16 &&
      options.outtype != DType::Q8_0)
    return error(ErrorCode::kInvalidArgument, "--outtype must be f32, f16, bf16 or q8_0");
  auto warn = [&](const std::string& m) {
    if (options.on_warning) options.on_warning(m);
  };
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<HfCheckpoint> ck, HfCheckpoint::open(dir));
  const Hparams hp{ck->config()};
  FATHOM_ASSIGN_OR_RETURN(const HfArch arch, detect_arch(ck->config()));

  gguf::GgufWriter w;
  w.set_string("general.architecture", gguf_arch_name(arch));
  w.set_string("general.type", "model");
  std::string name = options.name;
  if (name.empty()) name = std::filesystem::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
  w.set_string("general.name", name);
  Planner plan(*ck, options);
  FATHOM_RETURN_IF_ERROR(set_hparams(arch, hp, options, w, plan));
  FATHOM_RETURN_IF_ERROR(plan_tensors(arch, hp, options, plan));
  const int64_t n_vocab = hp.opt_int("vocab_size").value_or(0);
  FATHOM_RETURN_IF_ERROR(add_hf_tokenizer(dir, n_vocab, ck->config(), w, warn));
  w.set_u32("general.quantization_version", 2);

  // Checkpoint tensors nothing consumed: rotary caches are expected, anything else is news.
  std::vector<std::string> unused;
  const int64_t n_layer = hp.opt_int("num_hidden_layers").value_or(0);
  for (const std::string& n : ck->names()) {
    if (plan.used().count(n) || n.find("rotary_emb.inv_freq") != std::string::npos) continue;
    int layer = -1;
    if (std::sscanf(n.c_str(), "model.layers.%d.", &layer) == 1 && layer >= n_layer) continue;  // MTP layers
    unused.push_back(n);
  }
  if (!unused.empty())
    warn(strprintf("%zu checkpoint tensors are not converted (first: %s)", unused.size(), unused.front().c_str()));

  ThreadPool pool(options.n_threads);
  std::vector<OutTensor>& tensors = plan.tensors();
  size_t n_done = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    OutTensor& t = tensors[i];
    w.add_tensor(t.name, t.type, t.ne, [&, i](uint8_t* dst, size_t) -> Status {
      OutTensor& ot = tensors[i];
      const int64_t ne0 = ot.ne[0], ne1 = ot.ne.size() > 1 ? ot.ne[1] : 1, n_mat = ot.ne.size() > 2 ? ot.ne[2] : 1;
      const size_t row_bytes = row_size(ot.type, ne0);
      std::vector<float> buf(static_cast<size_t>(ne0 * ne1));  // [ne1, ne0] one matrix
      for (int64_t m = 0; m < n_mat; ++m) {
        FATHOM_RETURN_IF_ERROR(ot.produce(m, buf.data()));
        pool.parallel_for(ne1, 16, [&](int, int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r)
            quant::quantize_row_ref(ot.type, buf.data() + r * ne0, dst + static_cast<size_t>(m * ne1 + r) * row_bytes, ne0);
        });
      }
      if (options.on_tensor) options.on_tensor(++n_done, tensors.size(), ot.name, ot.type);
      return Status::ok();
    });
  }
  return w.write(out_path);
}

}  // namespace fathom::convert
