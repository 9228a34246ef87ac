// The KV cache element types end to end: a synth model's logits with its cache stored as f16,
// bf16, q8_0 or q4_0 stay within each type's bound of the logits with an f32 cache (prefill in
// chunks, so later chunks attend to stored rows of earlier ones, then decode), for the per-head
// caches (llama, qwen2) and the MLA latent cache (deepseek2).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "logits_compare.h"
#include "model/model.h"
#include "model/synth.h"

namespace fathom {
namespace {

std::string synth(const std::string& arch, const std::string& preset) {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.dtype = DType::F32;
  o.seed = 11;
  const std::string path = std::string(FATHOM_TEST_TMP) + "/kv-types-" + arch + "-" + preset + ".gguf";
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

// Logits of every position of 48 tokens: prefill in chunks of 16, then 16 single-token steps.
std::vector<float> run(Model& m, const KvCacheTypes& types) {
  const KvCacheShape shape = with_types(m.kv_shape(64), types);
  EXPECT_TRUE(check_kv_cache_types(shape).is_ok());
  KvCache kv(shape, 8);
  std::vector<float> all, logits;
  const int64_t n_vocab = m.config().n_vocab;
  int32_t pos = 0;
  for (int64_t chunk : {16, 16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}) {
    Batch b;
    for (int64_t i = 0; i < chunk; ++i, ++pos) b.add(static_cast<int32_t>((pos * 131 + 7) % n_vocab), pos, 0, true);
    EXPECT_TRUE(m.forward(b, kv, logits).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// Largest logit difference from the f32 cache's, relative to the largest logit. Measured on these
// models: f16 2-3e-4, bf16 1.5-2.2e-3, q8_0 6-8.5e-3, q4_0 0.06-0.08 per head (llama, qwen2) and
// 0.25 on the latent (deepseek2: its one row is both every head's key and its value, so q4_0's
// rounding enters twice; a random synth model's logits amplify it; the bound is still 2-3x).
struct TypeBound {
  KvCacheTypes types;
  double per_head;  // llama, qwen2
  double latent;    // deepseek2 (the V type does not apply: the latent row takes the K type)
};

const TypeBound kBounds[] = {{{DType::F16, DType::F16}, 1e-3, 1e-3},
                             {{DType::BF16, DType::BF16}, 6e-3, 6e-3},
                             {{DType::Q8_0, DType::Q8_0}, 3e-2, 3e-2},
                             {{DType::Q4_0, DType::Q4_0}, 0.25, 0.6},
                             {{DType::Q8_0, DType::Q4_0}, 0.25, 3e-2}};

class KvTypesVsF32 : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(KvTypesVsF32, LogitsStayWithinEachTypesBound) {
  const auto [arch, preset] = GetParam();
  auto model = Model::load(synth(arch, preset), LoadOptions{2});
  ASSERT_TRUE(model) << model.status().to_string();
  const std::vector<float> exact = run(**model, {DType::F32, DType::F32});
  for (const TypeBound& tb : kBounds) {
    const double d = max_rel_diff(run(**model, tb.types), exact);
    EXPECT_LT(d, (*model)->config().kv_lora_rank > 0 ? tb.latent : tb.per_head) << arch << " K " << dtype_name(tb.types.k) << " V " << dtype_name(tb.types.v);
    EXPECT_GT(d, 0.0) << "the cache type made no difference: was it used?";
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, KvTypesVsF32,
                         ::testing::Values(std::pair<const char*, const char*>{"llama", "tiny"},
                                           std::pair<const char*, const char*>{"qwen2", "tiny"},
                                           std::pair<const char*, const char*>{"deepseek2", "tiny-l64"}));

}  // namespace
}  // namespace fathom
