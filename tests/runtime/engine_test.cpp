// The Engine: continuous batching gives every request the tokens it would get alone, also when
// the cache is too small and sequences are preempted and recomputed; cancel frees the blocks.
#include <gtest/gtest.h>

#include <map>

#include "model/synth.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

std::string synth_path(const std::string& arch) {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/engine-" + arch + ".gguf";
  SynthOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.dtype = DType::Q8_0;
  o.seed = 11;
  EXPECT_TRUE(synth_model(o, path).is_ok());
  return path;
}

std::unique_ptr<Engine> make_engine(const std::string& path, int32_t n_seq_max, int64_t n_ctx, int64_t budget,
                                    int32_t max_running = 0, bool prefix_cache = true) {
  EngineOptions o;
  o.prefix_cache = prefix_cache;
  o.max_running = max_running;
  o.model_path = path;
  o.n_threads = 2;
  o.n_ctx = n_ctx;
  o.n_seq_max = n_seq_max;
  o.step_token_budget = budget;
  auto e = Engine::create(o);
  EXPECT_TRUE(e) << e.status().to_string();
  return e ? std::move(e).value() : nullptr;
}

std::vector<int32_t> prompt(int salt, int n, int64_t n_vocab) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>((i * 37 + salt * 101 + 5) % n_vocab));
  return p;
}

// Greedy tokens of each prompt, all submitted at once.
std::vector<std::vector<int32_t>> generate_all(Engine& e, const std::vector<std::vector<int32_t>>& prompts, int max_tokens) {
  std::vector<std::vector<int32_t>> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r;
    r.prompt = prompts[i];
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    r.on_event = [&out, i](const TokenEvent& ev) {
      if (ev.token >= 0) out[i].push_back(ev.token);
      if (ev.finished) {
        EXPECT_NE(ev.reason, FinishReason::kError) << "request " << i << ": " << ev.status.to_string();
      }
    };
    EXPECT_TRUE(e.submit(std::move(r)));
  }
  EXPECT_TRUE(e.run_until_idle().is_ok());
  return out;
}

TEST(Engine, ConcurrentRequestsMatchEachAlone) {
  for (const char* arch : {"llama", "qwen2"}) {
    const std::string path = synth_path(arch);
    auto alone = make_engine(path, 1, 128, 512);
    auto together = make_engine(path, 8, 128, 24);  // small budget: prefill chunks mix with decodes
    ASSERT_TRUE(alone && together);
    const int64_t n_vocab = alone->model().config().n_vocab;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 8; ++i) prompts.push_back(prompt(i, 5 + 7 * i, n_vocab));
    std::vector<std::vector<int32_t>> expected;
    for (const auto& p : prompts) expected.push_back(generate_all(*alone, {p}, 12)[0]);
    const auto got = generate_all(*together, prompts, 12);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i], expected[i]) << arch << " request " << i;
    EXPECT_EQ(together->kv_cache().n_available_blocks(), together->kv_cache().pool().n_total());  // cached blocks are evictable
  }
}

// n choices of one prompt (submitted together): the prompt is prefilled once, the other
// copies take its whole blocks from the prefix cache, and every output is what the request
// gives alone.
TEST(Engine, IdenticalPromptsArePrefilledOnce) {
  const std::string path = synth_path("qwen2");
  auto alone = make_engine(path, 1, 128, 512);
  auto shared = make_engine(path, 4, 128, 512);
  ASSERT_TRUE(alone && shared);
  const std::vector<int32_t> p = prompt(3, 40, alone->model().config().n_vocab);
  const std::vector<int32_t> expected = generate_all(*alone, {p}, 8)[0];
  const auto got = generate_all(*shared, {p, p, p, p}, 8);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], expected) << "copy " << i;
  // Block size 16: the copies reuse the two whole blocks before the last prompt token.
  const KvCache::PrefixStats stats = shared->kv_cache().prefix_stats();
  EXPECT_EQ(stats.query_tokens, 4 * 40);
  EXPECT_EQ(stats.hit_tokens, 3 * 32);
  std::printf("[ n=4 ] prompt of %zu tokens: %lld prefill tokens computed (%lld without sharing)\n", p.size(),
              static_cast<long long>(stats.query_tokens - stats.hit_tokens), static_cast<long long>(stats.query_tokens));
  // Without the prefix cache there is nothing to share: every copy is prefilled.
  auto uncached = make_engine(path, 4, 128, 512, 0, /*prefix_cache=*/false);
  ASSERT_TRUE(uncached);
  const auto plain = generate_all(*uncached, {p, p, p, p}, 8);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(plain[i], expected) << "copy " << i;
}

TEST(Engine, PreemptionRecomputesAndKeepsOutputsIdentical) {
  const std::string path = synth_path("llama");
  auto alone = make_engine(path, 1, 64, 512);
  // Room for one full context only (4 blocks of 16): four 20-token requests cannot all run.
  auto tight = make_engine(path, 1, 64, 512, /*max_running=*/4);
  ASSERT_TRUE(alone && tight);
  const int64_t n_vocab = alone->model().config().n_vocab;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(prompt(i + 20, 20, n_vocab));
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(generate_all(*alone, {p}, 20)[0]);
  const auto got = generate_all(*tight, prompts, 20);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "request " << i;
}

