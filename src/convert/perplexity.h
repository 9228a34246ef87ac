// Perplexity and KL divergence on a text, as llama.cpp's llama-perplexity defines them: the text
// is tokenized once (with BOS when the model adds one), cut into chunks of n_ctx tokens, each
// chunk is evaluated from an empty cache with its first token replaced by BOS, and only the second
// half of each chunk is scored (positions n_ctx/2 .. n_ctx-2 predicting the next token), so every
// scored token has at least n_ctx/2 tokens of context.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kv/kv_cache.h"
#include "model/batch.h"

namespace fathom {
class Model;
class Tokenizer;
}  // namespace fathom

namespace fathom::convert {

// Running sums of negative log-likelihoods (nats).
struct NllStats {
  double sum = 0.0;    // sum of nll
  double sum2 = 0.0;   // sum of nll^2
  int64_t count = 0;   // tokens scored

  void add(double nll) {
    sum += nll;
    sum2 += nll * nll;
    ++count;
  }
  double perplexity() const;  // exp(mean nll)
  // llama.cpp's uncertainty: ppl * stddev(nll) / sqrt(count - 1).
  double perplexity_stderr() const;
};

// -log softmax(logits)[target], computed stably in double.
double token_nll(const float* logits, int64_t n_vocab, int32_t target);

// The tokenized text and its chunking.
struct ChunkedText {
  std::vector<int32_t> tokens;  // [n_tokens] the whole text
  int64_t n_ctx = 0;            // tokens per chunk
  int64_t n_chunks = 0;         // chunks evaluated
  int32_t bos = -1;             // first token of every chunk, or -1 to keep the text's token

  int64_t first_scored() const { return n_ctx / 2; }
  int64_t scored_per_chunk() const { return n_ctx - 1 - first_scored(); }
  // All n_ctx tokens of chunk c as sequence 0 from position 0, logits flagged on scored positions.
  Batch batch(int64_t c) const;
  // The token that scored row i (0-based, batch order) of chunk c must predict.
  int32_t target(int64_t c, int64_t i) const { return tokens[static_cast<size_t>(c * n_ctx + first_scored() + i + 1)]; }
  // Adds the chunk's scored rows (logits: [scored_per_chunk(), n_vocab]) to stats.
  void score(int64_t c, const float* logits, int64_t n_vocab, NllStats* stats) const;
};

// Tokenizes and chunks; errors when the text is shorter than one chunk or n_ctx < 4, or a token
// id falls outside the model's vocabulary.
Expected<ChunkedText> chunk_text(const Tokenizer& tokenizer, const std::string& text, int64_t n_ctx, int64_t max_chunks,
                                 int64_t n_vocab);

struct EvalOptions {
  int64_t n_ctx = 512;    // tokens per chunk
  int64_t n_chunks = -1;  // -1: every whole chunk in the text
  KvCacheTypes kv_types{};       // KV cache of the evaluated model (kl_divergence: the compared ones)
  KvCacheTypes base_kv_types{};  // KV cache of kl_divergence's base model
  // After each chunk: (chunk from 1, chunk count, running perplexity or, for KL, mean KL).
  std::function<void(int64_t, int64_t, double)> on_chunk;
};

struct PerplexityResult {
  double ppl = 0.0;         // exp(mean nll)
  double ppl_stderr = 0.0;  // see NllStats::perplexity_stderr
  int64_t n_chunks = 0;     // chunks evaluated
  int64_t n_scored = 0;     // tokens scored
};

Expected<PerplexityResult> perplexity(Model& model, const Tokenizer& tokenizer, const std::string& text, const EvalOptions& options);

struct KlResult {
  double kl_mean = 0.0;        // mean over scored tokens of KL(base || quant), nats
  double kl_stderr = 0.0;      // stddev / sqrt(n)
  double top1_agree = 0.0;     // fraction of tokens where both models' argmax agree
  double top1_stderr = 0.0;    // binomial standard error of top1_agree
  PerplexityResult base;       // perplexity of the base model on the same tokens
  PerplexityResult quant;      // perplexity of the compared model
  double ppl_ratio = 0.0;      // quant.ppl / base.ppl
  double kl_median = 0.0;      // 50th percentile of the per-token KL
  double kl_p90 = 0.0;         // 90th percentile
  double kl_p95 = 0.0;         // 95th percentile
  double kl_p99 = 0.0;         // 99th percentile
  double kl_max = 0.0;         // largest per-token KL
  int64_t n_scored = 0;        // tokens scored
};

// Runs both models on the same chunks (base's tokenizer) and compares their next-token
// distributions. The models must share a vocabulary size.
Expected<KlResult> kl_divergence(Model& base, Model& quant, const Tokenizer& tokenizer, const std::string& text,
                                 const EvalOptions& options);
// The same for several models against one base, which runs once per chunk: one result per
// model, in order. on_chunk reports the first model's running mean KL.
Expected<std::vector<KlResult>> kl_divergence(Model& base, const std::vector<Model*>& models, const Tokenizer& tokenizer,
                                              const std::string& text, const EvalOptions& options);

}  // namespace fathom::convert
