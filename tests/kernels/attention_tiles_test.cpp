// The AMX tile path of the CPU attention (attention_amx.cpp), with the tile instructions emulated
// (any AVX-512 CPU) and on the real tiles (where this CPU has them):
//  - rows of sequences with 64+ tokens in the batch against a double-precision twin that rounds
//    q, k and v to bf16 as the tiles do and computes the softmax exactly: within
//    2^-7 * sum_j w_j |v_j| + 1e-6 per output (the weights' bf16 rounding, 2^-9 each, and f32
//    sums; derivation in docs/decisions.md), on f32, f16 and block-quantized caches, MHA/GQA and MLA;
//  - the other rows of the same batch (fewer tokens) still match the f32 reference to 1e-5;
//  - a row's result is bit-identical whatever else is in the batch and however many threads run;
//  - head widths that are not multiples of 32 keep the f32 kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attention_test_util.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/attention_internal.h"

namespace fathom::cpu {
namespace {

// The tile executions this machine can run.
std::vector<TileExec> tile_execs() {
  std::vector<TileExec> out;
  if (isa_supported(Isa::kAvx512)) out.push_back(TileExec::kEmulated);
  if (isa_supported(Isa::kAmx)) out.push_back(TileExec::kHardware);
  return out;
}
const char* exec_name(TileExec e) { return e == TileExec::kEmulated ? "emulated tiles" : "AMX tiles"; }

// Round to nearest even to bf16, back to double (the tile path's rounding; inputs are finite).
double bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  float r;
  std::memcpy(&r, &bits, 4);
  return r;
}

// One attention problem as the driver sees it: query rows [q_main | q_tail] per (token, head).
struct Problem {
  const float* q_main;
  int64_t d_main;
  const float* q_tail;  // nullptr for MHA
  int64_t d_tail;
  int64_t n_head, n_head_kv, dv;
  float scale;
  bool latent;  // MLA: the value is the first dv values of the key row
};

// The bf16 twin: out[t, h] = sum_j w_j v^_j with w the exact softmax of scale * q^ . k^ (^: bf16),
// and bound[t, h, c] = 2^-7 * sum_j w_j |v^_jc| + 1e-6.
void bf16_reference(const Problem& p, KvCache& kv, const AttentionBatch& batch, std::vector<float>& out,
                    std::vector<float>& bound) {
  const int64_t dk = p.d_main + p.d_tail, group = p.n_head / p.n_head_kv;
  const int32_t bs = kv.shape().block_size;
  out.assign(static_cast<size_t>(batch.n_tokens * p.n_head * p.dv), 0.0f);
  bound.assign(out.size(), 0.0f);
  std::vector<float> k_row(static_cast<size_t>(kv.shape().k_width)), v_row(static_cast<size_t>(std::max<int64_t>(1, kv.shape().v_width)));
  for (int64_t t = 0; t < batch.n_tokens; ++t) {
    const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
    const int64_t n_kv = batch.positions[t] + 1;
    for (int64_t h = 0; h < p.n_head; ++h) {
      const int64_t hk = h / group;
      std::vector<double> q(static_cast<size_t>(dk));
      for (int64_t i = 0; i < p.d_main; ++i) q[static_cast<size_t>(i)] = bf16(p.q_main[(t * p.n_head + h) * p.d_main + i]);
      for (int64_t i = 0; i < p.d_tail; ++i) q[static_cast<size_t>(p.d_main + i)] = bf16(p.q_tail[(t * p.n_head + h) * p.d_tail + i]);
      std::vector<double> scores(static_cast<size_t>(n_kv)), values(static_cast<size_t>(n_kv * p.dv));
      double max_score = -INFINITY;
      for (int64_t pos = 0; pos < n_kv; ++pos) {
        const int32_t block = table[static_cast<size_t>(pos / bs)];
        const auto slot = static_cast<int32_t>(pos % bs);
        kv.load_k(0, block, slot, k_row.data());
        double s = 0;
        for (int64_t i = 0; i < dk; ++i) s += q[static_cast<size_t>(i)] * bf16(k_row[static_cast<size_t>(hk * dk + i)]);
        scores[static_cast<size_t>(pos)] = s * p.scale;
        max_score = std::max(max_score, scores[static_cast<size_t>(pos)]);
        const float* v = k_row.data();
        if (!p.latent) {
          kv.load_v(0, block, slot, v_row.data());
          v = v_row.data() + hk * p.dv;
        }
        for (int64_t c = 0; c < p.dv; ++c) values[static_cast<size_t>(pos * p.dv + c)] = bf16(v[c]);
      }
      double denom = 0;
      for (double& s : scores) denom += (s = std::exp(s - max_score));
      for (int64_t c = 0; c < p.dv; ++c) {
        double acc = 0, mag = 0;
        for (int64_t pos = 0; pos < n_kv; ++pos) {
          const double w = scores[static_cast<size_t>(pos)] / denom, v = values[static_cast<size_t>(pos * p.dv + c)];
          acc += w * v;
          mag += w * std::fabs(v);
        }
        const size_t at = static_cast<size_t>((t * p.n_head + h) * p.dv + c);
        out[at] = static_cast<float>(acc);
        bound[at] = static_cast<float>(std::ldexp(mag, -7) + 1e-6);
      }
    }
  }
}

// The tile path's output of problem p (isa kAmx, execution e).
std::vector<float> run_tiles(ThreadPool& pool, TileExec e, const Problem& p, KvCache& kv, const AttentionBatch& batch) {
  std::vector<float> out(static_cast<size_t>(batch.n_tokens * p.n_head * p.dv), NAN);
  if (p.latent)
    mla_attention(pool, Isa::kAmx, p.q_main, p.q_tail, kv, 0, batch, p.n_head, p.d_main, p.d_tail, p.scale, out.data(), e);
  else
    attention(pool, Isa::kAmx, p.q_main, kv, 0, batch, p.n_head, p.n_head_kv, p.d_main, p.dv, p.scale, out.data(), e);
  return out;
}

std::vector<float> run_f32_reference(ThreadPool& pool, const Problem& p, KvCache& kv, const AttentionBatch& batch) {
  std::vector<float> out(static_cast<size_t>(batch.n_tokens * p.n_head * p.dv));
  if (p.latent) mla_attention_ref(pool, p.q_main, p.q_tail, kv, 0, batch, p.n_head, p.d_main, p.d_tail, p.scale, out.data());
  else attention_ref(pool, p.q_main, kv, 0, batch, p.n_head, p.n_head_kv, p.d_main, p.dv, p.scale, out.data());
  return out;
}

// Checks every row of the batch: tile rows (sequences with kTileMinTokens or more tokens) against
// the bf16 twin's bound, the rest against the f32 reference. Prints the tile rows' NMSE and largest
// error relative to the f32 reference's row magnitude (for docs/decisions.md).
void check_batch(const Problem& p, KvCache& kv, const AttentionBatch& batch, const std::string& what) {
  std::vector<int64_t> tokens_of(64, 0);
  for (int64_t t = 0; t < batch.n_tokens; ++t) ++tokens_of[static_cast<size_t>(batch.seq_ids[t])];
  ThreadPool ref_pool(2);
  std::vector<float> twin, bound;
  bf16_reference(p, kv, batch, twin, bound);
  const std::vector<float> exact = run_f32_reference(ref_pool, p, kv, batch);
  double worst_vs_f32 = 0, err2 = 0, norm2 = 0;
  int64_t tile_rows = 0;
  for (TileExec e : tile_execs())
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      const std::vector<float> got = run_tiles(pool, e, p, kv, batch);
      for (int64_t t = 0; t < batch.n_tokens; ++t) {
        const bool tiles = tokens_of[static_cast<size_t>(batch.seq_ids[t])] >= detail::kTileMinTokens;
        for (int64_t h = 0; h < p.n_head; ++h) {
          const size_t row = static_cast<size_t>((t * p.n_head + h) * p.dv);
          const std::vector<float> got_row(got.begin() + static_cast<std::ptrdiff_t>(row), got.begin() + static_cast<std::ptrdiff_t>(row + p.dv));
          const std::vector<float> exact_row(exact.begin() + static_cast<std::ptrdiff_t>(row), exact.begin() + static_cast<std::ptrdiff_t>(row + p.dv));
          if (!tiles) {
            ASSERT_LT(max_row_error(got_row, exact_row, p.dv), 1e-5)
                << what << ", " << exec_name(e) << ": token " << t << " head " << h << " (f32 path)";
            continue;
          }
          ++tile_rows;
          worst_vs_f32 = std::max(worst_vs_f32, max_row_error(got_row, exact_row, p.dv));
          for (int64_t c = 0; c < p.dv; ++c) {
            const double d = static_cast<double>(got_row[static_cast<size_t>(c)]) - exact_row[static_cast<size_t>(c)];
            err2 += d * d;
            norm2 += static_cast<double>(exact_row[static_cast<size_t>(c)]) * exact_row[static_cast<size_t>(c)];
          }
          for (int64_t c = 0; c < p.dv; ++c)
            ASSERT_NEAR(got[row + static_cast<size_t>(c)], twin[row + static_cast<size_t>(c)], bound[row + static_cast<size_t>(c)])
                << what << ", " << exec_name(e) << ", " << threads << " threads: token " << t << " head " << h << " column " << c;
        }
      }
    }
  if (!tile_execs().empty()) {
    EXPECT_GT(tile_rows, 0) << what << ": no row took the tile path";
  }
  std::printf("%s: tile rows vs the f32 reference: NMSE %.2e, largest error / row magnitude %.2e\n", what.c_str(),
              norm2 > 0 ? err2 / norm2 : 0.0, worst_vs_f32);
}

