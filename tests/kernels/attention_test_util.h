// Shared by the attention tests and benchmarks: a paged KV cache of random rows with interleaved
// block tables, and the batch of each sequence's new tokens.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/attention.h"

namespace fathom::cpu {

inline std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

inline void fill_gaussian(float* x, int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

struct SeqSpec {
  int64_t n_ctx;  // positions cached after this batch
  int64_t n_new;  // of those, the last n_new are this batch's tokens
};

inline const KvCacheTypes kF32Cache{DType::F32, DType::F32};

// A cache holding random K/V (stored in `types`) for every sequence, plus a batch of each
// sequence's new tokens, interleaved across sequences in batch order. The same seed gives the
// same values before conversion, whatever the types.
struct PagedCache {
  KvCache kv;
  std::vector<int32_t> seq_ids;    // [n_tokens]
  std::vector<int32_t> positions;  // [n_tokens]
  AttentionBatch batch() const { return {seq_ids.data(), positions.data(), static_cast<int64_t>(seq_ids.size())}; }

  PagedCache(const std::vector<SeqSpec>& seqs, int64_t k_width, int64_t v_width, int32_t block_size, uint32_t seed,
             const KvCacheTypes& types = kF32Cache)
      : kv(with_types(shape(seqs, k_width, v_width, block_size), types), n_blocks(seqs, block_size)) {
    EXPECT_TRUE(check_kv_cache_types(kv.shape()).is_ok());
    std::mt19937 rng(seed);
    // Grow the sequences a block at a time in turn so their block tables interleave.
    bool grew = true;
    for (int64_t covered = block_size; grew; covered += block_size) {
      grew = false;
      for (size_t s = 0; s < seqs.size(); ++s) {
        if (covered - block_size >= seqs[s].n_ctx) continue;
        EXPECT_TRUE(kv.reserve(static_cast<int32_t>(s), std::min(covered, seqs[s].n_ctx)).is_ok());
        grew = true;
      }
    }
    std::vector<float> k_row(static_cast<size_t>(k_width)), v_row(static_cast<size_t>(v_width));
    for (size_t s = 0; s < seqs.size(); ++s)
      for (int64_t pos = 0; pos < seqs[s].n_ctx; ++pos) {
        fill_gaussian(k_row.data(), k_width, rng);
        kv.store_k(0, static_cast<int32_t>(s), pos, k_row.data());
        if (v_width > 0) {
          fill_gaussian(v_row.data(), v_width, rng);
          kv.store_v(0, static_cast<int32_t>(s), pos, v_row.data());
        }
      }
    int64_t max_new = 0;
    for (const SeqSpec& s : seqs) max_new = std::max(max_new, s.n_new);
    for (int64_t i = 0; i < max_new; ++i)
      for (size_t s = 0; s < seqs.size(); ++s)
        if (i < seqs[s].n_new) {
          seq_ids.push_back(static_cast<int32_t>(s));
          positions.push_back(static_cast<int32_t>(seqs[s].n_ctx - seqs[s].n_new + i));
        }
  }

  static KvCacheShape shape(const std::vector<SeqSpec>& seqs, int64_t k_width, int64_t v_width, int32_t block_size) {
    KvCacheShape sh;
    sh.n_layer = 1;
    sh.k_width = k_width;
    sh.v_width = v_width;
    sh.block_size = block_size;
    for (const SeqSpec& s : seqs) sh.n_ctx_max = std::max(sh.n_ctx_max, s.n_ctx);
    return sh;
  }
  static int32_t n_blocks(const std::vector<SeqSpec>& seqs, int32_t block_size) {
    int32_t n = 1;
    for (const SeqSpec& s : seqs) n += static_cast<int32_t>((s.n_ctx + block_size - 1) / block_size);
    return n;
  }
};

inline std::string types_name(const KvCacheTypes& t) { return std::string("K ") + dtype_name(t.k) + ", V " + dtype_name(t.v); }

// Largest difference in a row relative to the row's largest reference magnitude.
inline double max_row_error(const std::vector<float>& got, const std::vector<float>& want, int64_t row_width) {
  double worst = 0;
  for (size_t r = 0; r * static_cast<size_t>(row_width) < want.size(); ++r) {
    double scale = 0, diff = 0;
    for (int64_t i = 0; i < row_width; ++i) {
      const size_t at = r * static_cast<size_t>(row_width) + static_cast<size_t>(i);
      scale = std::max(scale, std::fabs(static_cast<double>(want[at])));
      diff = std::max(diff, std::fabs(static_cast<double>(got[at]) - static_cast<double>(want[at])));
    }
    worst = std::max(worst, diff / std::max(scale, 1e-30));
  }
  return worst;
}

}  // namespace fathom::cpu
