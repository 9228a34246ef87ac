// End to end: logits of synth models (llama, qwen2, deepseek2 with MLA and MoE) through the CUDA
// backend against the CPU backend and the naive f32 reference forward: a prefill chunk large
// enough for the cuBLAS path, a small one for the multi-token matrix-vector kernels, then decode
// steps. And the start-up path: a CUDA device that is not there falls back to the CPU at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "model/model.h"
#include "model/reference.h"
#include "model/synth.h"

namespace fathom {
namespace {

using test::nmse;

std::string synth(const std::string& arch, DType type, const std::string& preset = "tiny") {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.n_layer = 2;
  o.dtype = type;
  o.seed = 11;
  o.n_threads = 2;
  const std::string path = std::string(FATHOM_TEST_TMP) + "/cuda-" + arch + "-" + preset + "-" + dtype_name(type) + ".gguf";
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
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

std::vector<int32_t> test_tokens(int64_t n_vocab) {
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < 26; ++i) tokens.push_back(static_cast<int32_t>((i * 97 + 5) % n_vocab));
  return tokens;
}

// Prompt chunks of 17 (cuBLAS path) and 3 tokens, then 6 decode steps; logits of every position.
std::vector<float> run_tokens(Model& m, int64_t n_vocab) {
  KvCache kv(m.kv_shape(128), 16);
  const std::vector<int32_t> tokens = test_tokens(n_vocab);
  std::vector<float> all, logits;
  size_t start = 0;
  while (start < tokens.size()) {
    const size_t chunk = start == 0 ? 17 : start < 20 ? 3 : 1;
    Batch b;
    for (size_t i = start; i < std::min(tokens.size(), start + chunk); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
    EXPECT_TRUE(m.forward(b, kv, logits).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
    start += chunk;
  }
  return all;
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
  const std::string path = synth(c.arch, c.type, c.preset);
  auto cpu = Model::load(path, options_for("cpu"));
  ASSERT_TRUE(cpu) << cpu.status().to_string();
  std::vector<std::string> log;
  auto gpu = Model::load(path, options_for("cuda", &log));
  ASSERT_TRUE(gpu) << gpu.status().to_string();
  ASSERT_STREQ((*gpu)->backend().name(), "cuda") << (log.empty() ? "" : log.back());
  const int64_t n_vocab = (*cpu)->config().n_vocab;
  const std::vector<float> want = run_tokens(**cpu, n_vocab);
  const std::vector<float> got = run_tokens(**gpu, n_vocab);
  ASSERT_EQ(got.size(), want.size());
  const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  auto ref = reference_forward((*cpu)->file(), (*cpu)->config(), test_tokens(n_vocab));
  ASSERT_TRUE(ref) << ref.status().to_string();
  ASSERT_EQ(ref->size(), got.size());
  const double e_ref = nmse(got.data(), ref->data(), static_cast<int64_t>(got.size()));
  const double e_cpu_ref = nmse(want.data(), ref->data(), static_cast<int64_t>(got.size()));
  int64_t same_argmax = 0, n_pos = static_cast<int64_t>(got.size()) / n_vocab;
  for (int64_t t = 0; t < n_pos; ++t) {
    const float* g = got.data() + t * n_vocab;
    const float* w = ref->data() + t * n_vocab;
    same_argmax += std::max_element(g, g + n_vocab) - g == std::max_element(w, w + n_vocab) - w;
  }
  std::printf("[ nmse     ] %s %s %s logits vs cpu %.3e; vs f32 reference: cuda %.3e (argmax agrees at %lld/%lld "
              "positions), cpu %.3e\n", c.arch, c.preset, dtype_name(c.type), e, e_ref, static_cast<long long>(same_argmax),
              static_cast<long long>(n_pos), e_cpu_ref);
  EXPECT_LT(e, c.max_nmse_vs_cpu);
  EXPECT_LT(e_ref, c.max_nmse_vs_reference);
  EXPECT_GE(same_argmax, n_pos - 1);
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
                                           ModelCase{"llama", "small", DType::BF16, 1e-5, 1e-5}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.arch) + "_" + info.param.preset + "_" + dtype_name(info.param.type);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

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
