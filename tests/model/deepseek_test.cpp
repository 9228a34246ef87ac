// DeepSeek MoE and MLA: synth layouts and keys of every deepseek/deepseek2 preset (both MLA GGUF
// conventions), the naive reference (model/reference.h) against llama.cpp's logits on the same
// synthetic weights, and the engine's optimized path (absorbed MLA, latent KV cache, grouped
// MoE) against the reference in F32, Q8_0 and Q4_K, prefill in chunks then decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/forwarding_backend.h"
#include "gguf/gguf.h"
#include "iquant_rewrite.h"
#include "logits_compare.h"
#include "model/architecture.h"
#include "model/config.h"
#include "model/model.h"
#include "model/reference.h"
#include "model/synth.h"

namespace fathom {
namespace {

std::string tmp_path(const std::string& name) { return std::string(FATHOM_TEST_TMP) + "/deepseek_test_" + name; }

std::string vocab_path() { return std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-deepseek-llm.gguf"; }

SynthOptions options(const char* arch, const char* preset, DType type = DType::F32, bool legacy = false) {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.dtype = type;
  o.mla_legacy = legacy;
  o.seed = 7;
  o.n_threads = 2;
  return o;
}

std::string synth(const SynthOptions& o, const std::string& name) {
  const std::string path = tmp_path(name);
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

std::unique_ptr<gguf::GgufFile> open(const std::string& path) {
  auto f = gguf::GgufFile::open(path);
  EXPECT_TRUE(f.has_value()) << f.status().to_string();
  return f ? std::move(f).value() : nullptr;
}

void expect_tensor(const gguf::GgufFile& f, const std::string& name, DType dtype, std::vector<int64_t> ne) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_EQ(t->view.dtype, dtype) << name << " is " << dtype_name(t->view.dtype);
  ASSERT_EQ(t->view.n_dims, static_cast<int>(ne.size())) << name;
  for (size_t i = 0; i < ne.size(); ++i) EXPECT_EQ(t->view.ne[i], ne[i]) << name << " ne[" << i << "]";
}

const SynthTensorInfo* find(const std::vector<SynthTensorInfo>& plan, const std::string& name) {
  for (const SynthTensorInfo& t : plan)
    if (t.name == name) return &t;
  return nullptr;
}

void expect_planned(const std::vector<SynthTensorInfo>& plan, const std::string& name, DType dtype, std::vector<int64_t> ne) {
  const SynthTensorInfo* t = find(plan, name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_EQ(t->dtype, dtype) << name << " is " << dtype_name(t->dtype);
  EXPECT_EQ(t->ne, ne) << name;
}

// ---- synth: layouts and keys --------------------------------------------------------------

TEST(DeepseekSynth, Deepseek2TinyIsV2LiteStyleWithSplitMla) {
  auto f = open(synth(options("deepseek2", "tiny"), "ds2_tiny.gguf"));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->architecture(), "deepseek2");
  EXPECT_EQ(f->get_int("deepseek2.block_count"), 3);
  EXPECT_EQ(f->get_int("deepseek2.attention.head_count"), 4);
  EXPECT_EQ(f->get_int("deepseek2.attention.head_count_kv"), 1);  // MLA as MQA over the latent
  EXPECT_EQ(f->get_int("deepseek2.attention.kv_lora_rank"), 32);
  // 0 rather than absent: llama.cpp requires the key unless block_count is 26 or 27.
  EXPECT_EQ(f->get_int("deepseek2.attention.q_lora_rank"), 0);
  EXPECT_EQ(f->get_int("deepseek2.attention.key_length"), 32 + 16);   // latent row: kv_lora + rope
  EXPECT_EQ(f->get_int("deepseek2.attention.value_length"), 32);      // kv_lora
  EXPECT_EQ(f->get_int("deepseek2.attention.key_length_mla"), 32 + 16);  // nope + rope
  EXPECT_EQ(f->get_int("deepseek2.attention.value_length_mla"), 32);
  EXPECT_EQ(f->get_int("deepseek2.rope.dimension_count"), 16);
  EXPECT_EQ(f->get_int("deepseek2.expert_count"), 8);
  EXPECT_EQ(f->get_int("deepseek2.expert_used_count"), 2);
  EXPECT_EQ(f->get_int("deepseek2.expert_shared_count"), 1);
  EXPECT_EQ(f->get_int("deepseek2.expert_feed_forward_length"), 32);
  EXPECT_EQ(f->get_int("deepseek2.feed_forward_length"), 128);
  EXPECT_EQ(f->get_int("deepseek2.leading_dense_block_count"), 1);
  EXPECT_EQ(f->get_int("deepseek2.expert_gating_func"), 1);
  EXPECT_FALSE(f->get_string("deepseek2.rope.scaling.type").has_value());
  expect_tensor(*f, "blk.0.ffn_gate.weight", DType::F32, {64, 128});
  EXPECT_EQ(f->find_tensor("blk.0.ffn_gate_inp.weight"), nullptr);
  expect_tensor(*f, "blk.1.attn_q.weight", DType::F32, {64, 4 * 48});
  EXPECT_EQ(f->find_tensor("blk.1.attn_q_a.weight"), nullptr);
  expect_tensor(*f, "blk.1.attn_kv_a_mqa.weight", DType::F32, {64, 32 + 16});
  expect_tensor(*f, "blk.1.attn_kv_a_norm.weight", DType::F32, {32});
  expect_tensor(*f, "blk.1.attn_k_b.weight", DType::F32, {32, 32, 4});
  expect_tensor(*f, "blk.1.attn_v_b.weight", DType::F32, {32, 32, 4});
  EXPECT_EQ(f->find_tensor("blk.1.attn_kv_b.weight"), nullptr);
  expect_tensor(*f, "blk.1.attn_output.weight", DType::F32, {4 * 32, 64});
  expect_tensor(*f, "blk.1.ffn_gate_inp.weight", DType::F32, {64, 8});
  EXPECT_EQ(f->find_tensor("blk.1.exp_probs_b.bias"), nullptr);
  expect_tensor(*f, "blk.2.ffn_gate_exps.weight", DType::F32, {64, 32, 8});
  expect_tensor(*f, "blk.2.ffn_up_exps.weight", DType::F32, {64, 32, 8});
  expect_tensor(*f, "blk.2.ffn_down_exps.weight", DType::F32, {32, 64, 8});
  expect_tensor(*f, "blk.2.ffn_gate_shexp.weight", DType::F32, {64, 32});
  expect_tensor(*f, "blk.2.ffn_down_shexp.weight", DType::F32, {32, 64});
  expect_tensor(*f, "output.weight", DType::F32, {64, 512});
  auto c = ModelConfig::from_gguf(*f);
  ASSERT_TRUE(c) << c.status().to_string();
  EXPECT_EQ(c->head_dim_k, 48);
  EXPECT_EQ(c->head_dim_v, 32);
  EXPECT_EQ(c->n_rot, 16);
  EXPECT_EQ(c->q_lora_rank, 0);
}

TEST(DeepseekSynth, Deepseek2TinyV3HasQLoraSigmoidBiasGroupsAndYarn) {
  auto f = open(synth(options("deepseek2", "tiny-v3"), "ds2_tiny_v3.gguf"));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->get_int("deepseek2.attention.q_lora_rank"), 48);
  EXPECT_EQ(f->get_int("deepseek2.expert_gating_func"), 2);
  EXPECT_EQ(f->get_int("deepseek2.expert_group_count"), 4);
  EXPECT_EQ(f->get_int("deepseek2.expert_group_used_count"), 2);
  EXPECT_EQ(f->get_bool("deepseek2.expert_weights_norm"), true);
  EXPECT_NEAR(f->get_float("deepseek2.expert_weights_scale").value_or(0), 2.5, 1e-6);
  EXPECT_EQ(f->get_string("deepseek2.rope.scaling.type"), "yarn");
  EXPECT_NEAR(f->get_float("deepseek2.rope.scaling.factor").value_or(0), 4.0, 1e-6);
  EXPECT_EQ(f->get_int("deepseek2.rope.scaling.original_context_length"), 128);
  EXPECT_NEAR(f->get_float("deepseek2.rope.scaling.yarn_log_multiplier").value_or(0), 0.1, 1e-6);
  expect_tensor(*f, "blk.0.attn_q_a.weight", DType::F32, {64, 48});
  expect_tensor(*f, "blk.0.attn_q_a_norm.weight", DType::F32, {48});
  expect_tensor(*f, "blk.0.attn_q_b.weight", DType::F32, {48, 4 * 48});
  EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight"), nullptr);
  expect_tensor(*f, "blk.1.exp_probs_b.bias", DType::F32, {8});
  auto c = ModelConfig::from_gguf(*f);
  ASSERT_TRUE(c) << c.status().to_string();
  EXPECT_EQ(c->rope_scaling, RopeScaling::kYarn);
  EXPECT_EQ(c->rope_orig_ctx, 128);
  EXPECT_EQ(c->n_expert_groups, 4);
  EXPECT_TRUE(c->expert_weights_norm);
}

TEST(DeepseekSynth, Deepseek2LegacyConventionHasOneKvB) {
  auto f = open(synth(options("deepseek2", "tiny", DType::F32, /*legacy=*/true), "ds2_legacy.gguf"));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->get_int("deepseek2.attention.head_count_kv"), 4);
  EXPECT_EQ(f->get_int("deepseek2.attention.key_length"), 48);  // nope + rope
  EXPECT_EQ(f->get_int("deepseek2.attention.value_length"), 32);
  EXPECT_FALSE(f->get_int("deepseek2.attention.key_length_mla").has_value());
  EXPECT_FALSE(f->get_int("deepseek2.attention.value_length_mla").has_value());
  expect_tensor(*f, "blk.0.attn_kv_b.weight", DType::F32, {32, 4 * (32 + 32)});
  EXPECT_EQ(f->find_tensor("blk.0.attn_k_b.weight"), nullptr);
  EXPECT_EQ(f->find_tensor("blk.0.attn_v_b.weight"), nullptr);
  auto c = ModelConfig::from_gguf(*f);
  ASSERT_TRUE(c) << c.status().to_string();
  EXPECT_EQ(c->head_dim_k, 48);
  EXPECT_EQ(c->head_dim_v, 32);
}

TEST(DeepseekSynth, DeepseekTinyIsLlamaAttentionWithMoe) {
  auto f = open(synth(options("deepseek", "tiny"), "ds_tiny.gguf"));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->architecture(), "deepseek");
  EXPECT_EQ(f->get_int("deepseek.attention.head_count_kv"), 4);
  EXPECT_EQ(f->get_int("deepseek.rope.dimension_count"), 16);
  EXPECT_EQ(f->get_int("deepseek.expert_count"), 8);
  EXPECT_EQ(f->get_int("deepseek.expert_shared_count"), 2);
  EXPECT_NEAR(f->get_float("deepseek.expert_weights_scale").value_or(0), 1.0, 1e-6);
  expect_tensor(*f, "blk.0.attn_q.weight", DType::F32, {64, 64});
  expect_tensor(*f, "blk.0.attn_k.weight", DType::F32, {64, 64});
  expect_tensor(*f, "blk.0.ffn_down.weight", DType::F32, {128, 64});
  expect_tensor(*f, "blk.1.ffn_gate_exps.weight", DType::F32, {64, 32, 8});
  expect_tensor(*f, "blk.1.ffn_gate_shexp.weight", DType::F32, {64, 64});  // 2 shared experts fused
  expect_tensor(*f, "blk.1.ffn_down_shexp.weight", DType::F32, {64, 64});
}

