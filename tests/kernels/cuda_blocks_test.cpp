// The host side of the CUDA kernels, checked without a GPU: the block decoders of
// backend/cuda/cuda_blocks.h (the code the kernels run) bit-exact against quant::dequantize_row
// for every type, the attention kernel's reads of KV cache rows in their stored types and the
// q8_0 rows store_kv makes on the device (byte for byte the reference quantizer's), and the index math of backend/cuda/cuda_layout.h (matmul work split, KV mirror
// rows, batch block tables, flash-decoding splits and their merge, scratch size classes, cuBLAS
// slabs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_blocks.h"
#include "backend/cuda/cuda_layout.h"
#include "kv/kv_cache.h"
#include "quant/quant.h"

namespace fathom::cuda {
namespace {

// n values of type t: quantized from random floats (first half of the rows) and random bytes
// (the rest, so every bit pattern of scales and quants is exercised).
std::vector<uint8_t> random_rows(DType t, int64_t n, int64_t n_rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t row_bytes = row_size(t, n);
  std::vector<uint8_t> data(row_bytes * static_cast<size_t>(n_rows));
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t r = 0; r < n_rows; ++r) {
    uint8_t* row = data.data() + row_bytes * static_cast<size_t>(r);
    if (r < n_rows / 2) {
      for (float& v : x) v = dist(rng);
      quant::quantize_row_ref(t, x.data(), row, n);
    } else {
      for (size_t i = 0; i < row_bytes; ++i) row[i] = static_cast<uint8_t>(rng());
      if (t == DType::F32) {  // keep f32 values finite: NaN payloads are not what is under test
        for (size_t i = 0; i < row_bytes; i += 4) row[i + 3] &= 0x3f;
      }
    }
  }
  return data;
}

template <DType T>
void expect_bit_exact(int64_t n, uint32_t seed) {
  const int64_t n_rows = 6;
  const std::vector<uint8_t> data = random_rows(T, n, n_rows, seed);
  const size_t row_bytes = row_size(T, n);
  std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint8_t* row = data.data() + row_bytes * static_cast<size_t>(r);
    quant::dequantize_row(T, row, want.data(), n);
    for (int64_t g = 0; g < n / kGroupValues; ++g) decode_group<T>(row, g, got.data() + g * kGroupValues);
    for (size_t i = 0; i < got.size(); ++i) {
      // Random scales can be inf or NaN; which NaN an operation yields is not under test.
      if (std::isnan(got[i]) && std::isnan(want[i])) continue;
      ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
          << dtype_name(T) << " row " << r << " value " << i << ": " << got[i] << " vs " << want[i];
    }
  }
}

TEST(CudaBlocks, DecodersMatchReferenceDequantizationBitExact) {
  expect_bit_exact<DType::F32>(512, 1);
  expect_bit_exact<DType::F16>(512, 2);
  expect_bit_exact<DType::BF16>(512, 3);
  expect_bit_exact<DType::Q4_0>(512, 4);
  expect_bit_exact<DType::Q8_0>(512, 5);
  expect_bit_exact<DType::Q4_K>(1024, 6);
  expect_bit_exact<DType::Q5_K>(1024, 7);
  expect_bit_exact<DType::Q6_K>(1024, 8);
  expect_bit_exact<DType::IQ4_NL>(512, 9);
  expect_bit_exact<DType::IQ4_XS>(1024, 10);
}

// The packed codebook the iq4 decoders read on the device is the format's table, level by level.
TEST(CudaBlocks, Iq4CodebookMatchesTheFormatTable) {
  for (int k = 0; k < 16; ++k) EXPECT_EQ(iq4nl_level(k), static_cast<float>(quant::kIq4nlValues[k])) << "level " << k;
}

