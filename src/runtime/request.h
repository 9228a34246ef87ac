// What a client submits to the Engine and what it gets back, token by token.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "runtime/sampler.h"

namespace fathom {

using RequestId = int64_t;

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "error"

struct RequestStats {
  int64_t n_prompt = 0;        // prompt tokens
  int64_t n_generated = 0;     // sampled tokens (the end-of-generation token included)
  double t_submit = 0.0;       // seconds (steady clock) at submit
  double t_first_token = 0.0;  // seconds at the first sampled token (end of prefill)
  double t_end = 0.0;          // seconds at finish
  double grammar_seconds = 0.0;// time spent masking logits and advancing the grammar (constrained requests)
  int32_t n_context_shifts = 0;// times the context was shifted to continue (EngineOptions::context_shift_keep)
  double prompt_seconds() const { return t_first_token - t_submit; }
  double generation_seconds() const { return t_end - t_first_token; }
};

struct TokenEvent {
  RequestId id = 0;
  int32_t token = -1;                     // sampled token, -1 on a final event without one
  std::string text;                       // newly completed UTF-8 text (stop strings withheld)
  std::vector<TokenLogprob> top_logprobs; // when requested: the chosen token first, then the top n
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
  Status status;                          // error detail when reason == kError
  RequestStats stats;                     // filled on the final event
};

using EventCallback = std::function<void(const TokenEvent&)>;

struct GenerationRequest {
  std::vector<int32_t> prompt;     // token ids (BOS included when wanted)
  int32_t max_tokens = 256;        // generated tokens at most
  SamplingParams sampling;
  std::vector<std::string> stop;   // stop strings: generation ends before the first match
  bool ignore_eos = false;         // keep going past end-of-generation tokens
  int32_t logprobs = 0;            // top log probabilities to report per token (0: none)
  // Added to the logits of these token ids before sampling (OpenAI's logit_bias; -100 or
  // less bans the token). A request with a bias samples from the whole row.
  std::vector<std::pair<int32_t, float>> logit_bias;
  EventCallback on_event;          // called on the engine thread for each token and at the end
};

}  // namespace fathom
