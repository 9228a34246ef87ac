// Flash-style CPU attention (every ISA this machine supports, the generic path forced too) vs
// the naive per-(token, head) reference twin, over a paged cache with interleaved block
// tables, several sequences per batch and several new tokens per sequence (causal masking).
// Caches stored as f16, bf16, q8_0 and q4_0 (K and V separately): the fast kernels convert tiles
// of the stored rows, the reference converts whole rows; both must agree as tightly as on f32,
// and the reference on a converted cache must stay within each type's bound of f32.
// tests/bench/attention_bench_test.cpp times them (label `slow`, `make bench`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/attention.h"
#include "attention_test_util.h"

namespace fathom::cpu {
namespace {

const std::vector<SeqSpec> kMixedBatch = {
    {1999, 7},  // long context, a few new tokens
    {1001, 1},  // decode
    {33, 33},   // whole prompt in this batch
    {1, 1},     // first token
    {250, 20},  // prefill chunk continuing a prompt
};

struct MhaCase {
  int64_t n_head, n_head_kv, dk, dv;
  int32_t block_size;
};

// Random queries of a batch, q [n_tokens, n_head, dk], with the softmax scale 1/sqrt(dk).
struct MhaQueries {
  const MhaCase c;
  const AttentionBatch& batch;
  std::vector<float> q;
  float scale;
  MhaQueries(const AttentionBatch& batch_, const MhaCase& c_, uint32_t seed)
      : c(c_), batch(batch_), q(static_cast<size_t>(batch.n_tokens * c.n_head * c.dk)),
        scale(1.0f / std::sqrt(static_cast<float>(c.dk))) {
    std::mt19937 rng(seed);
    fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
  }
  size_t out_size() const { return static_cast<size_t>(batch.n_tokens * c.n_head * c.dv); }

