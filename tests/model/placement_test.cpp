// Hybrid placement without an accelerator: the placement rules (--gpu-layers, --cpu-moe,
// --override-tensor) on synth models, and PlacedBackend's routing, with a "device" that runs the
// CPU kernels on activations in its own memory and records every weight and layer it is handed.
// Its results are the CPU's, so a hybrid forward pass must give the CPU-only logits exactly, and
// the recording shows that each op went where the placement says.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/placed_backend.h"
#include "gguf/gguf.h"
#include "model/architecture.h"
#include "model/config.h"
#include "model/model.h"
#include "model/placement.h"
#include "model/synth.h"
#include "model/weights.h"
#include "../shadow_backend.h"

namespace fathom {
namespace {

std::string synth(const std::string& arch, const std::string& preset, bool tied = false) {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.tied_output = tied;
  o.seed = 5;
  o.n_threads = 2;
  const std::string path = std::string(FATHOM_TEST_TMP) + "/placement-" + arch + "-" + preset + (tied ? "-tied" : "") + ".gguf";
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

struct Loaded {
  std::unique_ptr<gguf::GgufFile> file;
  ModelConfig config;
};

Loaded open(const std::string& path) {
  Loaded l;
  auto f = gguf::GgufFile::open(path);
  EXPECT_TRUE(f) << f.status().to_string();
  l.file = std::move(f).value();
  auto c = ModelConfig::from_gguf(*l.file);
  EXPECT_TRUE(c) << c.status().to_string();
  l.config = *c;
  return l;
}

std::map<std::string, Placed> by_name(const Placement& p) {
  std::map<std::string, Placed> m;
  for (const TensorPlacement& t : p.tensors) m[t.name] = t.where;
  return m;
}

Placement place(const Loaded& l, const std::string& device, const PlacementOptions& o) {
  auto p = plan_placement(*l.file, l.config, device, o);
  EXPECT_TRUE(p) << p.status().to_string();
  return p ? *p : Placement{};
}

TEST(Placement, DefaultPutsEverythingButTheEmbeddingOnTheDevice) {
  const Loaded l = open(synth("deepseek2", "tiny"));
  const Placement p = place(l, "cuda", {});
  for (const TensorPlacement& t : p.tensors)
    EXPECT_EQ(t.where, t.name == "token_embd.weight" ? Placed::kCpu : Placed::kDevice) << t.name;
  for (Placed a : p.attention) EXPECT_EQ(a, Placed::kDevice);
  EXPECT_EQ(p.weight_bytes(Placed::kCpu), l.file->find_tensor("token_embd.weight")->n_bytes);
}

TEST(Placement, CpuDeviceKeepsEverythingOnTheCpu) {
  const Loaded l = open(synth("llama", "tiny"));
  const Placement p = place(l, "cpu", {});
  for (const TensorPlacement& t : p.tensors) EXPECT_EQ(t.where, Placed::kCpu) << t.name;
  EXPECT_EQ(p.weight_bytes(Placed::kDevice), 0u);
  EXPECT_EQ(p.layers_with_attention(Placed::kCpu), l.config.n_layer);
}

TEST(Placement, GpuLayersCountsFromTheLastLayerAndTheHeadAsOneMore) {
  const Loaded l = open(synth("llama", "small"));  // 4 layers
  PlacementOptions o;
  o.gpu_layers = 1;
  Placement p = place(l, "opencl", o);
  for (const TensorPlacement& t : p.tensors)
    EXPECT_EQ(t.where, t.layer == 3 ? Placed::kDevice : Placed::kCpu) << t.name;  // output and output_norm stay on the CPU
  EXPECT_EQ(p.layers_with_attention(Placed::kDevice), 1);
  EXPECT_EQ(p.attention[3], Placed::kDevice);

  o.gpu_layers = 4;  // every layer, not the head
  std::map<std::string, Placed> m = by_name(place(l, "opencl", o));
  EXPECT_EQ(m["blk.0.attn_q.weight"], Placed::kDevice);
  EXPECT_EQ(m["output.weight"], Placed::kCpu);
  EXPECT_EQ(m["output_norm.weight"], Placed::kCpu);

  o.gpu_layers = 5;  // and the head
  m = by_name(place(l, "opencl", o));
  EXPECT_EQ(m["output.weight"], Placed::kDevice);
  EXPECT_EQ(m["output_norm.weight"], Placed::kDevice);
  EXPECT_EQ(m["token_embd.weight"], Placed::kCpu);

  o.gpu_layers = 0;
  p = place(l, "opencl", o);
  EXPECT_EQ(p.weight_bytes(Placed::kDevice), 0u);
  EXPECT_EQ(p.layers_with_attention(Placed::kDevice), 0);
}

TEST(Placement, TiedEmbeddingMovesWithTheHead) {
  const Loaded l = open(synth("llama", "tiny", /*tied=*/true));
  PlacementOptions o;
  EXPECT_EQ(by_name(place(l, "cuda", o))["token_embd.weight"], Placed::kDevice);
  o.gpu_layers = 1;
  EXPECT_EQ(by_name(place(l, "cuda", o))["token_embd.weight"], Placed::kCpu);
}

TEST(Placement, CpuMoeMovesOnlyTheRoutedExperts) {
  const Loaded l = open(synth("deepseek2", "tiny"));
  PlacementOptions o;
  o.cpu_moe = true;
  const Placement p = place(l, "cuda", o);
  int experts = 0;
  for (const TensorPlacement& t : p.tensors) {
    const bool routed = t.name.find("_exps.") != std::string::npos;
    experts += routed;
    if (t.name == "token_embd.weight") continue;
    EXPECT_EQ(t.where, routed ? Placed::kCpu : Placed::kDevice) << t.name;
  }
  EXPECT_EQ(experts, 3 * 2);  // gate/up/down in the 2 MoE layers of 3
  EXPECT_EQ(p.layers_with_attention(Placed::kDevice), 3);
  const std::vector<std::string> lines = p.describe(1024);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("cuda"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("layers 0-2 except ffn_down_exps, ffn_gate_exps, ffn_up_exps of 1-2"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("3.0 KiB KV cache (3 layers)"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("ffn_down_exps, ffn_gate_exps, ffn_up_exps of layers 1-2; token_embd"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[1].find("KV cache"), std::string::npos) << lines[1];

  o.cpu_moe = false;
  o.n_cpu_moe = 2;  // the experts of layer 1 only (layer 0 is dense)
  for (const TensorPlacement& t : place(l, "cuda", o).tensors) {
    if (t.name.find("_exps.") != std::string::npos) {
      EXPECT_EQ(t.where, t.layer < 2 ? Placed::kCpu : Placed::kDevice) << t.name;
    }
  }
}

TEST(Placement, FirstMatchingOverrideWinsOverTheOtherRules) {
  const Loaded l = open(synth("qwen2", "small"));
  PlacementOptions o;
  o.gpu_layers = 1;  // layer 3 only
  o.overrides = {"blk\\.0\\.ffn_=gpu", "blk\\.[03]\\.attn_output=CPU", "blk\\.0\\.=cuda"};
  const Placement p = place(l, "cuda", o);
  const std::map<std::string, Placed> m = by_name(p);
  EXPECT_EQ(m.at("blk.0.ffn_up.weight"), Placed::kDevice);
  EXPECT_EQ(m.at("blk.0.attn_output.weight"), Placed::kCpu);  // the second override, before the third
  EXPECT_EQ(m.at("blk.0.attn_q.weight"), Placed::kDevice);     // the third
  EXPECT_EQ(m.at("blk.3.attn_output.weight"), Placed::kCpu);
  EXPECT_EQ(m.at("blk.3.attn_q.weight"), Placed::kDevice);
  EXPECT_EQ(m.at("blk.1.attn_q.weight"), Placed::kCpu);
  // Attention follows attn_output: off the device in layers 0 and 3.
  for (int64_t layer = 0; layer < 4; ++layer) EXPECT_EQ(p.attention[static_cast<size_t>(layer)], Placed::kCpu) << layer;
}

TEST(Placement, BadOptionsAreClearErrors) {
  const Loaded l = open(synth("llama", "tiny"));
  auto expect_error = [&](const std::string& device, const PlacementOptions& o, const std::string& needle) {
    auto p = plan_placement(*l.file, l.config, device, o);
    ASSERT_FALSE(p) << needle;
    EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find(needle), std::string::npos) << p.status().message();
  };
  PlacementOptions o;
  o.overrides = {"attn_q"};
  expect_error("cuda", o, "expected REGEX=TARGET");
  o.overrides = {"attn_(q=cpu"};
  expect_error("cuda", o, "bad regular expression");
  o.overrides = {"attn_q=tpu"};
  expect_error("cuda", o, "unknown target 'tpu'");
  o.overrides = {"attn_q=opencl"};
  expect_error("cuda", o, "the device in use is cuda, not opencl");
  o.overrides = {"attn_q=gpu"};
  expect_error("cpu", o, "add --device cuda or --device opencl");
  o.overrides = {"attn_q=cpu"};  // harmless without an accelerator
  EXPECT_TRUE(plan_placement(*l.file, l.config, "cpu", o));
  o = {};
  o.gpu_layers = 3;
  expect_error("cpu", o, "--gpu-layers needs an accelerator");
  o = {};
  o.cpu_moe = true;
  expect_error("cpu", o, "--cpu-moe needs an accelerator");
  o = {};
  o.n_cpu_moe = 1;
  expect_error("cpu", o, "--n-cpu-moe needs an accelerator");
  o.n_cpu_moe = -1;
  expect_error("cuda", o, "--n-cpu-moe must not be negative");
  o = {};
  o.gpu_layers = -2;
  expect_error("cuda", o, "must not be negative");
}

TEST(Placement, ModelLoadRejectsPlacementWithoutAnAccelerator) {
  LoadOptions lo;
  lo.n_threads = 2;
  lo.placement.gpu_layers = 1;
  auto m = Model::load(synth("llama", "tiny"), lo);
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("--gpu-layers needs an accelerator"), std::string::npos);
}

// The "device": CPU kernels on activations kept in its own heap, host copies NaN until synced
// (../shadow_backend.h), so the hybrid logits equal the CPU's only if PlacedBackend syncs what
// crosses a placement boundary. It records the weights and layers it is handed.
using RecordingBackend = testing_support::ShadowBackend;

std::vector<float> forward_all(Architecture& arch, Backend& be, const KvCacheShape& shape, int64_t n_vocab) {
  KvCache kv(shape, 16);
  std::vector<float> all;
  for (int64_t start = 0; start < 12; start += 4) {  // a 4-token prefill, then chunks (the KV cache carries over)
    Batch b;
    for (int64_t i = start; i < start + 4; ++i) b.add(static_cast<int32_t>((i * 37 + 11) % n_vocab), static_cast<int32_t>(i), 0, true);
    EXPECT_TRUE(kv.reserve(0, start + 4).is_ok());
    std::vector<float> logits(static_cast<size_t>(b.n_logits() * n_vocab));
    EXPECT_TRUE(run_forward(arch, be, b, kv, n_vocab, logits.data()).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

struct RoutingCase {
  const char* arch;
  const char* preset;
  PlacementOptions placement;
};

class PlacementRouting : public ::testing::TestWithParam<RoutingCase> {};

TEST_P(PlacementRouting, OpsRunWhereTheirWeightsArePlacedAndLogitsAreTheCpus) {
  const RoutingCase& c = GetParam();
  const Loaded l = open(synth(c.arch, c.preset));
  auto arch = make_architecture(l.config, *l.file);
  ASSERT_TRUE(arch) << arch.status().to_string();
  const Placement p = place(l, "recording", c.placement);
  const KvCacheShape shape = (*arch)->kv_shape(64);

  CpuBackend cpu_only(2);
  const std::vector<float> want = forward_all(**arch, cpu_only, shape, l.config.n_vocab);

  auto cpu = std::make_shared<CpuBackend>(2);
  auto recording = std::make_unique<RecordingBackend>();
  RecordingBackend* device = recording.get();
  PlacedBackend placed(cpu, std::move(recording), p.ranges(), p.attention);
  placed.prepare_matmul_weights(matmul_weight_views(*l.file, l.config.n_layer), false);
  const std::vector<float> got = forward_all(**arch, placed, shape, l.config.n_vocab);

  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "logit " << i;  // the same CPU kernels, bit for bit
  EXPECT_GT(placed.ops_on(Placed::kDevice), 0u);
  EXPECT_GT(placed.ops_on(Placed::kCpu), 0u);

  // Every weight the device saw is placed there; every device-placed matrix and norm of the
  // layers was used there, routed experts aside (only the chosen ones run).
  std::map<const void*, const TensorPlacement*> at;
  for (const TensorPlacement& t : p.tensors) at[t.data] = &t;
  for (const void* w : device->weights) {
    auto it = at.upper_bound(w);
    ASSERT_NE(it, at.begin());
    --it;
    EXPECT_EQ(it->second->where, Placed::kDevice) << it->second->name << " ran on the device";
  }
  for (const TensorPlacement& t : p.tensors) {
    if (t.where != Placed::kDevice || t.name.find("_exps.") != std::string::npos || t.name.find(".bias") != std::string::npos) continue;
    if (t.name.find("attn_kv_b") != std::string::npos || t.name.find("attn_k_b") != std::string::npos ||
        t.name.find("attn_v_b") != std::string::npos || t.name.find("exp_probs_b") != std::string::npos)
      continue;  // MLA's per-head slices are separate views into these; the router bias is read on the host
    EXPECT_TRUE(device->weights.count(t.data)) << t.name << " is placed on the device but did not run there";
  }
  for (int64_t layer = 0; layer < l.config.n_layer; ++layer)
    EXPECT_EQ(device->layers.count(layer) == 1, p.attention[static_cast<size_t>(layer)] == Placed::kDevice) << "layer " << layer;
}

PlacementOptions gpu_layers(int n) {
  PlacementOptions o;
  o.gpu_layers = n;
  return o;
}
PlacementOptions cpu_moe() {
  PlacementOptions o;
  o.cpu_moe = true;
  return o;
}
PlacementOptions overrides(std::vector<std::string> v) {
  PlacementOptions o;
  o.overrides = std::move(v);
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Hybrid, PlacementRouting,
    ::testing::Values(RoutingCase{"llama", "small", gpu_layers(2)}, RoutingCase{"qwen2", "small", gpu_layers(5)},
                      RoutingCase{"qwen2", "small", overrides({"attn_output=cpu", "ffn_down=cpu"})},
                      RoutingCase{"deepseek", "tiny", cpu_moe()}, RoutingCase{"deepseek2", "tiny", cpu_moe()},
                      RoutingCase{"deepseek2", "tiny-v3", gpu_layers(1)},
                      RoutingCase{"deepseek2", "tiny-v3", overrides({"blk\\.1\\.=cpu", "_shexp=cpu"})}),
    [](const ::testing::TestParamInfo<RoutingCase>& info) { return std::to_string(info.index) + "_" + info.param.arch; });

}  // namespace
}  // namespace fathom
