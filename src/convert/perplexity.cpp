#include "convert/perplexity.h"

#include <algorithm>
#include <cmath>

#include "kv/kv_cache.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace fathom::convert {

double NllStats::perplexity() const { return count > 0 ? std::exp(sum / static_cast<double>(count)) : 0.0; }

double NllStats::perplexity_stderr() const {
  if (count < 2) return 0.0;
  const double mean = sum / static_cast<double>(count);
  const double var = sum2 / static_cast<double>(count) - mean * mean;
  return var > 0 ? perplexity() * std::sqrt(var / static_cast<double>(count - 1)) : 0.0;
}

namespace {

// log sum_i exp(logits[i]), shifted by the max so no term overflows.
double log_sum_exp(const float* logits, int64_t n) {
  const double max_logit = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  return max_logit + std::log(sum);
}

// out[i] = log softmax(logits)[i].
void log_softmax(const float* logits, int64_t n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  const double log_z = log_sum_exp(logits, n);
  for (int64_t i = 0; i < n; ++i) (*out)[static_cast<size_t>(i)] = static_cast<double>(logits[i]) - log_z;
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const size_t i = std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5));
  return sorted[i];
}

// One chunk through a model from an empty cache; logits of the scored rows.
Status run_chunk(Model& model, const ChunkedText& chunks, int64_t c, KvCache& kv, std::vector<float>& logits) {
  kv.free_sequence(0);
  return model.forward(chunks.batch(c), kv, logits);
}

Expected<KvCache> make_cache(const Model& model, int64_t n_ctx, const KvCacheTypes& types) {
  const KvCacheShape shape = with_types(model.kv_shape(n_ctx), types);
  FATHOM_RETURN_IF_ERROR(check_kv_cache_types(shape));
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_blocks, kv_pool_blocks(n_ctx, shape.block_size, 1));
  FATHOM_RETURN_IF_ERROR(check_pool_addressable(n_blocks, shape.block_size));
  return KvCache(shape, static_cast<int32_t>(n_blocks));
}

}  // namespace

double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
  return log_sum_exp(logits, n_vocab) - static_cast<double>(logits[target]);
}

Batch ChunkedText::batch(int64_t c) const {
  Batch b;
  for (int64_t j = 0; j < n_ctx; ++j) {
    int32_t tok = tokens[static_cast<size_t>(c * n_ctx + j)];
    if (j == 0 && bos >= 0) tok = bos;
    b.add(tok, static_cast<int32_t>(j), 0, j >= first_scored() && j < n_ctx - 1);
  }
  return b;
}

void ChunkedText::score(int64_t c, const float* logits, int64_t n_vocab, NllStats* stats) const {
  for (int64_t i = 0; i < scored_per_chunk(); ++i) stats->add(token_nll(logits + i * n_vocab, n_vocab, target(c, i)));
}

Expected<ChunkedText> chunk_text(const Tokenizer& tokenizer, const std::string& text, int64_t n_ctx, int64_t max_chunks,
                                 int64_t n_vocab) {
  if (n_ctx < 4) return error(ErrorCode::kInvalidArgument, strprintf("--ctx %lld is too small (at least 4)", static_cast<long long>(n_ctx)));
  ChunkedText ct;
  ct.n_ctx = n_ctx;
  const bool add_bos = tokenizer.add_bos() && tokenizer.bos_id() >= 0;
  ct.tokens = tokenizer.encode(text, add_bos, /*parse_special=*/false);
  ct.bos = add_bos ? tokenizer.bos_id() : -1;
  ct.n_chunks = static_cast<int64_t>(ct.tokens.size()) / n_ctx;
  if (max_chunks >= 0) ct.n_chunks = std::min(ct.n_chunks, max_chunks);
  if (ct.n_chunks < 1)
    return error(ErrorCode::kInvalidArgument,
                 strprintf("the text has %zu tokens, fewer than one chunk of --ctx %lld; use a longer text or a smaller --ctx",
                           ct.tokens.size(), static_cast<long long>(n_ctx)));
  for (int32_t t : ct.tokens)
    if (t < 0 || t >= n_vocab)
      return error(ErrorCode::kInvalidArgument, strprintf("token id %d is outside the model's vocabulary of %lld", t,
                                                          static_cast<long long>(n_vocab)));
  return ct;
}

Expected<PerplexityResult> perplexity(Model& model, const Tokenizer& tokenizer, const std::string& text, const EvalOptions& options) {
  const int64_t n_vocab = model.config().n_vocab;
  FATHOM_ASSIGN_OR_RETURN(ChunkedText chunks, chunk_text(tokenizer, text, options.n_ctx, options.n_chunks, n_vocab));
  FATHOM_ASSIGN_OR_RETURN(KvCache kv, make_cache(model, options.n_ctx, options.kv_types));
  std::vector<float> logits;
  NllStats nll;
  for (int64_t c = 0; c < chunks.n_chunks; ++c) {
    FATHOM_RETURN_IF_ERROR(run_chunk(model, chunks, c, kv, logits));
    chunks.score(c, logits.data(), n_vocab, &nll);
    if (options.on_chunk) options.on_chunk(c + 1, chunks.n_chunks, nll.perplexity());
  }
  return PerplexityResult{nll.perplexity(), nll.perplexity_stderr(), chunks.n_chunks, nll.count};
}