TEST(DeepseekSynth, ExpertsAreQuantizedWithKQuantFallbacks) {
  auto f = open(synth(options("deepseek2", "tiny", DType::Q4_K), "ds2_q4k.gguf"));
  ASSERT_NE(f, nullptr);
  // Rows of 64 or 32 values cannot hold 256-value K blocks: Q4_K falls back to Q5_0, as llama.cpp.
  expect_tensor(*f, "blk.1.ffn_gate_exps.weight", DType::Q5_0, {64, 32, 8});
  expect_tensor(*f, "blk.1.ffn_down_exps.weight", DType::Q5_0, {32, 64, 8});
  expect_tensor(*f, "blk.1.attn_k_b.weight", DType::Q5_0, {32, 32, 4});
  expect_tensor(*f, "blk.1.ffn_gate_inp.weight", DType::F32, {64, 8});  // the router stays F32
  expect_tensor(*f, "blk.1.attn_kv_a_norm.weight", DType::F32, {32});
}

// Real shapes through synth_plan: every tensor and key, no weights written.
TEST(DeepseekSynth, RealShapesV2LiteV3AndMoe16b) {
  {
    SynthOptions o = options("deepseek2", "v2-lite", DType::Q4_K);
    o.n_layer = 6;
    auto plan = synth_plan(o, tmp_path("v2lite_meta.gguf"));
    ASSERT_TRUE(plan) << plan.status().to_string();
    expect_planned(*plan, "token_embd.weight", DType::Q4_K, {2048, 102400});
    expect_planned(*plan, "blk.0.attn_q.weight", DType::Q4_K, {2048, 16 * 192});
    expect_planned(*plan, "blk.0.attn_kv_a_mqa.weight", DType::Q4_K, {2048, 576});
    expect_planned(*plan, "blk.0.attn_k_b.weight", DType::Q5_0, {128, 512, 16});  // rows of 128
    expect_planned(*plan, "blk.0.attn_v_b.weight", DType::Q4_K, {512, 128, 16});
    expect_planned(*plan, "blk.0.ffn_down.weight", DType::Q5_0, {10944, 2048});  // 10944 % 256 != 0
    expect_planned(*plan, "blk.5.ffn_gate_exps.weight", DType::Q4_K, {2048, 1408, 64});
    expect_planned(*plan, "blk.5.ffn_down_exps.weight", DType::Q5_0, {1408, 2048, 64});
    expect_planned(*plan, "blk.5.ffn_gate_shexp.weight", DType::Q4_K, {2048, 2816});
    EXPECT_EQ(find(*plan, "blk.6.attn_norm.weight"), nullptr);
    auto f = open(tmp_path("v2lite_meta.gguf"));
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->get_int("deepseek2.block_count"), 6);
    EXPECT_EQ(f->get_int("deepseek2.attention.q_lora_rank"), 0);
    EXPECT_EQ(f->get_int("deepseek2.attention.kv_lora_rank"), 512);
    EXPECT_EQ(f->get_int("deepseek2.attention.key_length_mla"), 192);
    EXPECT_EQ(f->get_int("deepseek2.expert_used_count"), 6);
    EXPECT_EQ(f->get_int("deepseek2.context_length"), 163840);
    EXPECT_NEAR(f->get_float("deepseek2.rope.scaling.factor").value_or(0), 40.0, 1e-6);
    EXPECT_EQ(f->get_int("deepseek2.rope.scaling.original_context_length"), 4096);
    EXPECT_NEAR(f->get_float("deepseek2.rope.scaling.yarn_log_multiplier").value_or(0), 0.0707, 1e-6);
  }
  {
    SynthOptions o = options("deepseek2", "v3", DType::Q4_K);
    auto plan = synth_plan(o, tmp_path("v3_meta.gguf"));
    ASSERT_TRUE(plan) << plan.status().to_string();
    expect_planned(*plan, "blk.0.attn_q_a.weight", DType::Q4_K, {7168, 1536});
    expect_planned(*plan, "blk.0.attn_q_b.weight", DType::Q4_K, {1536, 128 * 192});
    expect_planned(*plan, "blk.2.ffn_gate.weight", DType::Q4_K, {7168, 18432});
    EXPECT_EQ(find(*plan, "blk.2.ffn_gate_inp.weight"), nullptr);
    expect_planned(*plan, "blk.3.exp_probs_b.bias", DType::F32, {256});
    expect_planned(*plan, "blk.60.ffn_up_exps.weight", DType::Q4_K, {7168, 2048, 256});
    uint64_t total = 0;
    for (const SynthTensorInfo& t : *plan) total += t.n_bytes;
    EXPECT_GT(total, 350ull << 30);  // 671B parameters at ~4.5 bits
    auto f = open(tmp_path("v3_meta.gguf"));
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->get_int("deepseek2.expert_group_count"), 8);
    EXPECT_EQ(f->get_int("deepseek2.expert_group_used_count"), 4);
    EXPECT_EQ(f->get_int("deepseek2.leading_dense_block_count"), 3);
    EXPECT_EQ(f->get_int("deepseek2.vocab_size"), 129280);
  }
  {
    auto plan = synth_plan(options("deepseek2", "v2-lite"), tmp_path("v2lite27_meta.gguf"));
    ASSERT_TRUE(plan) << plan.status().to_string();
    auto f = open(tmp_path("v2lite27_meta.gguf"));
    ASSERT_NE(f, nullptr);
    EXPECT_FALSE(f->get_int("deepseek2.attention.q_lora_rank").has_value());  // as the converter writes it
  }
  {
    auto plan = synth_plan(options("deepseek", "moe-16b", DType::Q8_0), tmp_path("moe16b_meta.gguf"));
    ASSERT_TRUE(plan) << plan.status().to_string();
    expect_planned(*plan, "blk.0.attn_k.weight", DType::Q8_0, {2048, 2048});
    expect_planned(*plan, "blk.27.ffn_down_exps.weight", DType::Q8_0, {1408, 2048, 64});
    expect_planned(*plan, "blk.27.ffn_up_shexp.weight", DType::Q8_0, {2048, 2816});
  }
}