TEST(CudaBlocks, BlockShapesMatchTheFormats) {
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS}) {
    EXPECT_EQ(matmul_block_values(t), traits(t).block_size) << dtype_name(t);
  }
  EXPECT_EQ(Decoder<DType::Q4_0>::kBytes, static_cast<int>(traits(DType::Q4_0).type_size));
  EXPECT_EQ(Decoder<DType::Q8_0>::kBytes, static_cast<int>(traits(DType::Q8_0).type_size));
  EXPECT_EQ(Decoder<DType::Q4_K>::kBytes, static_cast<int>(traits(DType::Q4_K).type_size));
  EXPECT_EQ(Decoder<DType::Q5_K>::kBytes, static_cast<int>(traits(DType::Q5_K).type_size));
  EXPECT_EQ(Decoder<DType::Q6_K>::kBytes, static_cast<int>(traits(DType::Q6_K).type_size));
  EXPECT_EQ(Decoder<DType::IQ4_NL>::kBytes, static_cast<int>(traits(DType::IQ4_NL).type_size));
  EXPECT_EQ(Decoder<DType::IQ4_XS>::kBytes, static_cast<int>(traits(DType::IQ4_XS).type_size));
  EXPECT_EQ(matmul_block_values(DType::Q5_0), 0);  // no kernel: the CPU delegate runs it
  EXPECT_EQ(matmul_block_values(DType::Q2_K), 0);
  EXPECT_EQ(matmul_block_values(DType::TQ2_0), 0);
}

// The attention kernel's reads of a KV cache row stored as T, at every value of the row (heads
// start inside q8_0 blocks when they are narrower than 32), against KvCache::load_k.
template <DType T>
void expect_kv_values_match_cache(int64_t width) {
  KvCacheShape shape;
  shape.n_layer = 1;
  shape.k_width = width;
  shape.v_width = 0;
  shape.block_size = 4;
  shape.n_ctx_max = 16;
  shape.k_type = shape.v_type = T;
  KvCache kv(shape, 4);
  ASSERT_TRUE(kv.reserve(0, 5).is_ok());
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(static_cast<size_t>(width)), want(x.size());
  for (int64_t pos = 0; pos < 5; ++pos) {
    for (float& v : x) v = dist(rng);
    kv.store_k(0, 0, pos, x.data());
  }
  for (int32_t block : kv.block_table(0)) {
    for (int32_t slot = 0; slot < shape.block_size; ++slot) {
      kv.load_k(0, block, slot, want.data());
      for (int64_t e = 0; e < width; ++e)
        ASSERT_EQ(kv_value<T>(kv.k_data(0, block, slot), e), want[static_cast<size_t>(e)]) << dtype_name(T) << " value " << e;
    }
  }
}

TEST(CudaBlocks, KvValuesMatchTheCacheRows) {
  for (DType t : {DType::F32, DType::F16, DType::Q8_0}) EXPECT_TRUE(attention_reads(t)) << dtype_name(t);
  for (DType t : {DType::BF16, DType::Q4_0}) EXPECT_FALSE(attention_reads(t)) << dtype_name(t);
  expect_kv_values_match_cache<DType::F32>(72);
  expect_kv_values_match_cache<DType::F16>(72);
  expect_kv_values_match_cache<DType::Q8_0>(96);
}

// The device's q8_0 cache rows (store_kv on a q8_0 cache) quantize as the host's reference,
// byte for byte, including all-zero blocks and blocks whose largest value is negative.
TEST(CudaBlocks, KvQ8_0BlocksMatchReferenceQuantizer) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int64_t n = 32 * 64;
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(32 + j)] = 0.0f;
  x[64 + 5] = -40.0f;
  std::vector<uint8_t> want(row_size(DType::Q8_0, n)), got(want.size());
  quant::quantize_row_ref(DType::Q8_0, x.data(), want.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    quant::block_q8_0 block;
    block.d = fp32_to_fp16(quantize_q8_0_block(x.data() + b * 32, block.qs));
    std::memcpy(got.data() + static_cast<size_t>(b) * sizeof(block), &block, sizeof(block));
  }
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0);
}

// Every (row, token) of the output is computed by exactly one warp of the grid.
TEST(CudaLayout, MatvecGridCoversEveryRowAndTokenOnce) {
  for (int64_t n_out : {1, 3, 4, 5, 72, 4097}) {
    for (int64_t n_tokens : {1, 2, 3, 8, 9, 15}) {
      const MatvecGrid grid = matvec_grid(n_out, n_tokens);
      std::vector<int> count(static_cast<size_t>(n_out * n_tokens), 0);
      for (int64_t bx = 0; bx < grid.blocks_x; ++bx)
        for (int64_t by = 0; by < grid.blocks_y; ++by)
          for (int warp = 0; warp < kMatvecWarps; ++warp) {
            const MatvecWork w = matvec_work(bx, by, warp, grid.tokens_per_pass, n_tokens);
            if (w.row >= n_out) continue;
            ASSERT_GE(w.n_tokens, 1);
            ASSERT_LE(w.n_tokens, grid.tokens_per_pass);
            for (int t = 0; t < w.n_tokens; ++t) ++count[static_cast<size_t>((w.token_begin + t) * n_out + w.row)];
          }
      for (int c : count) ASSERT_EQ(c, 1) << "n_out " << n_out << " n_tokens " << n_tokens;
    }
  }
  EXPECT_EQ(matvec_grid(10, 1).tokens_per_pass, 1);
}

