// Synthetic deepseek (DeepSeek-MoE-16B) and deepseek2 (DeepSeek-V2/V2-Lite/V3) models in
// llama.cpp's GGUF layout (convert_hf_to_gguf.py + llama-quantize): same keys, tensor names and
// ne order; norms, the router (ffn_gate_inp) and the score-correction bias stay F32; the 3-D
// expert tensors are quantized like the other matrices.
#include <cstdint>
#include <string>
#include <vector>

#include "model/synth_builder.h"

namespace fathom::synth {

namespace {

// Test shapes first, then the published models (shape_presets.h) under synth's short names.
// deepseek2_shape(vocab, ctx, n_embd, layers, dense ff, heads, {q_lora, kv_lora, nope, rope, v},
//   {dense lead, experts, used, shared, expert ff, groups, groups used, gating, norm, scale}, yarn)
std::vector<SynthShape> deepseek2_shapes() {
  return {
      {"tiny", "", "",
       deepseek2_shape(512, 512, 64, 3, 128, 4, {0, 32, 32, 16, 32}, {1, 8, 2, 1, 32, 0, 0, 1, false, 1.0f}, {})},
      {"tiny-v3", "", "",
       deepseek2_shape(512, 512, 64, 3, 128, 4, {48, 32, 32, 16, 32}, {1, 8, 2, 1, 32, 4, 2, 2, true, 2.5f},
                       {4.0f, 128, 0.1f})},
      // tiny with a 64-value latent row (kv_lora_rank 48 + 16 rope dims): whole 32-value blocks, so
      // the q8_0/q4_0 KV caches take it (tiny's 48-value row is refused).
      {"tiny-l64", "", "",
       deepseek2_shape(512, 512, 64, 3, 128, 4, {0, 48, 32, 16, 32}, {1, 8, 2, 1, 32, 0, 0, 1, false, 1.0f}, {})},
      // tiny's layout at n_embd 256 and expert ff 256: every expert matrix has whole 256-value
      // super-blocks, so K-quant and i-quant experts are stored without fallbacks.
      {"small", "", "",
       deepseek2_shape(512, 512, 256, 3, 512, 4, {0, 64, 32, 16, 32}, {1, 8, 2, 1, 256, 0, 0, 1, false, 1.0f}, {})},
      published_shape("v2-lite", "deepseek-v2-lite"),
      published_shape("v3", "deepseek-v3"),
  };
}

std::vector<SynthShape> deepseek_shapes() {
  return {
      {"tiny", "", "", deepseek_shape(512, 512, 64, 3, 128, 4, {1, 8, 2, 2, 32, 0, 0, 1, false, 1.0f})},
      published_shape("moe-16b", "deepseek-moe-16b"),
  };
}

long long ll(int64_t v) { return static_cast<long long>(v); }

std::string moe_description(const ArchShape& s) {
  const MoeShape& m = s.moe;
  std::string d = strprintf("%lld experts (%lld used, %lld shared, ff %lld), dense ff %lld x %lld layers, %s",
                            ll(m.n_expert), ll(m.n_expert_used), ll(m.n_expert_shared), ll(m.n_ff_exp), ll(s.n_ff),
                            ll(m.n_layer_dense_lead), m.gating_func == 2 ? "sigmoid+bias" : "softmax");
  if (m.n_group > 1) d += strprintf(", %lld groups (%lld used)", ll(m.n_group), ll(m.n_group_used));
  if (m.weights_norm) d += ", norm";
  if (m.weights_scale != 1.0f) d += strprintf(", scale %g", m.weights_scale);
  return d;
}

std::vector<SynthPresetInfo> deepseek2_infos() {
  std::vector<SynthPresetInfo> out;
  for (const SynthShape& p : deepseek2_shapes()) {
    const ArchShape& s = p.shape;
    const MlaShape& a = s.mla;
    std::string d = strprintf("%lld layers, n_embd %lld, %lld heads, q_lora %lld, kv_lora %lld, nope/rope/v %lld/%lld/%lld, ",
                              ll(s.n_layer), ll(s.n_embd), ll(s.n_head), ll(a.q_lora_rank), ll(a.kv_lora_rank),
                              ll(a.n_nope), ll(a.n_rot), ll(a.n_v));
    d += moe_description(s);
    if (s.yarn.factor > 0) d += strprintf(", YaRN x%g", s.yarn.factor);
    d += strprintf(", vocab %lld, ctx %lld", ll(s.n_vocab), ll(s.n_ctx_train));
    out.push_back(preset_info("deepseek2", p, std::move(d)));
  }
  return out;
}

std::vector<SynthPresetInfo> deepseek_infos() {
  std::vector<SynthPresetInfo> out;
  for (const SynthShape& p : deepseek_shapes()) {
    const ArchShape& s = p.shape;
    std::string d = strprintf("%lld layers, n_embd %lld, %lld heads (head dim %lld), ", ll(s.n_layer), ll(s.n_embd),
                              ll(s.n_head), ll(s.head_dim()));
    d += moe_description(s);
    d += strprintf(", vocab %lld, ctx %lld", ll(s.n_vocab), ll(s.n_ctx_train));
    out.push_back(preset_info("deepseek", p, std::move(d)));
  }
  return out;
}

// Keys of the MoE FFN, as both converters write them.
void set_moe_keys(gguf::GgufWriter& w, const std::string& k, const ArchShape& s, bool gating_keys) {
  const MoeShape& m = s.moe;
  w.set_u32(k + "feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.set_u32(k + "leading_dense_block_count", static_cast<uint32_t>(m.n_layer_dense_lead));
  w.set_u32(k + "expert_count", static_cast<uint32_t>(m.n_expert));
  w.set_u32(k + "expert_used_count", static_cast<uint32_t>(m.n_expert_used));
  w.set_u32(k + "expert_shared_count", static_cast<uint32_t>(m.n_expert_shared));
  w.set_u32(k + "expert_feed_forward_length", static_cast<uint32_t>(m.n_ff_exp));
  w.set_f32(k + "expert_weights_scale", m.weights_scale);
  if (!gating_keys) return;  // deepseek (MoE-16B): softmax, unnormalized, no groups
  w.set_bool(k + "expert_weights_norm", m.weights_norm);
  w.set_u32(k + "expert_gating_func", static_cast<uint32_t>(m.gating_func));
  if (m.n_group > 1) {
    w.set_u32(k + "expert_group_count", static_cast<uint32_t>(m.n_group));
    w.set_u32(k + "expert_group_used_count", static_cast<uint32_t>(m.n_group_used));
  }
}

// Layer il's FFN tensors: dense SwiGLU for the leading layers, else router + experts + shared.
void add_ffn(SynthBuilder& b, const std::string& p, int64_t il, const ArchShape& s) {
  const MoeShape& m = s.moe;
  const int64_t n_embd = s.n_embd;
  const DType wt = b.main_dtype();
  b.add_f32(p + "ffn_norm.weight", {n_embd}, kNormWeight);
  if (il < m.n_layer_dense_lead) {
    b.add_matrix(p + "ffn_gate.weight", n_embd, s.n_ff, wt, projection(n_embd));
    b.add_matrix(p + "ffn_up.weight", n_embd, s.n_ff, wt, projection(n_embd));
    b.add_matrix(p + "ffn_down.weight", s.n_ff, n_embd, wt, projection(s.n_ff));
    return;
  }
  b.add_f32(p + "ffn_gate_inp.weight", {n_embd, m.n_expert}, projection(n_embd));  // router, kept F32
  if (m.gating_func == 2) b.add_f32(p + "exp_probs_b.bias", {m.n_expert}, kBias);
  b.add_matrix_stack(p + "ffn_gate_exps.weight", n_embd, m.n_ff_exp, m.n_expert, wt, projection(n_embd));
  b.add_matrix_stack(p + "ffn_up_exps.weight", n_embd, m.n_ff_exp, m.n_expert, wt, projection(n_embd));
  b.add_matrix_stack(p + "ffn_down_exps.weight", m.n_ff_exp, n_embd, m.n_expert, wt, projection(m.n_ff_exp));
  if (m.n_expert_shared > 0) {
    const int64_t n_ff_sh = m.n_ff_exp * m.n_expert_shared;  // shared experts fused into one FFN
    b.add_matrix(p + "ffn_gate_shexp.weight", n_embd, n_ff_sh, wt, projection(n_embd));
    b.add_matrix(p + "ffn_up_shexp.weight", n_embd, n_ff_sh, wt, projection(n_embd));
    b.add_matrix(p + "ffn_down_shexp.weight", n_ff_sh, n_embd, wt, projection(n_ff_sh));
  }
}

void add_output(SynthBuilder& b, int64_t n_embd) {
  b.add_f32("output_norm.weight", {n_embd}, kNormWeight);
  if (b.options().tied_output) return;
  Init out = projection(n_embd);
  out.stddev *= 2.0f;
  b.add_matrix("output.weight", n_embd, b.n_vocab(), b.output_dtype(), out);
}

Status build_deepseek2(SynthBuilder& b) {
  const SynthOptions& opt = b.options();
  const std::vector<SynthShape> shapes = deepseek2_shapes();
  const ArchShape& s = find_shape(shapes, opt.preset).shape;
  const MlaShape& a = s.mla;
  const bool legacy = opt.mla_legacy;
  FATHOM_RETURN_IF_ERROR(b.load_vocab(s.n_vocab));
  const int64_t n_layer = opt.n_layer.value_or(s.n_layer), n_embd = s.n_embd, n_head = s.n_head;
  const int64_t r = a.kv_lora_rank, n_qk = a.n_nope + a.n_rot;  // latent size; per-head q/k size

  b.set_general("deepseek2", "synth-deepseek2-" + opt.preset + (legacy ? "-legacy" : ""));
  gguf::GgufWriter& w = b.writer();
  const std::string k = "deepseek2.";
  w.set_u32(k + "context_length", static_cast<uint32_t>(s.n_ctx_train));
  w.set_u32(k + "embedding_length", static_cast<uint32_t>(n_embd));
  w.set_u32(k + "block_count", static_cast<uint32_t>(n_layer));
  w.set_u32(k + "attention.head_count", static_cast<uint32_t>(n_head));
  w.set_f32(k + "rope.freq_base", s.rope_freq_base);
  w.set_f32(k + "attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  w.set_u32(k + "vocab_size", static_cast<uint32_t>(b.n_vocab()));
  // The converter omits q_lora_rank when there is no query compression, but llama.cpp then
  // requires it unless block_count is 26 or 27 (its "V2-Lite" heuristic), so a V2-Lite cut to
  // --layers 6 would not load there; q_lora_rank = 0 (plain attn_q) loads in both.
  if (a.q_lora_rank > 0 || (n_layer != 26 && n_layer != 27))
    w.set_u32(k + "attention.q_lora_rank", static_cast<uint32_t>(a.q_lora_rank));
  w.set_u32(k + "attention.kv_lora_rank", static_cast<uint32_t>(r));
  if (legacy) {
    // Older converters: MLA described as plain multi-head attention.
    w.set_u32(k + "attention.head_count_kv", static_cast<uint32_t>(n_head));
    w.set_u32(k + "attention.key_length", static_cast<uint32_t>(n_qk));
    w.set_u32(k + "attention.value_length", static_cast<uint32_t>(a.n_v));
  } else {
    // Current converters: MLA as MQA over the latent row (one kv head of kv_lora + rope), with
    // the per-head sizes after decompression in the *_mla keys.
    w.set_u32(k + "attention.head_count_kv", 1);
    w.set_u32(k + "attention.key_length", static_cast<uint32_t>(r + a.n_rot));
    w.set_u32(k + "attention.value_length", static_cast<uint32_t>(r));
    w.set_u32(k + "attention.key_length_mla", static_cast<uint32_t>(n_qk));
    w.set_u32(k + "attention.value_length_mla", static_cast<uint32_t>(a.n_v));
  }
  set_moe_keys(w, k, s, /*gating_keys=*/true);
  w.set_u32(k + "rope.dimension_count", static_cast<uint32_t>(a.n_rot));
  if (s.yarn.factor > 0) {
    w.set_string(k + "rope.scaling.type", "yarn");
    w.set_f32(k + "rope.scaling.factor", s.yarn.factor);
    w.set_u32(k + "rope.scaling.original_context_length", static_cast<uint32_t>(s.yarn.orig_ctx));
    w.set_f32(k + "rope.scaling.yarn_log_multiplier", s.yarn.log_multiplier);
  }
  b.set_tokenizer();

  const DType wt = b.main_dtype();
  b.add_matrix("token_embd.weight", n_embd, b.n_vocab(), wt, kEmbedding);
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = strprintf("blk.%lld.", ll(il));
    b.add_f32(p + "attn_norm.weight", {n_embd}, kNormWeight);
    if (a.q_lora_rank > 0) {
      b.add_matrix(p + "attn_q_a.weight", n_embd, a.q_lora_rank, wt, projection(n_embd));  // W_DQ
      b.add_f32(p + "attn_q_a_norm.weight", {a.q_lora_rank}, kNormWeight);
      b.add_matrix(p + "attn_q_b.weight", a.q_lora_rank, n_head * n_qk, wt, projection(a.q_lora_rank));  // W_UQ | W_QR
    } else {
      b.add_matrix(p + "attn_q.weight", n_embd, n_head * n_qk, wt, projection(n_embd));
    }
    // [W_DKV; W_KR]: the latent c_kv (r) and the shared rotary key k_pe (n_rot) in one matrix.
    b.add_matrix(p + "attn_kv_a_mqa.weight", n_embd, r + a.n_rot, wt, projection(n_embd));
    b.add_f32(p + "attn_kv_a_norm.weight", {r}, kNormWeight);
    if (legacy) {
      // Per head h, rows [h*(nope+v), h*(nope+v) + nope) are W_UK_h and the next v rows W_UV_h.
      b.add_matrix(p + "attn_kv_b.weight", r, n_head * (a.n_nope + a.n_v), wt, projection(r));
    } else {
      b.add_matrix_stack(p + "attn_k_b.weight", a.n_nope, r, n_head, wt, projection(r));  // W_UK_h^T per head
      b.add_matrix_stack(p + "attn_v_b.weight", r, a.n_v, n_head, wt, projection(r));     // W_UV_h per head
    }
    b.add_matrix(p + "attn_output.weight", n_head * a.n_v, n_embd, wt, projection(n_head * a.n_v));
    add_ffn(b, p, il, s);
  }
  add_output(b, n_embd);
  return Status::ok();
}

Status build_deepseek(SynthBuilder& b) {
  const SynthOptions& opt = b.options();
  const std::vector<SynthShape> shapes = deepseek_shapes();
  const ArchShape& s = find_shape(shapes, opt.preset).shape;
  FATHOM_RETURN_IF_ERROR(b.load_vocab(s.n_vocab));
  const int64_t n_layer = opt.n_layer.value_or(s.n_layer), n_embd = s.n_embd, head_dim = s.head_dim();

  b.set_general("deepseek", "synth-deepseek-" + opt.preset);
  gguf::GgufWriter& w = b.writer();
  const std::string k = "deepseek.";
  w.set_u32(k + "context_length", static_cast<uint32_t>(s.n_ctx_train));
  w.set_u32(k + "embedding_length", static_cast<uint32_t>(n_embd));
  w.set_u32(k + "block_count", static_cast<uint32_t>(n_layer));
  w.set_u32(k + "attention.head_count", static_cast<uint32_t>(s.n_head));
  w.set_u32(k + "attention.head_count_kv", static_cast<uint32_t>(s.n_head));
  w.set_f32(k + "rope.freq_base", s.rope_freq_base);
  w.set_f32(k + "attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  w.set_u32(k + "rope.dimension_count", static_cast<uint32_t>(head_dim));
  w.set_u32(k + "vocab_size", static_cast<uint32_t>(b.n_vocab()));
  set_moe_keys(w, k, s, /*gating_keys=*/false);
  b.set_tokenizer();

  const DType wt = b.main_dtype();
  const int64_t n_q = s.n_head * head_dim;
  b.add_matrix("token_embd.weight", n_embd, b.n_vocab(), wt, kEmbedding);
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = strprintf("blk.%lld.", ll(il));
    b.add_f32(p + "attn_norm.weight", {n_embd}, kNormWeight);
    b.add_matrix(p + "attn_q.weight", n_embd, n_q, wt, projection(n_embd));
    b.add_matrix(p + "attn_k.weight", n_embd, n_q, wt, projection(n_embd));
    b.add_matrix(p + "attn_v.weight", n_embd, n_q, wt, projection(n_embd));
    b.add_matrix(p + "attn_output.weight", n_q, n_embd, wt, projection(n_q));
    add_ffn(b, p, il, s);
  }
  add_output(b, n_embd);
  return Status::ok();
}

}  // namespace

std::vector<SynthArchitecture> deepseek_architectures() {
  return {
      {"deepseek", deepseek_infos(), build_deepseek},
      {"deepseek2", deepseek2_infos(), build_deepseek2},
  };
}

}  // namespace fathom::synth