TEST(DeepseekSynth, MlaLegacyOnlyForDeepseek2) {
  SynthOptions o = options("llama", "tiny");
  o.mla_legacy = true;
  EXPECT_EQ(synth_model(o, tmp_path("bad.gguf")).code(), ErrorCode::kInvalidArgument);
}

// ---- reference against llama.cpp ---------------------------------------------------------

std::vector<int32_t> top_k(const float* logits, int64_t n_vocab, int k) {
  std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(static_cast<size_t>(k));
  return ids;
}

// Synthetic models (seed 42, f32, tokenizer of deepseek-llm) run by llama.cpp (node-llama-cpp
// 3.22.1 via /work/shared/peer/logits.sh, F32 KV cache, no flash attention):
//   fathom synth --arch A --preset P [--layers N] [--mla-legacy] --vocab ggml-vocab-deepseek-llm.gguf -o m.gguf
//   logits.sh m.gguf "Once upon a time" --top 5
// The deepseek2 "tiny" cases use 27 layers because llama.cpp decides "lite" (no q_lora, plain
// attn_q) by block_count == 27 and otherwise requires attention.q_lora_rank.
struct PeerCase {
  const char* arch;
  const char* preset;
  int64_t n_layer;  // 0: the preset's
  bool legacy;
  std::vector<std::pair<int32_t, float>> top5;  // llama.cpp's top logits after the prompt
};

