// Flash-style CPU attention (every ISA this machine supports, the generic path forced too) vs
// the naive per-(token, head) reference twin, over a paged cache with interleaved block
// tables, several sequences per batch and several new tokens per sequence (causal masking).
// Caches stored as f16, bf16, q8_0 and q4_0 (K and V separately): the fast kernels convert tiles
// of the stored rows, the reference converts whole rows; both must agree as tightly as on f32,
// and the reference on a converted cache must stay within each type's bound of f32.
// The Bench tests time both at a 4096-token context and print the figures.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/attention.h"

namespace fathom::cpu {
namespace {

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

void fill_gaussian(float* x, int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

struct SeqSpec {
  int64_t n_ctx;  // positions cached after this batch
  int64_t n_new;  // of those, the last n_new are this batch's tokens
};

const KvCacheTypes kF32Cache{DType::F32, DType::F32};

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

// Largest difference in a row relative to the row's largest reference magnitude.
double max_row_error(const std::vector<float>& got, const std::vector<float>& want, int64_t row_width) {
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

std::string types_name(const KvCacheTypes& t) { return std::string("K ") + dtype_name(t.k) + ", V " + dtype_name(t.v); }

TEST(AttentionStoredTypes, FastKernelsMatchReferenceOnEachType) {
  // GQA 6 at the 1.5B head width; stories260K's 8-wide heads, where one 32-value block spans
  // four heads; dk != dv.
  const MhaCase shapes[] = {{12, 2, 128, 128, 16}, {8, 8, 8, 8, 16}, {6, 2, 64, 32, 8}};
  const std::vector<SeqSpec> seqs = {{300, 5}, {37, 37}, {1, 1}, {129, 1}};
  ThreadPool pool(2);
  for (const MhaCase& c : shapes) {
    PagedCache f32(seqs, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 7);
    const AttentionBatch batch = f32.batch();
    std::mt19937 rng(11);
    std::vector<float> q(static_cast<size_t>(batch.n_tokens * c.n_head * c.dk));
    fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
    const size_t out_size = static_cast<size_t>(batch.n_tokens * c.n_head * c.dv);
    std::vector<float> exact(out_size);
    attention_ref(pool, q.data(), f32.kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, exact.data());
    for (const TypedCase& tc : kTypedCases) {
      PagedCache typed(seqs, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 7, tc.types);
      std::vector<float> want(out_size);
      attention_ref(pool, q.data(), typed.kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, want.data());
      const double vs_f32 = nmse(want, exact);
      EXPECT_LT(vs_f32, tc.nmse_vs_f32) << types_name(tc.types) << ", head " << c.dk;
      EXPECT_GT(vs_f32, 0.0) << types_name(tc.types) << ": the cache was not converted";
      for (Isa isa : available_isas()) {
        std::vector<float> got(out_size, NAN);
        attention(pool, isa, q.data(), typed.kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, got.data());
        EXPECT_LT(max_row_error(got, want, c.dv), 1e-5) << isa_name(isa) << ", " << types_name(tc.types) << ", head " << c.dk;
      }
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

// Seconds per call, best of `reps`.
template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Context 4096 at the R1-Distill-Qwen-1.5B attention shape (12 heads, 2 KV heads, 128 wide):
// one decode token, and a 64-token prefill chunk ending at position 4095. Two threads.
TEST(AttentionBench, Context4096) {
  ThreadPool pool(2);
  const int64_t n_head = 12, n_head_kv = 2, d = 128;
  // Decode on each stored type (they cost a conversion per tile), and a prefill chunk on f32.
  const std::pair<int64_t, KvCacheTypes> runs[] = {
      {1, kF32Cache}, {1, {DType::F16, DType::F16}}, {1, {DType::Q8_0, DType::Q8_0}}, {1, {DType::Q4_0, DType::Q4_0}}, {64, kF32Cache}};
  for (const auto& [n_new, types] : runs) {
    PagedCache setup({{4096, n_new}}, n_head_kv * d, n_head_kv * d, 16, 1, types);
    const AttentionBatch batch = setup.batch();
    std::mt19937 rng(2);
    std::vector<float> q(static_cast<size_t>(batch.n_tokens * n_head * d)), out(q.size());
    fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
    const int reps = n_new > 1 ? 3 : types.k == DType::F32 ? 20 : 5;
    const double ref = best_seconds(reps, [&] {
      attention_ref(pool, q.data(), setup.kv, 0, batch, n_head, n_head_kv, d, d, 0.088f, out.data());
    });
    std::printf("[ bench    ] attention ctx 4096, %lld new token(s), 12/2 heads x 128, %s, 2 threads: reference %.3f ms",
                static_cast<long long>(n_new), types_name(types).c_str(), ref * 1e3);
    for (Isa isa : available_isas()) {
      const double t = best_seconds(reps, [&] {
        attention(pool, isa, q.data(), setup.kv, 0, batch, n_head, n_head_kv, d, d, 0.088f, out.data());
      });
      std::printf(", %s %.3f ms (x%.1f)", isa_name(isa), t * 1e3, ref / t);
    }
    std::printf("\n");
  }
}

// Context 4096 at DeepSeek-V2-Lite's MLA shape (16 heads, kv_lora_rank 512, 64 rope dims), decode.
TEST(AttentionBench, MlaContext4096) {
  ThreadPool pool(2);
  const int64_t n_head = 16, rank = 512, n_rot = 64;
  PagedCache setup({{4096, 1}}, rank + n_rot, 0, 16, 1);
  const AttentionBatch batch = setup.batch();
  std::mt19937 rng(2);
  std::vector<float> q_abs(static_cast<size_t>(n_head * rank)), q_pe(static_cast<size_t>(n_head * n_rot)), out(q_abs.size());
  fill_gaussian(q_abs.data(), static_cast<int64_t>(q_abs.size()), rng);
  fill_gaussian(q_pe.data(), static_cast<int64_t>(q_pe.size()), rng);
  const double ref = best_seconds(10, [&] {
    mla_attention_ref(pool, q_abs.data(), q_pe.data(), setup.kv, 0, batch, n_head, rank, n_rot, 0.04f, out.data());
  });
  std::printf("[ bench    ] mla attention ctx 4096, 1 new token, 16 heads x (512 + 64), 2 threads: reference %.3f ms", ref * 1e3);
  for (Isa isa : available_isas()) {
    const double t = best_seconds(10, [&] {
      mla_attention(pool, isa, q_abs.data(), q_pe.data(), setup.kv, 0, batch, n_head, rank, n_rot, 0.04f, out.data());
    });
    std::printf(", %s %.3f ms (x%.1f)", isa_name(isa), t * 1e3, ref / t);
  }
  std::printf("\n");
}

}  // namespace
}  // namespace fathom::cpu
