// End-to-end comparison of an accelerator backend with the CPU backend and the naive f32
// reference forward on a synth model, shared by the OpenCL and CUDA model tests: the same
// tokens fed as prefill chunks then decode steps, the logits of every position compared.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/placed_backend.h"
#include "backend_op_checks.h"
#include "model/model.h"
#include "model/reference.h"
#include "model/synth.h"

namespace fathom::test {

// A 2-layer synth model of arch/preset in `type`, written once per prefix into the test tmp dir.
inline std::string synth_for_backend(const std::string& prefix, const std::string& arch, DType type,
                                     const std::string& preset = "tiny") {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.n_layer = 2;
  o.dtype = type;
  o.seed = 11;
  o.n_threads = 2;
  const std::string path = std::string(FATHOM_TEST_TMP) + "/" + prefix + "-" + arch + "-" + preset + "-" + dtype_name(type) + ".gguf";
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

inline std::vector<int32_t> test_tokens(int64_t n_vocab) {
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < 26; ++i) tokens.push_back(static_cast<int32_t>((i * 97 + 5) % n_vocab));
  return tokens;
}

// Feeds test_tokens in chunks of chunk_at(start) tokens, the KV cache stored in kv_types; logits
// of every position.
inline std::vector<float> run_tokens(Model& m, int64_t n_vocab, const std::function<size_t(size_t start)>& chunk_at,
                                     KvCacheTypes kv_types = {DType::F32, DType::F32}) {
  KvCache kv(with_types(m.kv_shape(128), kv_types), 16);
  const std::vector<int32_t> tokens = test_tokens(n_vocab);
  std::vector<float> all, logits;
  size_t start = 0;
  while (start < tokens.size()) {
    const size_t chunk = chunk_at(start);
    Batch b;
    for (size_t i = start; i < std::min(tokens.size(), start + chunk); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
    EXPECT_TRUE(m.forward(b, kv, logits).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
    start += chunk;
  }
  return all;
}

struct ModelComparison {
  double vs_cpu = 1.0;        // NMSE of the device's logits to the CPU backend's
  double vs_reference = 1.0;  // ... to the naive f32 reference forward
  double cpu_vs_reference = 1.0;
  int64_t same_argmax = 0;    // positions where the device's greedy token is the reference's
  int64_t n_positions = 0;
};

// Runs the model at `path` on the CPU (cpu_options) and on the device (device_options, whose
// backend must come up as `backend_name`), both with the KV cache stored in kv_types, and
// against the reference forward (f32 throughout). after_device, if given, sees the device's
// model once it has run.
inline ModelComparison compare_model(const std::string& path, const LoadOptions& cpu_options, const LoadOptions& device_options,
                                     const char* backend_name, const std::function<size_t(size_t start)>& chunk_at,
                                     KvCacheTypes kv_types = {DType::F32, DType::F32},
                                     const std::function<void(Model&)>& after_device = {}) {
  ModelComparison r;
  auto cpu = Model::load(path, cpu_options);
  EXPECT_TRUE(cpu) << cpu.status().to_string();
  auto dev = Model::load(path, device_options);
  EXPECT_TRUE(dev) << dev.status().to_string();
  if (!cpu || !dev) return r;
  EXPECT_STREQ((*dev)->backend().name(), backend_name);
  const int64_t n_vocab = (*cpu)->config().n_vocab;
  const std::vector<float> want = run_tokens(**cpu, n_vocab, chunk_at, kv_types);
  const std::vector<float> got = run_tokens(**dev, n_vocab, chunk_at, kv_types);
  if (after_device) after_device(**dev);
  auto ref = reference_forward((*cpu)->file(), (*cpu)->config(), test_tokens(n_vocab));
  EXPECT_TRUE(ref) << ref.status().to_string();
  if (!ref || got.size() != want.size() || ref->size() != got.size()) {
    ADD_FAILURE() << "logit counts differ";
    return r;
  }
  const int64_t n = static_cast<int64_t>(got.size());
  r.vs_cpu = nmse(got.data(), want.data(), n);
  r.vs_reference = nmse(got.data(), ref->data(), n);
  r.cpu_vs_reference = nmse(want.data(), ref->data(), n);
  r.n_positions = n / n_vocab;
  for (int64_t t = 0; t < r.n_positions; ++t) {
    const float* g = got.data() + t * n_vocab;
    const float* w = ref->data() + t * n_vocab;
    r.same_argmax += std::max_element(g, g + n_vocab) - g == std::max_element(w, w + n_vocab) - w;
  }
  std::printf("[ nmse     ] logits vs cpu %.3e; vs f32 reference: %s %.3e (argmax agrees at %lld/%lld positions), cpu %.3e\n",
              r.vs_cpu, backend_name, r.vs_reference, static_cast<long long>(r.same_argmax),
              static_cast<long long>(r.n_positions), r.cpu_vs_reference);
  return r;
}

// A hybrid placement (device_options.placement) against the same model all on the device and
// all on the CPU: logits NMSE to each, and the ops that ran on each side of the split.
struct PlacementComparison {
  double vs_device = 1.0;
  double vs_cpu = 1.0;
  uint64_t ops_on_device = 0;
  uint64_t ops_on_cpu = 0;
};

inline PlacementComparison compare_placement(const std::string& path, const LoadOptions& cpu_options, const LoadOptions& device_options,
                                             const std::function<size_t(size_t start)>& chunk_at) {
  PlacementComparison r;
  LoadOptions full = device_options;
  full.placement = {};
  auto cpu = Model::load(path, cpu_options);
  auto dev = Model::load(path, full);
  auto hybrid = Model::load(path, device_options);
  EXPECT_TRUE(cpu && dev && hybrid);
  if (!cpu || !dev || !hybrid) return r;
  auto* placed = dynamic_cast<PlacedBackend*>(&(*hybrid)->backend());
  EXPECT_NE(placed, nullptr) << "the device did not start";
  if (!placed) return r;
  const int64_t n_vocab = (*cpu)->config().n_vocab;
  const std::vector<float> want_cpu = run_tokens(**cpu, n_vocab, chunk_at);
  const std::vector<float> want_dev = run_tokens(**dev, n_vocab, chunk_at);
  const std::vector<float> got = run_tokens(**hybrid, n_vocab, chunk_at);
  EXPECT_EQ(got.size(), want_cpu.size());
  EXPECT_EQ(got.size(), want_dev.size());
  if (got.size() != want_cpu.size() || got.size() != want_dev.size()) return r;
  const int64_t n = static_cast<int64_t>(got.size());
  r.vs_device = nmse(got.data(), want_dev.data(), n);
  r.vs_cpu = nmse(got.data(), want_cpu.data(), n);
  r.ops_on_device = placed->ops_on(Placed::kDevice);
  r.ops_on_cpu = placed->ops_on(Placed::kCpu);
  for (const std::string& line : (*hybrid)->placement().describe(0)) std::printf("[ placed   ] %s\n", line.c_str());
  std::printf("[ nmse     ] hybrid logits vs all-device %.3e, vs all-cpu %.3e; ops on device %llu, on cpu %llu\n", r.vs_device,
              r.vs_cpu, static_cast<unsigned long long>(r.ops_on_device), static_cast<unsigned long long>(r.ops_on_cpu));
  return r;
}

// The hybrid placements every accelerator backend is tested with.
struct PlacementCase {
  const char* arch;
  const char* preset;
  DType type;
  int gpu_layers;               // -1: all
  bool cpu_moe;
  const char* override_tensor;  // nullptr: none
  double max_nmse;              // to either side: the CPU rounds activations to 8 bits for quantized weights
};

inline std::vector<PlacementCase> placement_cases() {
  return {{"llama", "small", DType::Q4_0, 1, false, nullptr, 1e-3},
          {"qwen2", "tiny", DType::Q8_0, -1, false, "attn_output|ffn_down=cpu", 1e-3},
          {"deepseek2", "tiny", DType::Q4_0, -1, true, nullptr, 1e-3},
          {"deepseek2", "tiny-v3", DType::F32, 1, false, nullptr, 1e-9},
          {"llama", "small", DType::IQ4_XS, 2, false, "ffn_down=cpu", 1e-3}};
}

inline std::string placement_case_name(const ::testing::TestParamInfo<PlacementCase>& info) {
  std::string name = std::string(info.param.arch) + "_" + info.param.preset + "_" + std::to_string(info.index);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// device_options names the device; the case adds its placement. Prompt chunks of 10, then decode.
inline void check_placement_case(const PlacementCase& c, const std::string& prefix, LoadOptions device_options) {
  LoadOptions cpu;
  cpu.n_threads = device_options.n_threads;
  device_options.placement.gpu_layers = c.gpu_layers;
  device_options.placement.cpu_moe = c.cpu_moe;
  if (c.override_tensor) device_options.placement.overrides = {c.override_tensor};
  const PlacementComparison r = compare_placement(synth_for_backend(prefix, c.arch, c.type, c.preset), cpu, device_options,
                                                  [](size_t start) -> size_t { return start < 20 ? 10 : 1; });
  EXPECT_LT(r.vs_device, c.max_nmse);
  EXPECT_LT(r.vs_cpu, c.max_nmse);
  EXPECT_GT(r.ops_on_device, 0u);
  EXPECT_GT(r.ops_on_cpu, 0u);
}

}  // namespace fathom::test
