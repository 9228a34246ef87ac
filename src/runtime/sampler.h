// Token sampling: repetition/presence/frequency penalties, top-k, top-p, min-p, temperature,
// then a draw from a seeded generator (greedy argmax when temperature <= 0). The same seed and
// logits give the same tokens on every run and platform (no std:: distributions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

namespace fathom {

class Grammar;  // runtime/grammar/grammar.h

struct SamplingParams {
  float temperature = 0.8f;       // <= 0: greedy
  int32_t top_k = 40;             // <= 0: off
  float top_p = 0.95f;            // >= 1: off
  float min_p = 0.05f;            // <= 0: off
  float repeat_penalty = 1.0f;    // 1: off; divides positive / multiplies negative logits of recent tokens
  int32_t repeat_last_n = 64;     // window of recent tokens the repeat penalty looks at
  float presence_penalty = 0.0f;  // subtracted once from any token already generated
  float frequency_penalty = 0.0f; // subtracted per occurrence of a generated token
  uint64_t seed = 0;              // generator seed
  // When set, only tokens that keep the output a prefix of the grammar's language are sampled
  // (the engine masks the row first), and the request ends with "stop" once it is complete.
  std::shared_ptr<const Grammar> grammar;
};

struct TokenLogprob {
  int32_t token;   // token id
  float logprob;   // log softmax of the (penalized, unscaled) logits
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token from logits [n_vocab]; does not record it (see accept).
  int32_t sample(const float* logits, int64_t n_vocab);
  // How many of a row's largest logits sample() needs to pick exactly the token it would pick
  // from the whole row: 1 when greedy, top_k when that is set (up to max_k); 0 when it needs
  // the whole row (penalties move logits, no top_k bounds the candidates, or a grammar masks
  // the row: the largest logits may all be disallowed).
  static int64_t candidates_needed(const SamplingParams& params, int64_t max_k);
  // sample() from a row's k largest logits only (ids and values, largest first, ties by lower
  // id: Backend::top_candidates), with k >= candidates_needed(params()) > 0: the same token.
  int32_t sample_top(const int32_t* ids, const float* values, int64_t k);
  // Records a token as generated (or as part of the prompt, for the repeat window).
  void accept(int32_t token, bool is_prompt = false);
  // Top-n log probabilities of the distribution the last sample() drew from, plus the chosen token's.
  std::vector<TokenLogprob> top_logprobs(const float* logits, int64_t n_vocab, int n) const;
  // Log softmax of one token's logit.
  static float logprob_of(const float* logits, int64_t n_vocab, int32_t token);
  const SamplingParams& params() const { return params_; }

 private:
  uint64_t next_random();  // splitmix64 / xorshift stream from the seed
  double uniform01();
  // top-p, min-p, temperature and the draw, over candidates_[0, n) sorted largest first.
  int32_t draw(size_t n);

  SamplingParams params_;
  uint64_t rng_state_;                          // generator state
  std::deque<int32_t> recent_;                  // last repeat_last_n tokens (prompt and generated)
  std::unordered_map<int32_t, int32_t> counts_; // generated token -> occurrences
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch: (logit, id)
};

}  // namespace fathom
