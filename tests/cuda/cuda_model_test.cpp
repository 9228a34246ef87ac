// End to end: logits of synth models (llama, qwen2, deepseek2 with MLA and MoE) through the CUDA
// backend against the CPU backend and the naive f32 reference forward: a prefill chunk large
// enough for the cuBLAS path, a small one for the multi-token matrix-vector kernels, then decode
// steps. And the start-up path: a CUDA device that is not there falls back to the CPU at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../backend_model_checks.h"
#include "cuda_test_util.h"
#include "model/model.h"

namespace fathom {
namespace {

std::string synth(const std::string& arch, DType type, const std::string& preset = "tiny") {
  return test::synth_for_backend("cuda", arch, type, preset);
}

LoadOptions options_for(const std::string& device, std::vector<std::string>* log = nullptr) {
  LoadOptions lo;
  lo.n_threads = 2;
  lo.device = device;
  lo.log = [log](const std::string& line) {
    if (log) log->push_back(line);
  };
  return lo;
}

struct ModelCase {
  const char* arch;
  const char* preset;  // tiny has 64-wide rows, so K-quants fall back to q5_0 there; small keeps them
  DType type;
  double max_nmse_vs_cpu;        // the CPU rounds activations to 8 bits for quantized weights
  double max_nmse_vs_reference;  // the cuBLAS path multiplies in f16
};

class CudaModel : public ::testing::TestWithParam<ModelCase> {};

TEST_P(CudaModel, LogitsMatchCpuBackend) {
  auto probe = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(probe.status());
  probe->reset();
  const ModelCase c = GetParam();
  std::printf("[ model    ] %s %s %s\n", c.arch, c.preset, dtype_name(c.type));
  // Prompt chunks of 17 (the cuBLAS path) and 3 tokens, then 6 decode steps.
  const test::ModelComparison r =
      test::compare_model(synth(c.arch, c.type, c.preset), options_for("cpu"), options_for("cuda"), "cuda",
                          [](size_t start) -> size_t { return start == 0 ? 17 : start < 20 ? 3 : 1; });
  EXPECT_LT(r.vs_cpu, c.max_nmse_vs_cpu);
  EXPECT_LT(r.vs_reference, c.max_nmse_vs_reference);
  EXPECT_GE(r.same_argmax, r.n_positions - 1);
}

INSTANTIATE_TEST_SUITE_P(Archs, CudaModel,
                         ::testing::Values(ModelCase{"llama", "tiny", DType::Q4_0, 1e-3, 1e-5},
                                           ModelCase{"qwen2", "tiny", DType::Q8_0, 1e-3, 1e-5},
                                           // routing amplifies the f16 rounding of the cuBLAS path
                                           ModelCase{"deepseek2", "tiny", DType::Q4_0, 1e-3, 1e-4},
                                           // YaRN, q_lora, sigmoid routing over expert groups: f32
                                           // weights, since 8-bit CPU activations flip its routing
                                           ModelCase{"deepseek2", "tiny-v3", DType::F32, 1e-9, 1e-9},
                                           ModelCase{"llama", "small", DType::Q4_K, 1e-3, 1e-5},
                                           ModelCase{"qwen2", "small", DType::Q6_K, 1e-3, 1e-5},
                                           ModelCase{"qwen2", "tiny", DType::IQ4_NL, 1e-3, 1e-5},
                                           ModelCase{"llama", "small", DType::IQ4_XS, 1e-3, 1e-5},
                                           ModelCase{"llama", "small", DType::BF16, 1e-5, 1e-5}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.arch) + "_" + info.param.preset + "_" + dtype_name(info.param.type);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Activation residency and CUDA graphs change how the work is queued, not what it computes:
// the same kernels in the same order, so the logits of every prefill chunk and of the decode
// steps (captured as graphs from the third pass on) equal those of per-op round trips
// (FATHOM_CUDA_SYNC_OPS=1) and of kernel-by-kernel launches (FATHOM_CUDA_GRAPHS=0) bit for bit.
TEST(CudaQueueing, GraphsAndResidencyChangeNoLogit) {
  auto probe = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(probe.status());
  probe->reset();
  for (const char* arch : {"qwen2", "deepseek2"}) {
    const std::string path = synth(arch, DType::Q4_0);
    auto run = [&](const char* env, const char* value) {
      if (env) setenv(env, value, 1);
      auto m = Model::load(path, options_for("cuda"));
      if (env) unsetenv(env);
      EXPECT_TRUE(m) << m.status().to_string();
      if (!m) return std::vector<float>{};
      EXPECT_STREQ((*m)->backend().name(), "cuda");
      return test::run_tokens(**m, (*m)->config().n_vocab, [](size_t start) -> size_t { return start == 0 ? 17 : start < 20 ? 3 : 1; });
    };
    const std::vector<float> queued = run(nullptr, nullptr);
    const std::vector<float> no_graphs = run("FATHOM_CUDA_GRAPHS", "0");
    const std::vector<float> round_trips = run("FATHOM_CUDA_SYNC_OPS", "1");
    ASSERT_FALSE(queued.empty());
    EXPECT_EQ(queued, no_graphs) << arch << ": graphs changed the logits";
    EXPECT_EQ(queued, round_trips) << arch << ": residency changed the logits";
  }
}

// Runs with or without a device: with none, or without this device, the model runs on the CPU.
TEST(CudaFallback, MissingDeviceFallsBackAtOnce) {
  const std::string path = synth("qwen2", DType::Q4_0);
  std::vector<std::string> log;
  auto model = Model::load(path, options_for("cuda:999", &log));
  ASSERT_TRUE(model) << model.status().to_string();
  EXPECT_STREQ((*model)->backend().name(), "cpu");
  ASSERT_EQ(log.size(), 1u) << "no retries for a device that does not exist";
  EXPECT_NE(log[0].find("falling back to cpu"), std::string::npos) << log[0];
  std::vector<float> logits;
  KvCache kv((*model)->kv_shape(64), 8);
  Batch b;
  b.add(1, 0, 0, true);
  EXPECT_TRUE((*model)->forward(b, kv, logits).is_ok());
}

TEST(CudaFallback, UnknownDeviceIsAnError) {
  const std::string path = synth("qwen2", DType::Q4_0);
  auto model = Model::load(path, options_for("vulkan"));
  ASSERT_FALSE(model);
  EXPECT_EQ(model.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("cuda:N"), std::string::npos) << model.status().message();
}

}  // namespace
}  // namespace fathom