TEST(DeepseekReference, SynthMatchesLlamaCpp) {
  const std::vector<int32_t> prompt = {100000, 10492, 2065, 245, 766};  // BOS "Once upon a time"
  const std::vector<PeerCase> cases = {
      {"deepseek2", "tiny-v3", 0, false,
       {{12476, 10.047887802124023f}, {53005, 8.828888893127441f}, {34807, 8.66960334777832f},
        {85714, 8.648056030273438f}, {5093, 7.962347030639648f}}},
      {"deepseek2", "tiny", 27, false,
       {{85687, 8.255428314208984f}, {7405, 7.940939903259277f}, {16679, 7.929915428161621f},
        {45836, 7.745405197143555f}, {31954, 7.4958696365356445f}}},
      {"deepseek2", "tiny", 27, true,
       {{98525, 7.960356712341309f}, {34860, 7.718009948730469f}, {94252, 7.633388042449951f},
        {54382, 7.6237263679504395f}, {3509, 7.605653285980225f}}},
      {"deepseek", "tiny", 0, false,
       {{101705, 8.036627769470215f}, {65623, 8.035340309143066f}, {46842, 7.931449890136719f},
        {61798, 7.92038631439209f}, {99703, 7.896229267120361f}}},
  };
  for (const PeerCase& pc : cases) {
    SynthOptions o = options(pc.arch, pc.preset, DType::F32, pc.legacy);
    o.seed = 42;
    o.vocab_path = vocab_path();
    if (pc.n_layer > 0) o.n_layer = pc.n_layer;
    const std::string label = std::string(pc.arch) + " " + pc.preset + (pc.legacy ? " legacy" : "");
    auto f = open(synth(o, "peer.gguf"));
    ASSERT_NE(f, nullptr);
    auto c = ModelConfig::from_gguf(*f);
    ASSERT_TRUE(c) << c.status().to_string();
    auto logits = reference_forward(*f, *c, prompt);
    ASSERT_TRUE(logits) << logits.status().to_string();
    const float* last = logits->data() + (prompt.size() - 1) * c->n_vocab;
    const std::vector<int32_t> top = top_k(last, c->n_vocab, 5);
    for (size_t i = 0; i < pc.top5.size(); ++i) {
      EXPECT_NEAR(last[pc.top5[i].first], pc.top5[i].second, 2e-3) << label << " token " << pc.top5[i].first;
      if (i < 2) {
        EXPECT_EQ(top[i], pc.top5[i].first) << label << " rank " << i;
      }
    }
  }
}

