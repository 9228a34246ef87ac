// Index math of the CUDA backend that the host can check without a GPU
// (tests/kernels/cuda_blocks_test.cpp): how the matmul kernels split rows and tokens, where a KV
// cache position lives in the device mirror, the batch's block tables as the attention kernel
// reads them, the flash-decoding split of long contexts and the merge of its parts, the scratch
// allocator's size classes and the slabs of the cuBLAS path.
#pragma once

#include <math.h>  // expf on host and device
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/host_device.h"

namespace fathom {
class KvCache;
struct AttentionBatch;
}  // namespace fathom

namespace fathom::cuda {

constexpr int kWarpSize = 32;
constexpr int kMatvecWarps = 4;     // output rows per CUDA block of the matvec kernels, one per warp
constexpr int kMatvecTokens = 8;    // tokens per pass of the matvec kernel when n_tokens > 1
constexpr int64_t kGemmMinTokens = 16;  // from here on: weight dequantized to f16, then cuBLAS
constexpr size_t kGemmSlabBytes = size_t{128} << 20;  // f16 weight rows dequantized per cuBLAS call

// The matvec kernels' grid: x over groups of kMatvecWarps rows, y over passes of
// tokens_per_pass tokens (1 for a single token, so the kernel keeps one accumulator).
struct MatvecGrid {
  int64_t blocks_x = 0;
  int64_t blocks_y = 0;
  int tokens_per_pass = 1;
};

FATHOM_HOST_DEVICE inline MatvecGrid matvec_grid(int64_t n_out, int64_t n_tokens) {
  MatvecGrid g;
  g.tokens_per_pass = n_tokens == 1 ? 1 : kMatvecTokens;
  g.blocks_x = (n_out + kMatvecWarps - 1) / kMatvecWarps;
  g.blocks_y = (n_tokens + g.tokens_per_pass - 1) / g.tokens_per_pass;
  return g;
}

// What one warp of the grid computes: output row `row` (none when row >= n_out) for tokens
// [token_begin, token_begin + n_tokens).
struct MatvecWork {
  int64_t row = 0;
  int64_t token_begin = 0;
  int n_tokens = 0;
};

FATHOM_HOST_DEVICE inline MatvecWork matvec_work(int64_t block_x, int64_t block_y, int warp, int tokens_per_pass, int64_t n_tokens) {
  MatvecWork w;
  w.row = block_x * kMatvecWarps + warp;
  w.token_begin = block_y * tokens_per_pass;
  const int64_t left = n_tokens - w.token_begin;
  w.n_tokens = static_cast<int>(left < tokens_per_pass ? left : tokens_per_pass);
  return w;
}

// Row of position `pos` in a layer of the KV cache, [n_blocks * block_size] rows, as
// KvCache::k_at addresses it: the device mirror keeps the host's layout. table: the sequence's
// block ids in position order.
FATHOM_HOST_DEVICE inline int64_t kv_row_index(const int32_t* table, int64_t pos, int32_t block_size) {
  return static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
}

// The batch's block tables as the attention kernel reads them: one row of max_blocks entries per
// distinct sequence of the batch (first-appearance order), token t using row token_table[t].
// Entries past what a row's sequence needs are 0 and never read (positions are causal).
struct BatchTables {
  std::vector<int32_t> tables;       // [n_rows, max_blocks] block ids
  std::vector<int32_t> token_table;  // [n_tokens] row of each token
  int64_t max_blocks = 1;            // blocks covering the batch's largest position
};
BatchTables pack_block_tables(const KvCache& kv, const AttentionBatch& batch);

// Mirror row of each token of the batch (kv_row_index of its sequence and position).
std::vector<int64_t> kv_rows_of_batch(const KvCache& kv, const AttentionBatch& batch);

// Flash-decoding. Decode has few queries (tokens x heads), one CUDA block each, which leaves most
// of a large GPU idle while each block walks a long context alone. So each query's positions are
// split into parts, a block per (query, part) computes the part's softmax statistics, and a
// second kernel merges them. A part's partial result is laid out as [max score, sum of
// exp(score - max), sum of exp(score - max) * value[0..head_dim_v)].
constexpr int kAttentionTile = 64;         // positions scored per step of the attention kernel
constexpr int kAttentionMaxSplits = 32;
constexpr int kAttentionMinTilesPerSplit = 2;

// Parts per query: enough blocks for two per multiprocessor, each part at least
// kAttentionMinTilesPerSplit tiles of the longest context; 1 when the queries fill the device
// already or the context is short.
inline int attention_splits(int64_t n_queries, int64_t max_kv, int multiprocessors) {
  const int64_t want_blocks = 2 * static_cast<int64_t>(multiprocessors);
  if (n_queries <= 0 || n_queries >= want_blocks) return 1;
  int64_t splits = (want_blocks + n_queries - 1) / n_queries;
  const int64_t by_length = max_kv / (static_cast<int64_t>(kAttentionTile) * kAttentionMinTilesPerSplit);
  if (splits > by_length) splits = by_length;
  if (splits > kAttentionMaxSplits) splits = kAttentionMaxSplits;
  return splits < 1 ? 1 : static_cast<int>(splits);
}

// Positions [begin, end) of part `split` of n_kv positions cut into n_splits parts of whole
// tiles, in order; trailing parts may be empty (begin == end) for short contexts.
struct PositionRange {
  int64_t begin = 0;
  int64_t end = 0;
};

FATHOM_HOST_DEVICE inline PositionRange attention_split_range(int64_t n_kv, int n_splits, int split) {
  const int64_t tiles = (n_kv + kAttentionTile - 1) / kAttentionTile;
  const int64_t per_split = (tiles + n_splits - 1) / n_splits;
  PositionRange r;
  r.begin = split * per_split * kAttentionTile;
  r.end = r.begin + per_split * kAttentionTile;
  if (r.begin > n_kv) r.begin = n_kv;
  if (r.end > n_kv) r.end = n_kv;
  return r;
}

// Value d of the merged output of n_splits partial results (stride floats apart: head_dim_v + 2):
// sum_s w_s * acc_s[d] / sum_s w_s * denom_s with w_s = exp(max_s - max over s). An empty part
// (max -inf, denom 0) weighs 0.
FATHOM_HOST_DEVICE inline float merge_attention_parts(const float* parts, int n_splits, int64_t stride, int64_t d) {
  float m = parts[0];
  for (int s = 1; s < n_splits; ++s) m = parts[s * stride] > m ? parts[s * stride] : m;
  float num = 0.0f, den = 0.0f;
  for (int s = 0; s < n_splits; ++s) {
    const float* p = parts + s * stride;
    if (p[1] == 0.0f) continue;  // empty part
    const float w = expf(p[0] - m);
    num += w * p[2 + d];
    den += w * p[1];
  }
  return num / den;
}

// Scratch allocations are rounded to size classes so freed buffers fit later requests: at
// least 64 KiB, then four classes per power of two (waste under 25%).
inline size_t scratch_size_class(size_t bytes) {
  constexpr size_t kMin = size_t{64} << 10;
  if (bytes <= kMin) return kMin;
  size_t power = kMin;
  while (power < bytes) power *= 2;
  const size_t step = power / 8;  // bytes > power / 2: the classes are 5/8, 6/8, 7/8 and 8/8 of power
  return (bytes + step - 1) / step * step;
}

// Weight rows dequantized per cuBLAS call: as many as fit in kGemmSlabBytes of f16, at least one.
inline int64_t gemm_slab_rows(int64_t n_in, int64_t n_out) {
  const int64_t rows = static_cast<int64_t>(kGemmSlabBytes / (static_cast<size_t>(n_in) * 2));
  return rows < 1 ? 1 : (rows > n_out ? n_out : rows);
}

}  // namespace fathom::cuda