struct MhaCase {
  int64_t n_head, n_head_kv, dk, dv;
  int32_t block_size;
};

// A batch mixing tile sequences (80, 70 and 64 new tokens, long and short contexts) with
// sequences of fewer tokens (decode, a short chunk).
const std::vector<SeqSpec> kTileBatch = {{300, 80}, {1001, 1}, {70, 70}, {150, 20}, {200, 64}};

TEST(AttentionTiles, MhaRowsWithinBoundOfBf16Twin) {
  if (tile_execs().empty()) GTEST_SKIP() << "no AVX-512: neither the tiles nor their emulation run here";
  const MhaCase shapes[] = {
      {12, 2, 128, 128, 16},  // R1-Distill-Qwen-1.5B
      {8, 2, 64, 64, 8},      // small blocks: a 32-position pack group spans 4 cache blocks
      {6, 1, 192, 128, 16},   // dk != dv
      {4, 4, 32, 32, 32},     // MHA, one chunk
  };
  for (const MhaCase& c : shapes)
    for (const KvCacheTypes& types : {kF32Cache, KvCacheTypes{DType::F16, DType::F16}, KvCacheTypes{DType::Q8_0, DType::Q4_0}}) {
      if (c.n_head != 12 && types.k != DType::F16) continue;  // the other types once, on the 1.5B shape
      PagedCache setup(kTileBatch, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 17, types);
      const AttentionBatch batch = setup.batch();
      std::vector<float> q(static_cast<size_t>(batch.n_tokens * c.n_head * c.dk));
      std::mt19937 rng(3);
      fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
      const Problem p{q.data(), c.dk, nullptr, 0, c.n_head, c.n_head_kv, c.dv, 1.0f / std::sqrt(static_cast<float>(c.dk)), false};
      check_batch(p, setup.kv, batch, "heads " + std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " x " +
                                          std::to_string(c.dk) + "/" + std::to_string(c.dv) + ", " + types_name(types));
    }
}