// ---- optimized engine path against the reference ------------------------------------------

// Routes as the reference did: each MoE layer's moe_route gets the reference's experts and
// weights for the batch's tokens (positions first_position..), layers in order within a pass.
class ReplayRouting final : public ForwardingBackend {
 public:
  ReplayRouting(Backend& inner, const ReferenceRouting& routing) : ForwardingBackend(inner), routing_(routing) {}
  int64_t first_position = 0;  // of the batch about to run

  void begin_forward(int64_t n_tokens) override {
    moe_layer_ = 0;
    ForwardingBackend::begin_forward(n_tokens);
  }
  void moe_route(const float* router_logits, int64_t n_tokens, const RoutingParams& p, int32_t* experts, float* weights) override {
    ASSERT_LT(moe_layer_, routing_.size());
    const std::vector<Route>& layer = routing_[moe_layer_++];
    for (int64_t t = 0; t < n_tokens; ++t) {
      const Route& r = layer.at(static_cast<size_t>(first_position + t));
      ASSERT_EQ(static_cast<int64_t>(r.experts.size()), p.n_expert_used);
      std::copy(r.experts.begin(), r.experts.end(), experts + t * p.n_expert_used);
      std::copy(r.weights.begin(), r.weights.end(), weights + t * p.n_expert_used);
    }
  }

