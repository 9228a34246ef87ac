#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "runtime/sampler.h"
#include "runtime/stop_strings.h"

namespace fathom {
namespace {

std::vector<float> logits_of(std::initializer_list<float> v) { return std::vector<float>(v); }

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p);
  auto l = logits_of({1.0f, 3.0f, 2.0f, 3.0f});
  EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[static_cast<size_t>(i)] = std::sin(static_cast<float>(i)) * 2.0f;
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(s.sample(l.data(), 100));
    return out;
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
}

// Sampling from a row's k largest logits (what a device sends back instead of the row) picks
// the very tokens sampling from the whole row picks, draw for draw, whenever candidates_needed
// says k suffice; with penalties or without top_k it says the whole row is needed.
TEST(Sampler, TopCandidatesGiveTheSameTokensAsTheWholeRow) {
  const int64_t n_vocab = 3000;
  CpuBackend cpu(1);
  std::vector<float> rows(static_cast<size_t>(20 * n_vocab));
  for (size_t i = 0; i < rows.size(); ++i)
    rows[i] = std::round(std::sin(static_cast<float>(i) * 0.37f) * 40.0f) / 8.0f;  // many ties
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p, min_p;
  };
  for (const Case& c : {Case{0.0f, 40, 0.95f, 0.05f}, Case{0.8f, 40, 0.95f, 0.05f}, Case{1.3f, 64, 1.0f, 0.0f},
                        Case{0.7f, 5, 0.5f, 0.2f}, Case{2.0f, 1, 1.0f, 0.0f}}) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.seed = 11;
    const int64_t k = Sampler::candidates_needed(p, 64);
    ASSERT_GT(k, 0);
    Sampler whole(p), top(p);
    std::vector<int32_t> ids(static_cast<size_t>(20 * 64));
    std::vector<float> values(ids.size());
    cpu.top_candidates(rows.data(), 20, n_vocab, 64, ids.data(), values.data());
    for (int rep = 0; rep < 5; ++rep)
      for (int64_t r = 0; r < 20; ++r)
        ASSERT_EQ(whole.sample(rows.data() + r * n_vocab, n_vocab), top.sample_top(ids.data() + r * 64, values.data() + r * 64, 64))
            << "temperature " << c.temperature << " top_k " << c.top_k << " row " << r;
  }
  SamplingParams p;
  p.repeat_penalty = 1.1f;
  EXPECT_EQ(Sampler::candidates_needed(p, 64), 0);
  p = SamplingParams{};
  p.top_k = 0;
  EXPECT_EQ(Sampler::candidates_needed(p, 64), 0);
  p.top_k = 100;
  EXPECT_EQ(Sampler::candidates_needed(p, 64), 0);
  p.temperature = 0.0f;
  EXPECT_EQ(Sampler::candidates_needed(p, 64), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  Sampler s(p);
  auto l = logits_of({0.5f, 0.1f, 0.9f, 0.2f});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l.data(), 4), 2);
}

TEST(Sampler, MinPAndTopPCutTheTail) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.5f;  // keeps tokens with prob >= half of the best
  Sampler s(p);
  auto l = logits_of({std::log(0.5f), std::log(0.3f), std::log(0.2f)});
  for (int i = 0; i < 200; ++i) EXPECT_NE(s.sample(l.data(), 3), 2);
  SamplingParams q;
  q.temperature = 1.0f;
  q.top_k = 0;
  q.min_p = 0.0f;
  q.top_p = 0.5f;  // the first token alone reaches 0.5
  Sampler t(q);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(t.sample(l.data(), 3), 0);
}

TEST(Sampler, RepeatPenaltyDemotesRecentTokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  auto l = logits_of({2.0f, 1.5f});
  s.accept(0);
  EXPECT_EQ(s.sample(l.data(), 2), 1);  // 2.0 / 2 = 1.0 < 1.5
}

TEST(Sampler, FrequencyAndPresencePenalties) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.frequency_penalty = 0.4f;
  p.presence_penalty = 0.1f;
  Sampler s(p);
  auto l = logits_of({2.0f, 1.5f});
  s.accept(0);
  EXPECT_EQ(s.sample(l.data(), 2), 0);  // 2.0 - 0.5 = 1.5: tie, lower id
  s.accept(0);
  EXPECT_EQ(s.sample(l.data(), 2), 1);  // 2.0 - 0.9
}

TEST(Sampler, TopLogprobsAreNormalized) {
  SamplingParams p;
  Sampler s(p);
  auto l = logits_of({0.0f, 0.0f, std::log(2.0f)});
  auto top = s.top_logprobs(l.data(), 3, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].token, 2);
  EXPECT_NEAR(top[0].logprob, std::log(0.5), 1e-6);
  EXPECT_NEAR(top[1].logprob, std::log(0.25), 1e-6);
}

TEST(StopStrings, WithholdsPossiblePrefixAndCutsAtMatch) {
  StopStringMatcher m({"</s>", "STOP"});
  auto r = m.push("Hello </");
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_FALSE(r.matched);
  r = m.push("x ok ST");
  EXPECT_EQ(r.text, "</x ok ");
  r = m.push("OP and more");
  EXPECT_TRUE(r.matched);
  EXPECT_EQ(r.text, "");
  StopStringMatcher none(std::vector<std::string>{});
  EXPECT_EQ(none.push("abc").text, "abc");
  StopStringMatcher tail({"END"});
  EXPECT_EQ(tail.push("abc E").text, "abc ");
  EXPECT_EQ(tail.flush(), "E");
}

}  // namespace
}  // namespace fathom
