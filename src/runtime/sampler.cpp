#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace fathom {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_state_(params.seed ^ 0x9e3779b97f4a7c15ull) {}

uint64_t Sampler::next_random() {
  // splitmix64: tiny, well distributed, identical everywhere.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Sampler::uniform01() { return static_cast<double>(next_random() >> 11) * (1.0 / 9007199254740992.0); }

void Sampler::accept(int32_t token, bool is_prompt) {
  recent_.push_back(token);
  while (static_cast<int32_t>(recent_.size()) > std::max(0, params_.repeat_last_n)) recent_.pop_front();
  if (!is_prompt) ++counts_[token];
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  candidates_.resize(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) candidates_[static_cast<size_t>(i)] = {logits[i], static_cast<int32_t>(i)};
  // Penalties on the raw logits.
  if (params_.repeat_penalty != 1.0f) {
    for (int32_t t : recent_) {
      if (t < 0 || t >= n_vocab) continue;
      float& l = candidates_[static_cast<size_t>(t)].first;
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [t, count] : counts_) {
      if (t < 0 || t >= n_vocab) continue;
      candidates_[static_cast<size_t>(t)].first -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
  auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (params_.temperature <= 0.0f) {
    return std::min_element(candidates_.begin(), candidates_.end(), by_logit)->second;
  }
  size_t n = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(), by_logit);
    n = static_cast<size_t>(params_.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  return draw(n);
}

int64_t Sampler::candidates_needed(const SamplingParams& p, int64_t max_k) {
  if (p.grammar) return 0;
  if (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) return 0;
  if (p.temperature <= 0.0f) return 1;
  return p.top_k > 0 && p.top_k <= max_k ? p.top_k : 0;
}

int32_t Sampler::sample_top(const int32_t* ids, const float* values, int64_t k) {
  if (params_.temperature <= 0.0f) return ids[0];
  const int64_t n = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, k) : k;
  candidates_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) candidates_[static_cast<size_t>(i)] = {values[i], ids[i]};
  return draw(static_cast<size_t>(n));
}

int32_t Sampler::draw(size_t n) {
  // Softmax over the survivors at temperature 1 for the p filters (as llama.cpp's chain does
  // top-p/min-p before temperature).
  std::vector<double> probs(n);
  const double max_logit = candidates_[0].first;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += probs[i] = std::exp(static_cast<double>(candidates_[i].first) - max_logit);
  for (double& p : probs) p /= sum;
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += probs[i];
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = std::max<size_t>(1, keep);
  }
  if (params_.min_p > 0.0f) {
    const double threshold = probs[0] * params_.min_p;
    size_t keep = 1;
    while (keep < n && probs[keep] >= threshold) ++keep;
    n = keep;
  }
  // Temperature, then draw.
  std::vector<double> weights(n);
  double total = 0.0;
  for (size_t i = 0; i < n; ++i)
    total += weights[i] = std::exp((static_cast<double>(candidates_[i].first) - max_logit) / params_.temperature);
  double r = uniform01() * total;
  size_t last_possible = 0;  // rounding may leave r > 0: never fall onto a zero-weight (masked) token
  for (size_t i = 0; i < n; ++i) {
    if (weights[i] <= 0.0) continue;
    last_possible = i;
    r -= weights[i];
    if (r <= 0.0) return candidates_[i].second;
  }
  return candidates_[last_possible].second;
}

float Sampler::logprob_of(const float* logits, int64_t n_vocab, int32_t token) {
  double max_logit = -INFINITY;
  for (int64_t i = 0; i < n_vocab; ++i) max_logit = std::max<double>(max_logit, logits[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  return static_cast<float>(logits[token] - (max_logit + std::log(sum)));
}

std::vector<TokenLogprob> Sampler::top_logprobs(const float* logits, int64_t n_vocab, int n) const {
  double max_logit = -INFINITY;
  for (int64_t i = 0; i < n_vocab; ++i) max_logit = std::max<double>(max_logit, logits[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double log_z = max_logit + std::log(sum);
  std::vector<TokenLogprob> all;
  all.reserve(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) all.push_back({static_cast<int32_t>(i), static_cast<float>(logits[i] - log_z)});
  const size_t k = std::min<size_t>(static_cast<size_t>(std::max(0, n)), all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [](const TokenLogprob& a, const TokenLogprob& b) { return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token); });
  all.resize(k);
  return all;
}

}  // namespace fathom