 private:
  const ReferenceRouting& routing_;
  size_t moe_layer_ = 0;  // index of the next MoE layer in this pass
};

// The prompt through the engine's architecture in chunks of 16 tokens, then the rest one token
// at a time (decode steps), logits for every position, with the reference's routing.
std::vector<float> engine_logits(const gguf::GgufFile& file, const ModelConfig& cfg, const std::vector<int32_t>& tokens,
                                 size_t n_prompt, const ReferenceRouting& routing) {
  auto arch = make_architecture(cfg, file);
  EXPECT_TRUE(arch) << arch.status().to_string();
  if (!arch) return {};
  CpuBackend cpu(2);
  ReplayRouting backend(cpu, routing);
  KvCache kv((*arch)->kv_shape(256), 64);
  std::vector<float> all, logits;
  for (size_t start = 0; start < tokens.size();) {
    const size_t end = start < n_prompt ? std::min(n_prompt, start + 16) : start + 1;
    Batch b;
    for (size_t i = start; i < end; ++i) b.add(tokens[i], static_cast<int32_t>(i), 5, true);
    EXPECT_TRUE(kv.reserve(5, static_cast<int64_t>(end)).is_ok());
    logits.resize(static_cast<size_t>(b.n_logits() * cfg.n_vocab));
    backend.first_position = static_cast<int64_t>(start);
    const Status st = run_forward(**arch, backend, b, kv, cfg.n_vocab, logits.data());
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    if (!st) return {};
    all.insert(all.end(), logits.begin(), logits.end());
    start = end;
  }
  return all;
}