  // The output [n_tokens, n_head, dv] of the reference twin on `kv`.
  std::vector<float> reference(ThreadPool& pool, KvCache& kv) const {
    std::vector<float> out(out_size());
    attention_ref(pool, q.data(), kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, out.data());
    return out;
  }
  // The same from the fast kernels of `isa` (NaN where they write nothing).
  std::vector<float> fast(ThreadPool& pool, Isa isa, KvCache& kv) const {
    std::vector<float> out(out_size(), NAN);
    attention(pool, isa, q.data(), kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, out.data());
    return out;
  }
};

class AttentionVsReference : public ::testing::TestWithParam<MhaCase> {};

TEST_P(AttentionVsReference, AllIsasMatchReference) {
  const MhaCase c = GetParam();
  PagedCache setup(kMixedBatch, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 7);
  const AttentionBatch batch = setup.batch();
  const MhaQueries queries(batch, c, 11);
  ThreadPool ref_pool(2);
  const std::vector<float> want = queries.reference(ref_pool, setup.kv);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (Isa isa : available_isas())
      EXPECT_LT(max_row_error(queries.fast(pool, isa, setup.kv), want, c.dv), 1e-5)
          << isa_name(isa) << ", " << threads << " threads";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionVsReference,
                         ::testing::Values(MhaCase{4, 4, 64, 64, 16},     // MHA (ratio 1)
                                           MhaCase{8, 2, 128, 128, 16},   // GQA 4
                                           MhaCase{12, 2, 128, 128, 16},  // GQA 6, the R1-Distill-Qwen-1.5B shape
                                           MhaCase{6, 1, 192, 128, 16},   // dk != dv, GQA 6
                                           MhaCase{8, 2, 64, 64, 32},     // bigger blocks: two tiles per block
                                           MhaCase{4, 2, 64, 64, 8},      // smaller blocks: partial tiles
                                           MhaCase{8, 8, 8, 8, 16},       // stories260K heads: AVX2 width only
                                           MhaCase{6, 2, 20, 12, 16}));   // widths no vector path takes

TEST(AttentionVsReference, SingleTokenContextsAroundTileEdges) {
  for (int64_t n_ctx : {1, 2, 15, 16, 17, 31, 33, 100}) {
    PagedCache setup({{n_ctx, 1}}, 2 * 64, 2 * 64, 16, static_cast<uint32_t>(n_ctx));
    const AttentionBatch batch = setup.batch();
    const MhaQueries queries(batch, {8, 2, 64, 64, 16}, 3);
    ThreadPool pool(2);
    const std::vector<float> want = queries.reference(pool, setup.kv);
    for (Isa isa : available_isas())
      EXPECT_LT(max_row_error(queries.fast(pool, isa, setup.kv), want, 64), 1e-5)
          << isa_name(isa) << " n_ctx " << n_ctx;
  }
}

// Scores spread over ~30 (weights from 1 down to e^-30): the running max changes inside and
// across tiles. (Much larger scores amplify the dot products' rounding, which differs with the
// summation order, beyond 1e-5 in exp.)
TEST(AttentionVsReference, LargeScoresRescale) {
  PagedCache setup({{300, 5}}, 64, 64, 16, 5);
  const AttentionBatch batch = setup.batch();
  std::mt19937 rng(9);
  std::vector<float> q(static_cast<size_t>(batch.n_tokens * 4 * 64));
  fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
  ThreadPool pool(2);
  std::vector<float> want(q.size()), got(q.size());
  attention_ref(pool, q.data(), setup.kv, 0, batch, 4, 1, 64, 64, 0.5f, want.data());
  for (Isa isa : available_isas()) {
    attention(pool, isa, q.data(), setup.kv, 0, batch, 4, 1, 64, 64, 0.5f, got.data());
    EXPECT_LT(max_row_error(got, want, 64), 1e-5) << isa_name(isa);
  }
}

// Decode at long contexts: one item per KV head leaves threads idle, so the positions are split
// into parts whose softmax states are merged (2 to 4 parts here; part boundaries inside and at
// the edge of cache blocks). A second, multi-token sequence checks split and unsplit items side
// by side in one call.
TEST(AttentionVsReference, LongContextDecodeSplitsPositions) {
  const MhaCase shapes[] = {{12, 2, 128, 128, 16}, {4, 1, 64, 64, 16}};
  for (const MhaCase& c : shapes)
    for (const std::vector<SeqSpec>& seqs : {std::vector<SeqSpec>{{1024, 1}}, std::vector<SeqSpec>{{2053, 1}, {1100, 9}}}) {
      PagedCache setup(seqs, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 13);
      const AttentionBatch batch = setup.batch();
      const MhaQueries queries(batch, c, 5);
      ThreadPool ref_pool(2);
      const std::vector<float> want = queries.reference(ref_pool, setup.kv);
      for (int threads : {2, 3, 4}) {
        ThreadPool pool(threads);
        for (Isa isa : available_isas())
          EXPECT_LT(max_row_error(queries.fast(pool, isa, setup.kv), want, c.dv), 1e-5)
              << isa_name(isa) << ", " << threads << " threads, " << c.n_head_kv << " KV heads, " << seqs.size() << " sequences";
      }
    }
}

struct MlaCase {
  int64_t n_head, kv_lora_rank, n_rot;
};

// Random MLA queries of a batch: q_abs [n_tokens, n_head, kv_lora_rank], q_pe [n_tokens, n_head, n_rot].
struct MlaQueries {
  std::vector<float> q_abs, q_pe;
  float scale;
  MlaQueries(const AttentionBatch& batch, const MlaCase& c, uint32_t seed)
      : q_abs(static_cast<size_t>(batch.n_tokens * c.n_head * c.kv_lora_rank)),
        q_pe(static_cast<size_t>(batch.n_tokens * c.n_head * c.n_rot)),
        scale(1.0f / std::sqrt(static_cast<float>(c.kv_lora_rank + c.n_rot))) {
    std::mt19937 rng(seed);
    fill_gaussian(q_abs.data(), static_cast<int64_t>(q_abs.size()), rng);
    fill_gaussian(q_pe.data(), static_cast<int64_t>(q_pe.size()), rng);
  }
};

class MlaAttentionVsReference : public ::testing::TestWithParam<MlaCase> {};

TEST_P(MlaAttentionVsReference, AllIsasMatchReference) {
  const MlaCase c = GetParam();
  const std::vector<SeqSpec> seqs = {{777, 3}, {45, 45}, {1, 1}, {130, 1}};
  PagedCache setup(seqs, c.kv_lora_rank + c.n_rot, 0, 16, 21);
  const AttentionBatch batch = setup.batch();
  const MlaQueries queries(batch, c, 4);
  const std::vector<float>&q_abs = queries.q_abs, &q_pe = queries.q_pe;
  const float scale = queries.scale;
  ThreadPool pool(3);
  std::vector<float> want(q_abs.size());
  mla_attention_ref(pool, q_abs.data(), q_pe.data(), setup.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, want.data());
  for (Isa isa : available_isas()) {
    std::vector<float> got(q_abs.size(), NAN);
    mla_attention(pool, isa, q_abs.data(), q_pe.data(), setup.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, got.data());
    EXPECT_LT(max_row_error(got, want, c.kv_lora_rank), 1e-5) << isa_name(isa);
  }
}

// MLA decode at a long context: all heads read the one latent row, so the heads stay in one
// item and the positions are split across the threads, on an f32 and an f16 (converted) cache.
TEST(MlaAttentionVsReference, LongContextDecodeSplitsPositions) {
  const MlaCase c{16, 512, 64};  // DeepSeek-V2-Lite
  for (const KvCacheTypes& types : {kF32Cache, KvCacheTypes{DType::F16, DType::F16}}) {
    PagedCache setup({{1500, 1}}, c.kv_lora_rank + c.n_rot, 0, 16, 23, types);
    const AttentionBatch batch = setup.batch();
    const MlaQueries queries(batch, c, 6);
    ThreadPool ref_pool(2);
    std::vector<float> want(queries.q_abs.size());
    mla_attention_ref(ref_pool, queries.q_abs.data(), queries.q_pe.data(), setup.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot,
                      queries.scale, want.data());
    for (int threads : {2, 3}) {
      ThreadPool pool(threads);
      for (Isa isa : available_isas()) {
        std::vector<float> got(want.size(), NAN);
        mla_attention(pool, isa, queries.q_abs.data(), queries.q_pe.data(), setup.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot,
                      queries.scale, got.data());
        EXPECT_LT(max_row_error(got, want, c.kv_lora_rank), 1e-5) << isa_name(isa) << ", " << threads << " threads, " << types_name(types);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MlaAttentionVsReference,
                         ::testing::Values(MlaCase{16, 512, 64},  // DeepSeek-V2-Lite
                                           MlaCase{8, 64, 16},
                                           MlaCase{4, 40, 8}));   // AVX2 width only

// Squared error of `got` over the squared norm of `want`, all outputs together.
double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return err / norm;
}

// Stored cache types, each with the bound on the normalized mean squared error of the reference
// on that cache against the reference on the f32 cache (unit-Gaussian keys and values; about the
// type's relative rounding error squared; measured: f16 6e-8, bf16 4e-6, q8_0 4e-5, q4_0 1e-2,
// about a third of each bound).
struct TypedCase {
  KvCacheTypes types;
  double nmse_vs_f32;
};

const TypedCase kTypedCases[] = {
    {{DType::F16, DType::F16}, 2e-7},   {{DType::BF16, DType::BF16}, 1.5e-5}, {{DType::Q8_0, DType::Q8_0}, 1.5e-4},
    {{DType::Q4_0, DType::Q4_0}, 3e-2}, {{DType::F16, DType::Q4_0}, 3e-2},    {{DType::Q8_0, DType::F32}, 5e-5},
};


TEST(AttentionStoredTypes, FastKernelsMatchReferenceOnEachType) {
  // GQA 6 at the 1.5B head width; stories260K's 8-wide heads, where one 32-value block spans
  // four heads; dk != dv.
  const MhaCase shapes[] = {{12, 2, 128, 128, 16}, {8, 8, 8, 8, 16}, {6, 2, 64, 32, 8}};
  const std::vector<SeqSpec> seqs = {{300, 5}, {37, 37}, {1, 1}, {129, 1}};
  ThreadPool pool(2);
  for (const MhaCase& c : shapes) {
    PagedCache f32(seqs, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 7);
    const AttentionBatch batch = f32.batch();
    const MhaQueries queries(batch, c, 11);
    const std::vector<float> exact = queries.reference(pool, f32.kv);
    for (const TypedCase& tc : kTypedCases) {
      PagedCache typed(seqs, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 7, tc.types);
      const std::vector<float> want = queries.reference(pool, typed.kv);
      const double vs_f32 = nmse(want, exact);
      EXPECT_LT(vs_f32, tc.nmse_vs_f32) << types_name(tc.types) << ", head " << c.dk;
      EXPECT_GT(vs_f32, 0.0) << types_name(tc.types) << ": the cache was not converted";
      for (Isa isa : available_isas())
        EXPECT_LT(max_row_error(queries.fast(pool, isa, typed.kv), want, c.dv), 1e-5)
            << isa_name(isa) << ", " << types_name(tc.types) << ", head " << c.dk;
    }
  }
}

TEST(AttentionStoredTypes, MlaFastKernelsMatchReferenceOnEachType) {
  const MlaCase c{16, 512, 64};  // DeepSeek-V2-Lite
  const std::vector<SeqSpec> seqs = {{200, 3}, {45, 45}, {1, 1}};
  ThreadPool pool(2);
  PagedCache f32(seqs, c.kv_lora_rank + c.n_rot, 0, 16, 21);
  const AttentionBatch batch = f32.batch();
  const MlaQueries queries(batch, c, 4);
  const std::vector<float>&q_abs = queries.q_abs, &q_pe = queries.q_pe;
  const float scale = queries.scale;
  std::vector<float> exact(q_abs.size());
  mla_attention_ref(pool, q_abs.data(), q_pe.data(), f32.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, exact.data());
  for (const TypedCase& tc : kTypedCases) {
    if (tc.types.k != tc.types.v) continue;  // the latent cache has no V rows
    PagedCache typed(seqs, c.kv_lora_rank + c.n_rot, 0, 16, 21, tc.types);
    std::vector<float> want(q_abs.size());
    mla_attention_ref(pool, q_abs.data(), q_pe.data(), typed.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, want.data());
    EXPECT_LT(nmse(want, exact), tc.nmse_vs_f32) << types_name(tc.types);
    for (Isa isa : available_isas()) {
      std::vector<float> got(q_abs.size(), NAN);
      mla_attention(pool, isa, q_abs.data(), q_pe.data(), typed.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, got.data());
      EXPECT_LT(max_row_error(got, want, c.kv_lora_rank), 1e-5) << isa_name(isa) << ", " << types_name(tc.types);
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