TEST(AttentionTiles, MlaRowsWithinBoundOfBf16Twin) {
  if (tile_execs().empty()) GTEST_SKIP() << "no AVX-512";
  const int64_t n_head = 16, rank = 512, n_rot = 64;  // DeepSeek-V2-Lite
  for (const KvCacheTypes& types : {kF32Cache, KvCacheTypes{DType::F16, DType::F16}}) {
    PagedCache setup({{200, 70}, {45, 45}}, rank + n_rot, 0, 16, 19, types);
    const AttentionBatch batch = setup.batch();
    std::vector<float> q_abs(static_cast<size_t>(batch.n_tokens * n_head * rank)), q_pe(static_cast<size_t>(batch.n_tokens * n_head * n_rot));
    std::mt19937 rng(5);
    fill_gaussian(q_abs.data(), static_cast<int64_t>(q_abs.size()), rng);
    fill_gaussian(q_pe.data(), static_cast<int64_t>(q_pe.size()), rng);
    const Problem p{q_abs.data(), rank, q_pe.data(), n_rot, n_head, 1, rank, 1.0f / std::sqrt(static_cast<float>(rank + n_rot)), true};
    check_batch(p, setup.kv, batch, "MLA 16 x 512 + 64, " + types_name(types));
  }
}

// Sequence 0's rows alone, and with two other sequences (one on the tile path, one decoding), on
// 1 and 3 threads: bit-identical.
TEST(AttentionTiles, RowsDoNotDependOnTheBatch) {
  if (tile_execs().empty()) GTEST_SKIP() << "no AVX-512";
  const MhaCase c{12, 2, 128, 128, 16};
  PagedCache setup({{300, 80}, {150, 70}, {500, 1}}, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 23,
                   KvCacheTypes{DType::F16, DType::F16});
  const AttentionBatch batch = setup.batch();
  std::vector<float> q(static_cast<size_t>(batch.n_tokens * c.n_head * c.dk));
  std::mt19937 rng(7);
  fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
  // Sequence 0 alone: its tokens and query rows, in batch order.
  std::vector<int32_t> seq_ids, positions;
  std::vector<float> q_alone;
  std::vector<int64_t> where;
  for (int64_t t = 0; t < batch.n_tokens; ++t)
    if (batch.seq_ids[t] == 0) {
      seq_ids.push_back(0);
      positions.push_back(batch.positions[t]);
      where.push_back(t);
      q_alone.insert(q_alone.end(), q.begin() + t * c.n_head * c.dk, q.begin() + (t + 1) * c.n_head * c.dk);
    }
  const AttentionBatch alone{seq_ids.data(), positions.data(), static_cast<int64_t>(seq_ids.size())};
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  const size_t row = static_cast<size_t>(c.n_head * c.dv);
  for (TileExec e : tile_execs()) {
    ThreadPool one(1), three(3);
    std::vector<float> mixed(static_cast<size_t>(batch.n_tokens) * row), solo(seq_ids.size() * row);
    attention(three, Isa::kAmx, q.data(), setup.kv, 0, batch, c.n_head, c.n_head_kv, c.dk, c.dv, scale, mixed.data(), e);
    attention(one, Isa::kAmx, q_alone.data(), setup.kv, 0, alone, c.n_head, c.n_head_kv, c.dk, c.dv, scale, solo.data(), e);
    for (size_t i = 0; i < where.size(); ++i)
      ASSERT_EQ(std::memcmp(mixed.data() + static_cast<size_t>(where[i]) * row, solo.data() + i * row, row * sizeof(float)), 0)
          << exec_name(e) << ": token " << i << " of sequence 0 differs between the batches";
  }
}