struct EngineCase {
  const char* arch;
  const char* preset;
  bool legacy;
  DType type;
  double tolerance;  // every position's max difference, relative to its largest reference logit
};

class DeepseekEngineVsReference : public ::testing::TestWithParam<EngineCase> {};

// The engine runs on the reference's routing (ReplayRouting): top-k selection is discontinuous,
// and a token whose k-th and (k+1)-th selection scores are within ~1e-3 could otherwise pick
// another expert from the engine's 8-bit activations, moving its logits by a whole expert's
// output. With the choices the same, every position is bounded: F32 only differs in summation
// order; the quantized cases by the activations the engine quantizes and the reference does not.
// Max over positions of each position's max relative difference between the engine and the
// reference on the file at `path` (40 prompt tokens in chunks, then 6 decode steps).
double worst_engine_vs_reference(const std::string& path) {
  auto file = gguf::GgufFile::open(path);
  EXPECT_TRUE(file) << file.status().to_string();
  if (!file) return 1e30;
  auto cfg = ModelConfig::from_gguf(**file);
  EXPECT_TRUE(cfg) << cfg.status().to_string();
  if (!cfg) return 1e30;
  const size_t n_prompt = 40, n_decode = 6;
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < n_prompt + n_decode; ++i) tokens.push_back(static_cast<int32_t>((i * 131 + 20) % cfg->n_vocab));
  ReferenceRouting routing;
  auto ref = reference_forward(**file, *cfg, tokens, &routing);
  EXPECT_TRUE(ref) << ref.status().to_string();
  EXPECT_FALSE(routing.empty());
  if (!ref) return 1e30;
  const std::vector<float> got = engine_logits(**file, *cfg, tokens, n_prompt, routing);
  EXPECT_EQ(got.size(), ref->size());
  if (got.size() != ref->size()) return 1e30;
  double worst = 0.0;
  for (size_t t = 0; t < tokens.size(); ++t)
    worst = std::max(worst, max_rel_diff(got.data() + t * cfg->n_vocab, ref->data() + t * cfg->n_vocab, cfg->n_vocab));
  return worst;
}

TEST_P(DeepseekEngineVsReference, LogitsMatch) {
  const EngineCase ec = GetParam();
  const std::string name = std::string(ec.arch) + "_" + ec.preset + (ec.legacy ? "_legacy_" : "_") + dtype_name(ec.type);
  const std::string path = synth(options(ec.arch, ec.preset, ec.type, ec.legacy), "engine_" + name + ".gguf");
  const double worst = worst_engine_vs_reference(path);
  std::printf("[ diff     ] %s: max relative difference %.3g\n", name.c_str(), worst);
  EXPECT_LT(worst, ec.tolerance) << name;
}