// Two sequences in 4-token blocks whose blocks interleave in the pool, and a third sharing the
// first's prefix: the mirror row of every (sequence, position) is where KvCache keeps it.
TEST(CudaLayout, KvMirrorRowsAndBatchTablesAddressTheHostRows) {
  KvCacheShape shape;
  shape.n_layer = 2;
  shape.k_width = 6;
  shape.v_width = 3;
  shape.block_size = 4;
  shape.n_ctx_max = 64;
  KvCache kv(shape, 16);
  for (int64_t n = 1; n <= 9; ++n) {
    ASSERT_TRUE(kv.reserve(0, n).is_ok());
    ASSERT_TRUE(kv.reserve(5, n + 2).is_ok());
  }
  kv.share_prefix(0, 7, 2);
  ASSERT_TRUE(kv.reserve(7, 10).is_ok());
  // A batch mixing the three sequences, positions out of order.
  const std::vector<int32_t> seq_ids = {5, 0, 7, 5, 0, 7, 5};
  const std::vector<int32_t> positions = {10, 8, 9, 3, 0, 2, 7};
  const AttentionBatch batch{seq_ids.data(), positions.data(), static_cast<int64_t>(seq_ids.size())};

  const std::vector<int64_t> rows = kv_rows_of_batch(kv, batch);
  const BatchTables tables = pack_block_tables(kv, batch);
  EXPECT_EQ(tables.max_blocks, 3);  // position 10 in 4-token blocks
  EXPECT_EQ(tables.tables.size(), 3u * 3u);  // three sequences
  EXPECT_EQ(tables.token_table, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 0}));
  for (int64_t layer = 0; layer < shape.n_layer; ++layer) {
    const float* k_base = kv.k_row(layer, 0, 0);
    const float* v_base = kv.v_row(layer, 0, 0);
    for (size_t t = 0; t < seq_ids.size(); ++t) {
      ASSERT_EQ(k_base + rows[t] * shape.k_width, kv.k_at(layer, seq_ids[t], positions[t]));
      ASSERT_EQ(v_base + rows[t] * shape.v_width, kv.v_at(layer, seq_ids[t], positions[t]));
      // The attention kernel's view: every position the token attends to.
      const int32_t* table = tables.tables.data() + tables.token_table[t] * tables.max_blocks;
      for (int64_t pos = 0; pos <= positions[t]; ++pos)
        ASSERT_EQ(k_base + kv_row_index(table, pos, shape.block_size) * shape.k_width, kv.k_at(layer, seq_ids[t], pos))
            << "seq " << seq_ids[t] << " pos " << pos;
    }
  }
}

TEST(CudaLayout, ScratchSizeClassesFitAndWasteUnderAQuarter) {
  for (size_t bytes : {size_t{1}, size_t{4096}, size_t{65536}, size_t{65537}, size_t{100000}, size_t{131072}, size_t{131073},
                       size_t{3} << 20, (size_t{3} << 20) + 1, size_t{1} << 30, (size_t{5} << 30) + 12345}) {
    const size_t c = scratch_size_class(bytes);
    EXPECT_GE(c, bytes);
    if (bytes > (size_t{64} << 10)) {
      EXPECT_LT(c - bytes, bytes / 4) << bytes;
    }
    EXPECT_EQ(scratch_size_class(c), c) << "a class is its own class";
  }
  // Sizes a little apart share a class, so a freed buffer serves the next, slightly larger request.
  EXPECT_EQ(scratch_size_class(1000000), scratch_size_class(1000100));
}

TEST(CudaLayout, GemmSlabsCoverTheMatrixWithinTheBudget) {
  EXPECT_EQ(gemm_slab_rows(4096, 100), 100);
  const int64_t rows = gemm_slab_rows(4096, 1 << 20);
  EXPECT_LE(static_cast<size_t>(rows) * 4096 * 2, kGemmSlabBytes);
  EXPECT_GT(static_cast<size_t>(rows + 1) * 4096 * 2, kGemmSlabBytes);
  EXPECT_EQ(gemm_slab_rows(int64_t{1} << 40, 10), 1);  // a row larger than the budget still goes alone
}

