// Context shift against its straightforward alternative, a fresh prefill of the kept tokens at
// their new positions. Rotate path: on one-layer models (whose cached keys and values depend on
// each token alone, so a shifted cache can equal a fresh one) the logits after a shift match the
// fresh prefill's within a bound per cache type. Recompute path: the logits match on full-depth
// models. Shared blocks are never written; the engine keeps generating past n_ctx.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/model.h"
#include "model/synth.h"
#include "runtime/context_shift.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

constexpr int64_t kCtx = 64;

std::string synth_path(const std::string& arch, const std::string& preset, std::optional<int64_t> n_layer) {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/shift-" + arch + "-" + preset + "-" +
                           std::to_string(n_layer.value_or(0)) + ".gguf";
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.n_layer = n_layer;
  o.seed = 7;
  EXPECT_TRUE(synth_model(o, path).is_ok());
  return path;
}

std::unique_ptr<Model> load(const std::string& path) {
  LoadOptions lo;
  lo.n_threads = 2;
  auto m = Model::load(path, lo);
  EXPECT_TRUE(m) << m.status().to_string();
  return m ? std::move(m).value() : nullptr;
}

std::unique_ptr<KvCache> make_cache(const Model& m, DType k_type, bool prefix_cache) {
  KvCacheShape shape = with_types(m.kv_shape(kCtx), {k_type, k_type == DType::Q8_0 ? DType::F16 : k_type});
  auto kv = std::make_unique<KvCache>(shape, static_cast<int32_t>(4 * kCtx / shape.block_size));
  if (prefix_cache) kv->enable_prefix_cache();
  return kv;
}

std::vector<int32_t> tokens_of(int n, int64_t n_vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((i * 53 + 11) % n_vocab));
  return t;
}

// Computes tokens[from, end) of sequence seq at their positions; the logits of the last.
std::vector<float> prefill(Model& m, KvCache& kv, int32_t seq, const std::vector<int32_t>& tokens, int64_t from) {
  Batch b;
  for (int64_t p = from; p < static_cast<int64_t>(tokens.size()); ++p)
    b.add(tokens[static_cast<size_t>(p)], static_cast<int32_t>(p), seq, p + 1 == static_cast<int64_t>(tokens.size()));
  std::vector<float> logits;
  EXPECT_TRUE(m.forward(b, kv, logits).is_ok());
  return logits;
}

// max |a - b| / max |b|
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return diff / scale;
}

struct ShiftResult {
  ShiftPath taken;
  double error;  // relative logit error after the shift against a fresh prefill
};

// Sequence 1 caches n_cached tokens, shifts keeping n_keep, then takes one more token; sequence
// 2 is a fresh prefill of the same (shifted) tokens. skip_rotation: the rows move, unrotated
// (what the comparison must catch).
ShiftResult shift_against_fresh(Model& m, DType k_type, int64_t n_cached, int64_t n_keep, bool skip_rotation = false) {
  auto kv = make_cache(m, k_type, /*prefix_cache=*/true);
  std::vector<int32_t> tokens = tokens_of(static_cast<int>(n_cached), m.config().n_vocab);
  prefill(m, *kv, 1, tokens, 0);
  kv->cache_computed_blocks(1, tokens, n_cached);
  ShiftResult r{};
  const ContextShift shift = plan_context_shift(n_cached, n_keep);
  int64_t n_computed = n_cached - shift.n_discard;
  if (skip_rotation) {
    EXPECT_TRUE(kv->discard_positions(1, tokens, n_cached, n_keep, shift.n_discard, [](float*, int64_t) {}).is_ok());
    tokens.erase(tokens.begin() + n_keep, tokens.begin() + n_keep + shift.n_discard);
  } else {
    n_computed = apply_context_shift(m, *kv, 1, tokens, n_cached, shift, &r.taken);
  }
  EXPECT_EQ(static_cast<int64_t>(tokens.size()), n_cached - (n_cached - n_keep) / 2);
  tokens.push_back(static_cast<int32_t>(7 % m.config().n_vocab));
  const std::vector<float> shifted = prefill(m, *kv, 1, tokens, n_computed);
  const std::vector<float> fresh = prefill(m, *kv, 2, tokens, 0);
  r.error = relative_error(shifted, fresh);
  return r;
}

TEST(ContextShift, PlanDiscardsHalfOfWhatFollowsTheKeptTokens) {
  EXPECT_EQ(plan_context_shift(63, 4).n_discard, 29);
  EXPECT_EQ(plan_context_shift(63, 61).n_discard, 1);
  EXPECT_EQ(plan_context_shift(10, 0).n_discard, 5);
}

// Bounds per K type, about 3x the largest measured (f32 2.7e-7, f16 1.7e-4, bf16 9.8e-4 of the
// largest logit): an f32 key is rotated exactly up to float rounding of cos/sin; f16 and bf16
// keys are rounded a second time after the rotation. Moving the keys without rotating them
// misses by far more.
TEST(ContextShift, RotatedKeysMatchAFreshPrefillOnOneLayer) {
  struct Case {
    std::string arch, preset;
  };
  for (const Case& c : {Case{"llama", "tiny"}, Case{"qwen2", "tiny"}, Case{"deepseek", "tiny"}, Case{"deepseek2", "tiny-v3"}}) {
    auto m = load(synth_path(c.arch, c.preset, 1));
    ASSERT_TRUE(m);
    EXPECT_GT(shift_against_fresh(*m, DType::F32, kCtx - 1, 4, /*skip_rotation=*/true).error, 1e-2) << c.arch;
    for (const auto& [type, bound] : {std::pair{DType::F32, 1e-6}, std::pair{DType::F16, 5e-4}, std::pair{DType::BF16, 3e-3}}) {
      for (int64_t n_keep : {0, 4, 21}) {  // none, inside the first block, past it
        const ShiftResult r = shift_against_fresh(*m, type, kCtx - 1, n_keep);
        EXPECT_EQ(r.taken, ShiftPath::kRotate);
        EXPECT_LE(r.error, bound) << c.arch << " " << dtype_name(type) << " keep " << n_keep;
        std::printf("rotate %-9s K %-4s keep %2lld: max logit error %.2e of the largest logit\n", c.arch.c_str(),
                    dtype_name(type), static_cast<long long>(n_keep), r.error);
      }
    }
  }
}