TEST(Engine, CancelEndsTheRequestAndFreesItsBlocks) {
  const std::string path = synth_path("llama");
  auto e = make_engine(path, 2, 128, 512);
  ASSERT_TRUE(e);
  GenerationRequest r;
  r.prompt = prompt(1, 30, e->model().config().n_vocab);
  r.max_tokens = 1000;
  r.ignore_eos = true;
  FinishReason reason = FinishReason::kNone;
  int n_tokens = 0;
  r.on_event = [&](const TokenEvent& ev) {
    if (ev.token >= 0) ++n_tokens;
    if (ev.finished) reason = ev.reason;
  };
  auto id = e->submit(std::move(r));
  ASSERT_TRUE(id);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(e->step().is_ok());
  EXPECT_GT(e->kv_cache().n_active_blocks(), 0);
  e->cancel(*id);
  ASSERT_TRUE(e->run_until_idle().is_ok());
  EXPECT_EQ(reason, FinishReason::kCancelled);
  EXPECT_EQ(n_tokens, 5);  // step 1 prefills and samples the first token, steps 2-5 one each
  EXPECT_EQ(e->kv_cache().n_active_blocks(), 0);  // only prefix-cache entries may remain
}

// logit_bias: +100 makes greedy pick the token every time, -100 bans the greedy choice; both
// also when the request is greedy, whose rows would otherwise come from the device's top-k.
TEST(Engine, LogitBiasLiftsAndBans) {
  const std::string path = synth_path("qwen2");
  auto e = make_engine(path, 2, 64, 512);
  ASSERT_TRUE(e);
  const int64_t n_vocab = e->model().config().n_vocab;
  const std::vector<int32_t> p = prompt(3, 8, n_vocab);
  const std::vector<int32_t> plain = generate_all(*e, {p}, 3)[0];
  ASSERT_EQ(plain.size(), 3u);
  auto biased = [&](std::vector<std::pair<int32_t, float>> bias) {
    std::vector<int32_t> out;
    GenerationRequest r;
    r.prompt = p;
    r.max_tokens = 3;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    r.logit_bias = std::move(bias);
    r.on_event = [&out](const TokenEvent& ev) {
      if (ev.token >= 0) out.push_back(ev.token);
    };
    EXPECT_TRUE(e->submit(std::move(r)));
    EXPECT_TRUE(e->run_until_idle().is_ok());
    return out;
  };
  const int32_t lifted = (plain[0] + 7) % static_cast<int32_t>(n_vocab);
  EXPECT_EQ(biased({{lifted, 100.0f}}), std::vector<int32_t>(3, lifted));
  const std::vector<int32_t> banned = biased({{plain[0], -100.0f}});
  ASSERT_EQ(banned.size(), 3u);
  EXPECT_NE(banned[0], plain[0]);
  GenerationRequest bad;
  bad.prompt = p;
  bad.logit_bias = {{static_cast<int32_t>(n_vocab), 1.0f}};
  EXPECT_FALSE(e->submit(std::move(bad)));
}

TEST(Engine, LengthAndContextLimits) {
  const std::string path = synth_path("qwen2");
  auto e = make_engine(path, 1, 32, 512);
  ASSERT_TRUE(e);
  const int64_t n_vocab = e->model().config().n_vocab;
  // A prompt as long as the context is refused up front.
  GenerationRequest too_long;
  too_long.prompt = prompt(1, 32, n_vocab);
  auto bad = e->submit(std::move(too_long));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().code(), ErrorCode::kOutOfRange);
  // Generation stops at the context end with finish reason "length".
  GenerationRequest r;
  r.prompt = prompt(2, 20, n_vocab);
  r.max_tokens = 100;
  r.ignore_eos = true;
  r.sampling.temperature = 0.0f;
  FinishReason reason = FinishReason::kNone;
  int n = 0;
  r.on_event = [&](const TokenEvent& ev) {
    if (ev.token >= 0) ++n;
    if (ev.finished) reason = ev.reason;
  };
  ASSERT_TRUE(e->submit(std::move(r)));
  ASSERT_TRUE(e->run_until_idle().is_ok());
  EXPECT_EQ(reason, FinishReason::kLength);
  EXPECT_EQ(n, 12);  // 20 + 12 = 32 tokens fill the context
  // Bad requests are errors, not crashes.
  GenerationRequest empty;
  EXPECT_EQ(e->submit(std::move(empty)).status().code(), ErrorCode::kInvalidArgument);
  GenerationRequest oov;
  oov.prompt = {static_cast<int32_t>(n_vocab)};
  EXPECT_EQ(e->submit(std::move(oov)).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace fathom