// Measured worst positions: F32 below 1e-6; Q8_0 0.021-0.032; Q4_K 0.021-0.025, and 0.044 for
// tiny-v3, which multiplies the routed output by expert_weights_scale 2.5 (normalized weights).
INSTANTIATE_TEST_SUITE_P(
    AllCases, DeepseekEngineVsReference,
    ::testing::Values(EngineCase{"deepseek2", "tiny", false, DType::F32, 1e-5},
                      EngineCase{"deepseek2", "tiny-v3", false, DType::F32, 1e-5},
                      EngineCase{"deepseek2", "tiny", true, DType::F32, 1e-5},
                      EngineCase{"deepseek2", "tiny-v3", true, DType::F32, 1e-5},
                      EngineCase{"deepseek", "tiny", false, DType::F32, 1e-5},
                      EngineCase{"deepseek2", "tiny", false, DType::Q8_0, 0.04},
                      EngineCase{"deepseek2", "tiny-v3", false, DType::Q8_0, 0.04},
                      EngineCase{"deepseek2", "tiny", true, DType::Q8_0, 0.04},
                      EngineCase{"deepseek", "tiny", false, DType::Q8_0, 0.04},
                      EngineCase{"deepseek2", "tiny", false, DType::Q4_K, 0.04},
                      EngineCase{"deepseek2", "tiny-v3", false, DType::Q4_K, 0.06},
                      EngineCase{"deepseek2", "tiny", true, DType::Q4_K, 0.04},
                      EngineCase{"deepseek", "tiny", false, DType::Q4_K, 0.04}),
    [](const ::testing::TestParamInfo<EngineCase>& info) {
      return std::string(info.param.arch) + "_" + (std::string(info.param.preset) == "tiny-v3" ? "tinyv3" : "tiny") +
             (info.param.legacy ? "_legacy_" : "_") + dtype_name(info.param.type);
    });

// Mixed per-tensor types as the published dynamic quants have them: routed experts in a 1- or
// 2- or 3-bit i-quant, attention, shared experts and the rest in Q4_K (and the output in Q6_K).
// Measured: 0.020-0.022, as all-Q4_K files give.
class DeepseekIQuantExperts : public ::testing::TestWithParam<DType> {};

TEST_P(DeepseekIQuantExperts, LogitsMatch) {
  const DType expert_type = GetParam();
  SynthOptions o = options("deepseek2", "small", DType::Q4_K);
  o.output_dtype = DType::Q6_K;
  const std::string base = synth(o, "iq_base.gguf");
  const std::string path = tmp_path(std::string("iq_experts_") + dtype_name(expert_type) + ".gguf");
  const Status st = test::rewrite_with_iquants(
      base, path,
      [&](const std::string& name) -> std::optional<DType> {
        if (name.find("_exps.weight") != std::string::npos) return expert_type;  // all 256-aligned in "small"
        return std::nullopt;
      },
      11);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto file = open(path);
  ASSERT_NE(file, nullptr);
  int n_iq = 0;
  for (const gguf::TensorInfo& t : file->tensors()) n_iq += t.view.dtype == expert_type;
  EXPECT_GT(n_iq, 0);
  ASSERT_NE(file->find_tensor("blk.1.attn_kv_a_mqa.weight"), nullptr);
  EXPECT_EQ(file->find_tensor("blk.1.attn_kv_a_mqa.weight")->view.dtype, DType::Q4_K);
  const double worst = worst_engine_vs_reference(path);
  std::printf("[ diff     ] deepseek2 experts %s, rest q4_K: max relative difference %.3g\n", dtype_name(expert_type),
              worst);
  EXPECT_LT(worst, 0.05) << dtype_name(expert_type);
}

INSTANTIATE_TEST_SUITE_P(CodebookTypes, DeepseekIQuantExperts,
                         ::testing::Values(DType::IQ1_S, DType::IQ1_M, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
                                           DType::IQ3_XXS, DType::IQ3_S),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace fathom