TEST(CudaLayout, AttentionSplitsOnlyWhenQueriesLeaveTheDeviceIdle) {
  // H100: 132 multiprocessors. Decode of one sequence with 32 heads at 8K context: 264 blocks
  // wanted, 32 queries -> 9 parts of 14-15 tiles.
  EXPECT_EQ(attention_splits(32, 8192, 132), 9);
  EXPECT_EQ(attention_splits(32 * 512, 8192, 132), 1);  // a prefill fills the device by itself
  EXPECT_EQ(attention_splits(264, 8192, 132), 1);
  EXPECT_EQ(attention_splits(32, 100, 132), 1);         // under two tiles per part: not worth a merge pass
  EXPECT_EQ(attention_splits(32, 3 * 128, 132), 3);     // limited by length: each part at least two tiles
  EXPECT_EQ(attention_splits(1, 1 << 20, 132), kAttentionMaxSplits);
}

TEST(CudaLayout, AttentionSplitRangesTileTheContextInOrder) {
  for (int64_t n_kv : {int64_t{1}, int64_t{63}, int64_t{64}, int64_t{65}, int64_t{500}, int64_t{8191}, int64_t{8192}}) {
    for (int n_splits : {1, 2, 3, 9, 32}) {
      int64_t next = 0;
      for (int s = 0; s < n_splits; ++s) {
        const PositionRange r = attention_split_range(n_kv, n_splits, s);
        EXPECT_EQ(r.begin, next) << n_kv << " " << n_splits << " " << s;
        EXPECT_LE(r.begin, r.end);
        if (r.end < n_kv) {
          EXPECT_EQ(r.end % kAttentionTile, 0) << "parts end on tile boundaries";
        }
        next = r.end;
      }
      EXPECT_EQ(next, n_kv) << n_kv << " " << n_splits;
    }
  }
}

// The parts' softmax statistics, as the kernel leaves them, merge into one softmax over all
// positions: the output equals the unsplit weighted sum of values.
TEST(CudaLayout, MergedAttentionPartsEqualOneSoftmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int64_t dim = 5;
  for (int64_t n_kv : {int64_t{1}, int64_t{100}, int64_t{777}, int64_t{4096}}) {
    std::vector<float> scores(static_cast<size_t>(n_kv)), values(static_cast<size_t>(n_kv * dim));
    for (float& x : scores) x = dist(rng);
    for (float& x : values) x = dist(rng);
    // Unsplit, in double.
    double m = -INFINITY, den = 0.0;
    for (float x : scores) m = std::max<double>(m, x);
    std::vector<double> want(static_cast<size_t>(dim), 0.0);
    for (int64_t i = 0; i < n_kv; ++i) {
      const double w = std::exp(scores[static_cast<size_t>(i)] - m);
      den += w;
      for (int64_t d = 0; d < dim; ++d) want[static_cast<size_t>(d)] += w * values[static_cast<size_t>(i * dim + d)];
    }
    for (int n_splits : {1, 2, 7, 32}) {
      const int64_t stride = dim + 2;
      std::vector<float> parts(static_cast<size_t>(n_splits * stride));
      for (int s = 0; s < n_splits; ++s) {
        const PositionRange r = attention_split_range(n_kv, n_splits, s);
        float* p = parts.data() + s * stride;
        float pm = -INFINITY, pd = 0.0f;
        for (int64_t i = r.begin; i < r.end; ++i) pm = std::max(pm, scores[static_cast<size_t>(i)]);
        std::fill(p + 2, p + stride, 0.0f);
        for (int64_t i = r.begin; i < r.end; ++i) {
          const float w = std::exp(scores[static_cast<size_t>(i)] - pm);
          pd += w;
          for (int64_t d = 0; d < dim; ++d) p[2 + d] += w * values[static_cast<size_t>(i * dim + d)];
        }
        p[0] = pm;  // -inf and 0 for an empty part
        p[1] = pd;
      }
      for (int64_t d = 0; d < dim; ++d) {
        const double expect = want[static_cast<size_t>(d)] / den;
        EXPECT_NEAR(merge_attention_parts(parts.data(), n_splits, stride, d), expect, 1e-5 * (1.0 + std::fabs(expect)))
            << "n_kv " << n_kv << ", " << n_splits << " parts, value " << d;
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cuda
