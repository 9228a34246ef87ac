// Flash-style CPU attention (every ISA this machine supports, the generic path forced too) vs
// the naive per-(token, head) reference twin, over a paged cache with interleaved block
// tables, several sequences per batch and several new tokens per sequence (causal masking).
// tests/bench/attention_bench_test.cpp times them (label `slow`, `make bench`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
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

class AttentionVsReference : public ::testing::TestWithParam<MhaCase> {};

TEST_P(AttentionVsReference, AllIsasMatchReference) {
  const MhaCase c = GetParam();
  PagedCache setup(kMixedBatch, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 7);
  const AttentionBatch batch = setup.batch();
  std::mt19937 rng(11);
  std::vector<float> q(static_cast<size_t>(batch.n_tokens * c.n_head * c.dk));
  fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  const size_t out_size = static_cast<size_t>(batch.n_tokens * c.n_head * c.dv);
  ThreadPool ref_pool(2);
  std::vector<float> want(out_size);
  attention_ref(ref_pool, q.data(), setup.kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, want.data());
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (Isa isa : available_isas()) {
      std::vector<float> got(out_size, NAN);
      attention(pool, isa, q.data(), setup.kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, got.data());
      EXPECT_LT(max_row_error(got, want, c.dv), 1e-5) << isa_name(isa) << ", " << threads << " threads";
    }
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
    std::mt19937 rng(3);
    std::vector<float> q(static_cast<size_t>(8 * 64));
    fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
    ThreadPool pool(2);
    std::vector<float> want(q.size()), got(q.size());
    attention_ref(pool, q.data(), setup.kv, 0, batch, 8, 2, 64, 64, 0.125f, want.data());
    for (Isa isa : available_isas()) {
      attention(pool, isa, q.data(), setup.kv, 0, batch, 8, 2, 64, 64, 0.125f, got.data());
      EXPECT_LT(max_row_error(got, want, 64), 1e-5) << isa_name(isa) << " n_ctx " << n_ctx;
    }
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

struct MlaCase {
  int64_t n_head, kv_lora_rank, n_rot;
};

class MlaAttentionVsReference : public ::testing::TestWithParam<MlaCase> {};

TEST_P(MlaAttentionVsReference, AllIsasMatchReference) {
  const MlaCase c = GetParam();
  const std::vector<SeqSpec> seqs = {{777, 3}, {45, 45}, {1, 1}, {130, 1}};
  PagedCache setup(seqs, c.kv_lora_rank + c.n_rot, 0, 16, 21);
  const AttentionBatch batch = setup.batch();
  std::mt19937 rng(4);
  std::vector<float> q_abs(static_cast<size_t>(batch.n_tokens * c.n_head * c.kv_lora_rank));
  std::vector<float> q_pe(static_cast<size_t>(batch.n_tokens * c.n_head * c.n_rot));
  fill_gaussian(q_abs.data(), static_cast<int64_t>(q_abs.size()), rng);
  fill_gaussian(q_pe.data(), static_cast<int64_t>(q_pe.size()), rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.kv_lora_rank + c.n_rot));
  ThreadPool pool(3);
  std::vector<float> want(q_abs.size());
  mla_attention_ref(pool, q_abs.data(), q_pe.data(), setup.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, want.data());
  for (Isa isa : available_isas()) {
    std::vector<float> got(q_abs.size(), NAN);
    mla_attention(pool, isa, q_abs.data(), q_pe.data(), setup.kv, 0, batch, c.n_head, c.kv_lora_rank, c.n_rot, scale, got.data());
    EXPECT_LT(max_row_error(got, want, c.kv_lora_rank), 1e-5) << isa_name(isa);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MlaAttentionVsReference,
                         ::testing::Values(MlaCase{16, 512, 64},  // DeepSeek-V2-Lite
                                           MlaCase{8, 64, 16},
                                           MlaCase{4, 40, 8}));   // AVX2 width only

}  // namespace
}  // namespace fathom::cpu
