// End to end: logits of synth models (llama, qwen2, deepseek2 with MLA and MoE) through the
// OpenCL backend against the CPU backend, prefill in chunks then decode; and the start-up path
// that falls back to the CPU when the kernel build fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "../backend_model_checks.h"
#include "model/model.h"
#include "opencl_test_util.h"

namespace fathom {
namespace {

std::string synth(const std::string& arch, DType type, const std::string& preset = "tiny") {
  return test::synth_for_backend("opencl", arch, type, preset);
}

LoadOptions options_for(const std::string& device, std::vector<std::string>* log = nullptr) {
  LoadOptions lo;
  lo.n_threads = 2;
  lo.device = device;
  lo.opencl_cache_dir = test::opencl_test_cache_dir();
  lo.log = [log](const std::string& line) {
    if (log) log->push_back(line);
  };
  return lo;
}

struct ModelCase {
  const char* arch;
  const char* preset;  // tiny has 64-wide rows, so q4_K falls back to q5_0 there; small keeps q4_K
  DType type;
  double max_nmse_vs_cpu;  // the CPU rounds activations to 8 bits for quantized weights; the kernels keep f32
};

// Both backends are also held to the naive f32 reference forward (weights dequantized, f32
// activations): the kernels compute what it computes, so they must be at least as close to it
// as the CPU path, and close in absolute terms. Unless the device rounds on purpose: half sums
// inside quantized blocks (cl_khr_fp16) or int8 activations (integer dot products), the
// variants picked where the extensions exist; then the CPU's bound applies.
constexpr double kMaxNmseVsReference = 1e-6;
constexpr double kMaxNmseVsReferenceRounded = 1e-3;

class OpenClModel : public ::testing::TestWithParam<ModelCase> {};

TEST_P(OpenClModel, LogitsMatchCpuBackend) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  const OpenClKernelVariants v = (*probe)->variants();
  const bool rounds = v.f16_accumulation != OpenClVariant::kOff || v.int8_dot != OpenClVariant::kOff;
  probe->reset();
  const ModelCase c = GetParam();
  std::printf("[ model    ] %s %s %s%s\n", c.arch, c.preset, dtype_name(c.type), rounds ? " (half sums or int8 activations)" : "");
  // 20 prompt tokens in chunks of 8, then 6 decode steps.
  const test::ModelComparison r = test::compare_model(synth(c.arch, c.type, c.preset), options_for("cpu"), options_for("opencl"),
                                                      "opencl", [](size_t start) -> size_t { return start < 20 ? 8 : 1; });
  EXPECT_LT(r.vs_cpu, c.max_nmse_vs_cpu);
  if (rounds) {
    EXPECT_LT(r.vs_reference, kMaxNmseVsReferenceRounded);
  } else {
    EXPECT_LT(r.vs_reference, kMaxNmseVsReference);
    EXPECT_LE(r.vs_reference, r.cpu_vs_reference * 1.01 + 1e-12);
  }
  EXPECT_GE(r.same_argmax, r.n_positions - 1);
}

INSTANTIATE_TEST_SUITE_P(Archs, OpenClModel,
                         ::testing::Values(ModelCase{"llama", "tiny", DType::Q4_0, 1e-3},
                                           ModelCase{"qwen2", "tiny", DType::Q4_0, 1e-3},
                                           ModelCase{"deepseek2", "tiny", DType::Q4_0, 1e-3},
                                           ModelCase{"deepseek2", "tiny", DType::Q8_0, 1e-3},
                                           // YaRN, q_lora, sigmoid routing over expert groups: f32
                                           // weights, since 8-bit CPU activations flip its routing
                                           ModelCase{"deepseek2", "tiny-v3", DType::F32, 1e-9},
                                           ModelCase{"llama", "small", DType::Q4_K, 1e-3},
                                           ModelCase{"qwen2", "tiny", DType::IQ4_NL, 1e-3},
                                           ModelCase{"llama", "small", DType::IQ4_XS, 1e-3},
                                           ModelCase{"qwen2", "small", DType::F16, 1e-9}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.arch) + "_" + info.param.preset + "_" + dtype_name(info.param.type);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// KV caches stored as f16 (the default) and q8_0 attend in the kernels, MHA and the MLA latent:
// the device over the same stored rows as the CPU gives its logits (f32 weights, so nothing
// else rounds differently), and is as close to the f32 reference as the CPU is; no attention
// ran on the CPU delegate.
struct KvTypesModelCase {
  const char* arch;
  const char* preset;
  KvCacheTypes kv_types;
};

class OpenClModelKvTypes : public ::testing::TestWithParam<KvTypesModelCase> {};

TEST_P(OpenClModelKvTypes, LogitsMatchCpuBackendOnTheSameCache) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  probe->reset();
  const KvTypesModelCase c = GetParam();
  std::printf("[ model    ] %s %s f32, cache %s\n", c.arch, c.preset, test::kv_types_name(c.kv_types).c_str());
  uint64_t fallbacks = 1;
  const test::ModelComparison r = test::compare_model(
      synth(c.arch, DType::F32, c.preset), options_for("cpu"), options_for("opencl"), "opencl",
      [](size_t start) -> size_t { return start < 20 ? 8 : 1; }, c.kv_types, [&](Model& m) {
        Backend* backend = &m.backend();
        if (auto* placed = dynamic_cast<PlacedBackend*>(backend)) backend = &placed->device();
        const auto* device = dynamic_cast<const OpenClBackend*>(backend);
        ASSERT_NE(device, nullptr);
        fallbacks = device->fallback_ops();
      });
  EXPECT_EQ(fallbacks, 0u) << "ops ran on the CPU delegate";
  EXPECT_LT(r.vs_cpu, 1e-9);
  EXPECT_GT(r.cpu_vs_reference, 0.0) << "the cache was not converted";
  EXPECT_LE(r.vs_reference, r.cpu_vs_reference * 1.01 + 1e-12);
  EXPECT_GE(r.same_argmax, r.n_positions - 1);
}

INSTANTIATE_TEST_SUITE_P(Archs, OpenClModelKvTypes,
                         ::testing::Values(KvTypesModelCase{"llama", "tiny", {DType::F16, DType::F16}},
                                           KvTypesModelCase{"qwen2", "tiny", {DType::F16, DType::F16}},
                                           KvTypesModelCase{"qwen2", "tiny", {DType::Q8_0, DType::Q8_0}},
                                           KvTypesModelCase{"deepseek2", "tiny", {DType::F16, DType::F16}}),
                         [](const auto& info) {
                           return std::string(info.param.arch) + "_" + dtype_name(info.param.kv_types.k) + "_" +
                                  dtype_name(info.param.kv_types.v);
                         });

TEST(OpenClFallback, BrokenKernelBuildRetriesThenRunsOnCpu) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  probe->reset();
  const std::string path = synth("llama", DType::Q4_0);
  std::vector<std::string> log;
  LoadOptions lo = options_for("opencl", &log);
  lo.opencl_inject_build_error = true;
  auto model = Model::load(path, lo);
  ASSERT_TRUE(model) << model.status().to_string();
  EXPECT_STREQ((*model)->backend().name(), "cpu");
  // Two retries with growing delays, then the fallback line carrying the compiler's log.
  ASSERT_EQ(log.size(), 3u);
  EXPECT_NE(log[0].find("attempt 1/3 failed"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("200 ms"), std::string::npos) << log[0];
  EXPECT_NE(log[1].find("400 ms"), std::string::npos) << log[1];
  EXPECT_NE(log[2].find("falling back to cpu"), std::string::npos) << log[2];
  EXPECT_NE(log[2].find("compiler log"), std::string::npos) << log[2];
  EXPECT_NE(log[2].find("injected on purpose"), std::string::npos) << log[2];
  // And the model runs.
  std::vector<float> logits;
  KvCache kv((*model)->kv_shape(64), 8);
  Batch b;
  b.add(1, 0, 0, true);
  EXPECT_TRUE((*model)->forward(b, kv, logits).is_ok());
}

TEST(OpenClFallback, MissingDeviceFallsBackAtOnce) {
  const std::string path = synth("qwen2", DType::Q4_0);
  std::vector<std::string> log;
  auto model = Model::load(path, options_for("opencl:999", &log));
  ASSERT_TRUE(model) << model.status().to_string();
  EXPECT_STREQ((*model)->backend().name(), "cpu");
  ASSERT_EQ(log.size(), 1u) << "no retries for a device that does not exist";
  EXPECT_NE(log[0].find("falling back to cpu"), std::string::npos) << log[0];
}

TEST(OpenClFallback, UnknownDeviceIsAnError) {
  const std::string path = synth("qwen2", DType::Q4_0);
  auto model = Model::load(path, options_for("vulkan"));
  ASSERT_FALSE(model);
  EXPECT_EQ(model.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("opencl:N"), std::string::npos) << model.status().message();
}

}  // namespace
}  // namespace fathom
