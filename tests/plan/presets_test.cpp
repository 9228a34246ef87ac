// `fathom plan --arch-preset` and `fathom synth --preset` describe the same published models from
// one table (model/shape_presets.h): a synth preset of a published model must write the shape
// the plan preset of that model plans with, and the tensors plan synthesizes for it.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "model/shape_presets.h"
#include "model/synth.h"
#include "plan/model_shape.h"

namespace fathom::plan {
namespace {

void expect_same_shape(const ModelShape& file, const ModelShape& preset) {
  EXPECT_EQ(file.arch, preset.arch);
  EXPECT_EQ(file.n_vocab, preset.n_vocab);
  EXPECT_EQ(file.n_ctx_train, preset.n_ctx_train);
  EXPECT_EQ(file.n_embd, preset.n_embd);
  EXPECT_EQ(file.n_layer, preset.n_layer);
  EXPECT_EQ(file.n_nextn_layers, preset.n_nextn_layers);
  EXPECT_EQ(file.n_ff, preset.n_ff);
  EXPECT_EQ(file.n_head, preset.n_head);
  EXPECT_EQ(file.n_head_kv, preset.n_head_kv);
  EXPECT_EQ(file.head_dim, preset.head_dim);
  EXPECT_EQ(file.tied_output, preset.tied_output);
  EXPECT_EQ(file.qkv_bias, preset.qkv_bias);
  EXPECT_EQ(file.q_lora_rank, preset.q_lora_rank);
  EXPECT_EQ(file.kv_lora_rank, preset.kv_lora_rank);
  EXPECT_EQ(file.rope_dim, preset.rope_dim);
  EXPECT_EQ(file.nope_dim, preset.nope_dim);
  EXPECT_EQ(file.v_head_dim, preset.v_head_dim);
  EXPECT_EQ(file.n_expert, preset.n_expert);
  EXPECT_EQ(file.n_expert_used, preset.n_expert_used);
  EXPECT_EQ(file.n_expert_shared, preset.n_expert_shared);
  EXPECT_EQ(file.n_ff_exp, preset.n_ff_exp);
  EXPECT_EQ(file.n_layer_dense_lead, preset.n_layer_dense_lead);
  EXPECT_EQ(file.expert_score_bias, preset.expert_score_bias);
}

using TensorExtents = std::map<std::string, std::vector<int64_t>>;  // name -> ne[0..n_dims)

TensorExtents extents(const std::vector<TensorShape>& tensors) {
  TensorExtents out;
  for (const TensorShape& t : tensors) out[t.name] = std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims);
  return out;
}

TensorExtents extents(const std::vector<SynthTensorInfo>& tensors) {
  TensorExtents out;
  for (const SynthTensorInfo& t : tensors) out[t.name] = t.ne;
  return out;
}

TEST(Presets, SynthPresetsOfPublishedModelsWriteThePlanShape) {
  std::set<std::string> linked;  // "arch/preset=plan preset"
  for (const SynthPresetInfo& p : synth_presets()) {
    if (p.published.empty()) continue;
    linked.insert(p.arch + "/" + p.name + "=" + p.published);
    Expected<ModelDesc> preset = model_from_preset(p.published);
    ASSERT_TRUE(preset.has_value()) << p.arch << "/" << p.name << ": " << preset.status().to_string();
    // deepseek2 twice: the current converters' *_mla keys and the legacy attn_kv_b layout, the
    // one plan's tensor list follows.
    for (const bool legacy : p.arch == "deepseek2" ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
      SCOPED_TRACE(p.arch + "/" + p.name + (legacy ? " (legacy MLA)" : "") + " vs " + p.published);
      SynthOptions o;
      o.arch = p.arch;
      o.preset = p.name;
      o.mla_legacy = legacy;
      const std::string path = std::string(FATHOM_TEST_TMP) + "/presets-" + p.arch + "-" + p.name + ".gguf";
      Expected<std::vector<SynthTensorInfo>> written = synth_plan(o, path);
      ASSERT_TRUE(written.has_value()) << written.status().to_string();
      Expected<ModelDesc> file = model_from_gguf(path);
      ASSERT_TRUE(file.has_value()) << file.status().to_string();
      // The metadata-only file has no tensors, from which the reader takes these two: take them
      // from the tensors synth would write, as the reader does.
      const TensorExtents tensors = extents(*written);
      file->shape.tied_output = tensors.count("output.weight") == 0;
      file->shape.qkv_bias = tensors.count("blk.0.attn_q.bias") != 0;
      expect_same_shape(file->shape, preset->shape);
      if (p.arch != "deepseek2" || legacy) {
        EXPECT_EQ(tensors, extents(preset->tensors));
      }
    }
  }
  // The links the planner's and the benchmarks' numbers rest on.
  for (const char* link : {"deepseek2/v2-lite=deepseek-v2-lite", "deepseek2/v3=deepseek-v3",
                           "qwen2/1.5b=deepseek-r1-distill-qwen-1.5b", "qwen2/7b=deepseek-r1-distill-qwen-7b",
                           "llama/8b=deepseek-r1-distill-llama-8b", "llama/7b=deepseek-llm-7b",
                           "deepseek/moe-16b=deepseek-moe-16b"})
    EXPECT_EQ(linked.count(link), 1u) << link;
}

TEST(Presets, PlanListsEveryPublishedModelOnce) {
  std::set<std::string> names;
  for (const PresetInfo& p : list_presets()) {
    EXPECT_TRUE(names.insert(p.name).second) << p.name;
    ASSERT_TRUE(find_model_preset(p.name).has_value()) << p.name;
    Expected<ModelDesc> d = model_from_preset(p.name);
    ASSERT_TRUE(d.has_value()) << p.name;
    EXPECT_EQ(d->shape.name, p.name);
    EXPECT_GT(d->shape.n_layer, 0) << p.name;
  }
  EXPECT_EQ(names.size(), model_presets().size());
  EXPECT_TRUE(model_from_preset("DeepSeek-V2-Lite").has_value());  // names match in any case
  EXPECT_FALSE(find_model_preset("v2-lite").has_value());         // synth's short names are synth's
}

}  // namespace
}  // namespace fathom::plan