// Heads whose widths are not multiples of 32 keep the f32 kernels under Isa::kAmx.
TEST(AttentionTiles, NarrowHeadsKeepTheF32Kernels) {
  if (tile_execs().empty()) GTEST_SKIP() << "no AVX-512";
  const MhaCase c{8, 8, 8, 8, 16};  // stories260K
  PagedCache setup({{100, 80}}, c.n_head_kv * c.dk, c.n_head_kv * c.dv, c.block_size, 29);
  const AttentionBatch batch = setup.batch();
  std::vector<float> q(static_cast<size_t>(batch.n_tokens * c.n_head * c.dk));
  std::mt19937 rng(9);
  fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
  const Problem p{q.data(), c.dk, nullptr, 0, c.n_head, c.n_head_kv, c.dv, 1.0f / std::sqrt(static_cast<float>(c.dk)), false};
  ThreadPool pool(2);
  const std::vector<float> want = run_f32_reference(pool, p, setup.kv, batch);
  for (TileExec e : tile_execs()) EXPECT_LT(max_row_error(run_tiles(pool, e, p, setup.kv, batch), want, c.dv), 1e-5) << exec_name(e);
}

// The bound memory_need() adds for the packed heads: sequences of 64+ tokens in the step, whole
// 32-position groups, bf16 keys and values; nothing for widths the tiles do not take.
TEST(AttentionTiles, PackBytesBound) {
  // 1.5B shape, 4 sequences of 4096 positions, a 512-token step: all 4 can be prefilling.
  EXPECT_EQ(tile_pack_bytes_max(512, 4, 4096, 2, 128, 128), int64_t{4} * 4096 * 2 * 256 * 2);
  EXPECT_EQ(tile_pack_bytes_max(512, 16, 4096, 2, 128, 128), int64_t{8} * 4096 * 2 * 256 * 2);  // 512 / 64 at most
  EXPECT_EQ(tile_pack_bytes_max(100, 4, 4000, 1, 576, 512), int64_t{1} * 4000 * 1088 * 2);      // MLA, one sequence
  EXPECT_EQ(tile_pack_bytes_max(63, 4, 4096, 2, 128, 128), 0);  // no sequence reaches 64 tokens
  EXPECT_EQ(tile_pack_bytes_max(512, 4, 4096, 8, 8, 8), 0);     // stories260K's heads
  EXPECT_EQ(tile_pack_bytes_max(512, 4, 4001, 2, 128, 128), int64_t{4} * 4032 * 2 * 256 * 2);  // rounded to 32
  EXPECT_EQ(tile_pack_bytes_max(INT64_MAX / 2, INT64_MAX / 2, INT64_MAX / 2, 2, 128, 128), -1);
}

}  // namespace
}  // namespace fathom::cpu