// A quantized K cache is recomputed from the kept whole blocks: the result is a fresh prefill,
// whatever the depth.
TEST(ContextShift, QuantizedKeysAreRecomputedAndMatchAFreshPrefill) {
  for (const auto& [arch, preset] : {std::pair{"llama", "tiny"}, std::pair{"deepseek2", "tiny-l64"}}) {
    auto m = load(synth_path(arch, preset, std::nullopt));
    ASSERT_TRUE(m);
    for (int64_t n_keep : {4, 21}) {
      const ShiftResult r = shift_against_fresh(*m, DType::Q8_0, kCtx - 1, n_keep);
      EXPECT_EQ(r.taken, ShiftPath::kRecompute);
      EXPECT_LE(r.error, 1e-5) << arch << " keep " << n_keep;
      std::printf("recompute %-9s K q8_0 keep %2lld: max logit error %.2e\n", arch, static_cast<long long>(n_keep), r.error);
    }
  }
}

// Blocks another sequence shares are copied before they are written; the prefix cache keeps the
// entries of blocks whose rows did not change and loses those of rows that did.
TEST(ContextShift, SharedBlocksAreCopiedNotWritten) {
  auto m = load(synth_path("llama", "tiny", 1));
  ASSERT_TRUE(m);
  auto kv = make_cache(*m, DType::F16, /*prefix_cache=*/true);
  std::vector<int32_t> tokens = tokens_of(kCtx - 1, m->config().n_vocab);
  prefill(*m, *kv, 1, tokens, 0);
  kv->cache_computed_blocks(1, tokens, kCtx - 1);
  kv->share_prefix(1, 2, 3);  // sequence 2 holds blocks 0..2
  const std::vector<int32_t> before = kv->block_table(1);
  std::vector<uint8_t> shared_rows;
  for (int b = 0; b < 3; ++b) {
    const uint8_t* rows = kv->k_data(0, before[static_cast<size_t>(b)], 0);
    shared_rows.insert(shared_rows.end(), rows, rows + kv->k_row_bytes() * 16);
  }
  const int64_t n_keep = 20;  // block 1 is written from slot 4 on, block 2 entirely
  ASSERT_TRUE(kv->discard_positions(1, tokens, kCtx - 1, n_keep, 21, [](float*, int64_t) {}).is_ok());
  const std::vector<int32_t>& after = kv->block_table(1);
  ASSERT_EQ(after.size(), 3u);  // 42 positions
  EXPECT_EQ(after[0], before[0]);
  EXPECT_NE(after[1], before[1]);
  EXPECT_NE(after[2], before[2]);
  std::vector<uint8_t> still;
  for (int b = 0; b < 3; ++b) {
    const uint8_t* rows = kv->k_data(0, kv->block_table(2)[static_cast<size_t>(b)], 0);
    still.insert(still.end(), rows, rows + kv->k_row_bytes() * 16);
  }
  EXPECT_EQ(still, shared_rows);
  // The old tokens' blocks 0..3 are all still cached with their old rows.
  EXPECT_EQ(kv->reuse_prefix(3, tokens), 48);
}

TEST(ContextShift, EngineGeneratesPastTheContext) {
  const std::string path = synth_path("qwen2", "tiny", std::nullopt);
  EngineOptions o;
  o.model_path = path;
  o.n_threads = 2;
  o.n_ctx = 32;
  o.context_shift_keep = 31;
  auto refused = Engine::create(o);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.status().message().find("--context-shift=31"), std::string::npos) << refused.status().message();
  for (const DType k : {DType::F16, DType::Q8_0}) {
    o.context_shift_keep = 4;
    o.kv_types = {k, DType::F16};
    auto e = Engine::create(o);
    ASSERT_TRUE(e) << e.status().to_string();
    GenerationRequest r;
    r.prompt = tokens_of(20, (*e)->model().config().n_vocab);
    r.max_tokens = 100;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    int n = 0;
    TokenEvent last;
    r.on_event = [&](const TokenEvent& ev) {
      if (ev.token >= 0) ++n;
      if (ev.finished) last = ev;
    };
    ASSERT_TRUE((*e)->submit(std::move(r)));
    ASSERT_TRUE((*e)->run_until_idle().is_ok());
    EXPECT_EQ(last.reason, FinishReason::kLength) << last.status.to_string();
    EXPECT_EQ(n, 100);
    // 20 + 100 tokens through 32 positions: the first shift after 12 tokens, then one every 13
    // (keep 4 of the 31 cached, discard 13).
    EXPECT_EQ(last.stats.n_context_shifts, 7) << dtype_name(k);
    EXPECT_EQ((*e)->kv_cache().n_active_blocks(), 0);
  }
}

}  // namespace
}  // namespace fathom
