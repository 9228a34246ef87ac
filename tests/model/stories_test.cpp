// End to end on the only real trained weights we have: stories260K (llama architecture, GGUF v1,
// F32, SentencePiece vocab). Expected values come from llama.cpp (../shared/peer/logits.sh on the
// same weights rewritten as GGUF v3 by scripts/gguf-v1-to-v3.py, since llama.cpp dropped v1):
//   prompt "Once upon a time" -> [1, 403, 407, 261, 378]
//   top next-token logits: 432 17.799397, 383 14.281260, 322 9.709650, 353 9.587288, 323 9.134243
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "model/reference.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";

// llama.cpp's first 32 greedy tokens after the prompt.
const std::vector<int32_t> kPeerGreedy = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
                                          410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394};

bool have_stories() { return std::ifstream(kStories).good(); }

std::unique_ptr<Engine> open_stories() {
  EngineOptions o;
  o.model_path = kStories;
  o.n_threads = 2;
  auto e = Engine::create(o);
  EXPECT_TRUE(e) << e.status().to_string();
  return e ? std::move(e).value() : nullptr;
}

TEST(Stories, TokenizesPromptLikeLlamaCpp) {
  if (!have_stories()) GTEST_SKIP() << "missing " << kStories;
  auto e = open_stories();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->tokenizer().encode("Once upon a time", true, true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
}

TEST(Stories, GreedyContinuationMatchesPeerAndIsEnglish) {
  if (!have_stories()) GTEST_SKIP() << "missing " << kStories;
  auto e = open_stories();
  ASSERT_TRUE(e);
  GenerationRequest req;
  req.prompt = {1, 403, 407, 261, 378};
  req.max_tokens = 32;
  req.sampling.temperature = 0.0f;
  req.ignore_eos = true;
  std::vector<int32_t> tokens;
  std::string text;
  req.on_event = [&](const TokenEvent& ev) {
    if (ev.token >= 0) tokens.push_back(ev.token);
    text += ev.text;
  };
  ASSERT_TRUE(e->submit(std::move(req)));
  ASSERT_TRUE(e->run_until_idle().is_ok());
  EXPECT_EQ(tokens, kPeerGreedy);
  // Fluent story English: words, spaces, a sentence end.
  EXPECT_NE(text.find(" "), std::string::npos) << text;
  EXPECT_NE(text.find('.'), std::string::npos) << text;
  std::printf("stories260K greedy: Once upon a time%s\n", text.c_str());
}

TEST(Stories, LogitsMatchReferenceAndPeer) {
  if (!have_stories()) GTEST_SKIP() << "missing " << kStories;
  auto e = open_stories();
  ASSERT_TRUE(e);
  Model& m = e->model();
  std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
  tokens.insert(tokens.end(), kPeerGreedy.begin(), kPeerGreedy.end());
  auto ref = reference_forward(m.file(), m.config(), tokens);
  ASSERT_TRUE(ref) << ref.status().to_string();
  KvCache kv(m.kv_shape(64), 4);
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
  std::vector<float> logits;
  ASSERT_TRUE(m.forward(b, kv, logits).is_ok());
  ASSERT_EQ(logits.size(), ref->size());
  double max_diff = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) max_diff = std::max(max_diff, std::fabs(static_cast<double>(logits[i]) - (*ref)[i]));
  EXPECT_LT(max_diff, 2e-3);  // logits are O(10); f32 accumulation order differs
  // Position 4 (after the prompt) against llama.cpp.
  const int64_t n_vocab = m.config().n_vocab;
  const float* row = logits.data() + 4 * n_vocab;
  EXPECT_NEAR(row[432], 17.799397, 1e-3);
  EXPECT_NEAR(row[383], 14.281260, 1e-3);
  EXPECT_NEAR(row[322], 9.709650, 1e-3);
  EXPECT_NEAR(row[353], 9.587288, 1e-3);
  EXPECT_NEAR(row[323], 9.134243, 1e-3);
}

}  // namespace
}  // namespace fathom