Expected<KlResult> kl_divergence(Model& base, Model& quant, const Tokenizer& tokenizer, const std::string& text,
                                 const EvalOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::vector<KlResult> r, kl_divergence(base, std::vector<Model*>{&quant}, tokenizer, text, options));
  return r.front();
}

namespace {

// Running comparison of one model against the base.
struct KlAccumulator {
  std::vector<double> kls;
  NllStats nll;
  int64_t agree = 0;
  double sum = 0.0, sum2 = 0.0;

  KlResult finish(const NllStats& nll_base, int64_t n_chunks) {
    KlResult r;
    const double n = static_cast<double>(kls.size());
    r.n_scored = static_cast<int64_t>(kls.size());
    r.kl_mean = sum / n;
    const double var = sum2 / n - r.kl_mean * r.kl_mean;
    r.kl_stderr = n > 1 && var > 0 ? std::sqrt(var / (n - 1)) : 0.0;
    r.top1_agree = static_cast<double>(agree) / n;
    r.top1_stderr = n > 1 ? std::sqrt(r.top1_agree * (1.0 - r.top1_agree) / (n - 1)) : 0.0;
    r.base = {nll_base.perplexity(), nll_base.perplexity_stderr(), n_chunks, nll_base.count};
    r.quant = {nll.perplexity(), nll.perplexity_stderr(), n_chunks, nll.count};
    r.ppl_ratio = r.base.ppl > 0 ? r.quant.ppl / r.base.ppl : 0.0;
    std::sort(kls.begin(), kls.end());
    r.kl_median = percentile(kls, 0.5);
    r.kl_p90 = percentile(kls, 0.9);
    r.kl_p95 = percentile(kls, 0.95);
    r.kl_p99 = percentile(kls, 0.99);
    r.kl_max = kls.back();
    return r;
  }
};

}  // namespace

Expected<std::vector<KlResult>> kl_divergence(Model& base, const std::vector<Model*>& models, const Tokenizer& tokenizer,
                                              const std::string& text, const EvalOptions& options) {
  const int64_t n_vocab = base.config().n_vocab;
  if (models.empty()) return error(ErrorCode::kInvalidArgument, "no model to compare with the base");
  for (Model* m : models)
    if (m->config().n_vocab != n_vocab)
      return error(ErrorCode::kInvalidArgument, strprintf("the models have different vocabularies (%lld vs %lld tokens)",
                                                          static_cast<long long>(n_vocab),
                                                          static_cast<long long>(m->config().n_vocab)));
  FATHOM_ASSIGN_OR_RETURN(ChunkedText chunks, chunk_text(tokenizer, text, options.n_ctx, options.n_chunks, n_vocab));
  FATHOM_ASSIGN_OR_RETURN(KvCache kv_base, make_cache(base, options.n_ctx, options.base_kv_types));
  std::vector<KvCache> kvs;
  for (Model* m : models) {
    FATHOM_ASSIGN_OR_RETURN(KvCache kv, make_cache(*m, options.n_ctx, options.kv_types));
    kvs.push_back(std::move(kv));
  }
  std::vector<float> lb, lq;
  std::vector<double> log_pq;
  std::vector<std::vector<double>> base_rows;  // log-softmax of the base per scored row
  NllStats nll_base;
  std::vector<KlAccumulator> acc(models.size());
  for (int64_t c = 0; c < chunks.n_chunks; ++c) {
    FATHOM_RETURN_IF_ERROR(run_chunk(base, chunks, c, kv_base, lb));
    const int64_t rows = chunks.scored_per_chunk();
    base_rows.resize(static_cast<size_t>(rows));
    std::vector<int64_t> base_top(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) {
      const float* rb = lb.data() + i * n_vocab;
      log_softmax(rb, n_vocab, &base_rows[static_cast<size_t>(i)]);
      base_top[static_cast<size_t>(i)] = std::max_element(rb, rb + n_vocab) - rb;
      nll_base.add(-base_rows[static_cast<size_t>(i)][static_cast<size_t>(chunks.target(c, i))]);
    }
    for (size_t k = 0; k < models.size(); ++k) {
      FATHOM_RETURN_IF_ERROR(run_chunk(*models[k], chunks, c, kvs[k], lq));
      KlAccumulator& a = acc[k];
      for (int64_t i = 0; i < rows; ++i) {
        const float* rq = lq.data() + i * n_vocab;
        const std::vector<double>& lpb = base_rows[static_cast<size_t>(i)];
        log_softmax(rq, n_vocab, &log_pq);
        double kl = 0.0;
        for (int64_t v = 0; v < n_vocab; ++v)
          kl += std::exp(lpb[static_cast<size_t>(v)]) * (lpb[static_cast<size_t>(v)] - log_pq[static_cast<size_t>(v)]);
        kl = std::max(0.0, kl);  // rounding can leave a tiny negative for identical distributions
        a.kls.push_back(kl);
        a.sum += kl;
        a.sum2 += kl * kl;
        a.agree += base_top[static_cast<size_t>(i)] == std::max_element(rq, rq + n_vocab) - rq;
        a.nll.add(-log_pq[static_cast<size_t>(chunks.target(c, i))]);
      }
    }
    if (options.on_chunk) options.on_chunk(c + 1, chunks.n_chunks, acc[0].sum / static_cast<double>(acc[0].kls.size()));
  }
  std::vector<KlResult> out;
  for (KlAccumulator& a : acc) out.push_back(a.finish(nll_base, chunks.n_chunks));
  return out;
}

}  // namespace fathom::convert
