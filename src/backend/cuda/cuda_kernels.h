// Launchers of the CUDA kernels (src/backend/cuda/*.cu), callable from host C++. Every pointer
// is device memory; each launcher enqueues its kernel on `stream` and returns the launch error.
// Shapes follow backend.h; half-precision buffers are raw binary16 bits (uint16_t).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/dtype.h"

namespace fathom::cuda {

// cudaSuccess when the current device can run this build's kernels; otherwise (no machine code
// or PTX for its architecture) the error a launch would give.
cudaError_t check_kernel_image();

// y[t, r] = W[r, :] · x[t, :] for n_tokens up to a few per pass; w: n_out rows of row_bytes in
// the GGUF layout of `type` (cuda_blocks.h); x: [n_tokens, n_in]; y: [n_tokens, n_out].
cudaError_t launch_matvec(DType type, const void* w, size_t row_bytes, int64_t n_in, int64_t n_out, const float* x,
                          int64_t n_tokens, float* y, cudaStream_t stream);
// out[r, :] = W[r, :] as binary16, for n_rows rows from w. out: [n_rows, n_in]. Not for F32 and
// F16 weights (cuBLAS reads those as they are).
cudaError_t launch_dequantize_f16(DType type, const void* w, size_t row_bytes, int64_t n_in, int64_t n_rows, uint16_t* out,
                                  cudaStream_t stream);
// out[i] = x[i] as binary16 (round to nearest even).
cudaError_t launch_f32_to_f16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream);

cudaError_t launch_rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out,
                            cudaStream_t stream);
// Rotates pairs of every head of x [n_tokens, n_heads, head_dim] in place by the per-token
// table cos_sin [n_tokens, n_pairs, 2] (cos, sin: rope_cos_sin's values).
cudaError_t launch_rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_pairs, bool neox,
                        const float* cos_sin, cudaStream_t stream);
cudaError_t launch_swiglu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);
cudaError_t launch_add(float* x, const float* y, int64_t n, cudaStream_t stream);
// x[r, :] += bias[:] for r < n_rows; bias: [n].
cudaError_t launch_add_bias(float* x, const float* bias, int64_t n_rows, int64_t n, cudaStream_t stream);
// Backend::copy_strided (backend.h StridedCopy) on device memory.
cudaError_t launch_copy_strided(const float* src, float* dst, int64_t n_outer, int64_t n_inner, int64_t width, int64_t src_outer,
                                int64_t src_inner, int64_t dst_outer, int64_t dst_inner, cudaStream_t stream);
// Backend::top_candidates on device memory: per row the k largest logits (NaN as -inf) and
// their ids, largest first, equal values by lower id. ids, values: [n_rows, k].
cudaError_t launch_top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values,
                                  cudaStream_t stream);
// KV cache rows in the cache's stored type (`type`: attention_reads, cuda_blocks.h), as the
// host's KvCache::store_k makes them: src[t, :] (`width` floats) converted to row_bytes bytes
// into dst row rows[t] and into packed[t, :] (the copy the host cache gets), for t < n_rows.
cudaError_t launch_store_kv_rows(DType type, const float* src, int64_t width, const int64_t* rows, int64_t n_rows,
                                 size_t row_bytes, uint8_t* dst, uint8_t* packed, cudaStream_t stream);

// Causal attention over the KV cache mirror, one CUDA block per (token, head), online softmax.
// The query of (t, h) is q_a's row followed by q_b's (MLA: [q_abs | q_pe]; otherwise q_b is
// null); its key is head_dim_k values from value (h / group) * head_dim_k of the position's k
// row, its value head_dim_v values from (h / group) * head_dim_v of the v row. Rows are in the
// cache's stored types (k_type, v_type: attention_reads), converted as they are read; sums are f32.
struct AttentionArgs {
  const float* q_a = nullptr;         // [n_tokens, n_head, width_a]
  int64_t width_a = 0;
  const float* q_b = nullptr;         // [n_tokens, n_head, width_b], or null
  int64_t width_b = 0;
  const uint8_t* k = nullptr;         // layer's key rows [n_blocks * block_size, k_row_bytes]
  size_t k_row_bytes = 0;
  DType k_type = DType::F32;
  const uint8_t* v = nullptr;         // layer's value rows [n_blocks * block_size, v_row_bytes]
  size_t v_row_bytes = 0;
  DType v_type = DType::F32;
  const int32_t* tables = nullptr;    // [n_rows, max_blocks] block ids (cuda_layout.h BatchTables)
  int64_t max_blocks = 0;
  const int32_t* token_table = nullptr;  // [n_tokens] table row of each token
  const int32_t* positions = nullptr;    // [n_tokens]: token t attends to positions [0, positions[t]]
  int32_t block_size = 0;
  int64_t n_tokens = 0;
  int64_t n_head = 0;
  int64_t group = 1;                  // query heads per KV head
  int64_t head_dim_v = 0;
  float scale = 1.0f;
  float* out = nullptr;               // [n_tokens, n_head, head_dim_v]
  int n_splits = 1;                   // flash-decoding parts per query (cuda_layout.h attention_splits)
  float* parts = nullptr;             // n_splits > 1: [n_tokens, n_head, n_splits, head_dim_v + 2] partial results
};
// Largest head_dim_v and head_dim_k (= width_a + width_b) the attention kernel takes.
constexpr int64_t kAttentionMaxValueDim = 1024;
constexpr int64_t kAttentionMaxQueryDim = 8192;
cudaError_t launch_attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace fathom::cuda
