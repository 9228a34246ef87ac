// Attention over the device mirror of the paged KV cache: one CUDA block per (token, head, part).
// The block walks its part of the token's positions in tiles of kTile: its warps score the
// tile's keys (one position per warp at a time, lanes splitting the dot product), then every
// thread rescales its share of the output by the online-softmax correction and adds the tile's
// weighted values. With one part the block writes the output; with several (flash-decoding,
// cuda_layout.h) it writes its softmax statistics and a second kernel merges the parts.
// MLA is the same walk with one KV head whose row [latent | k_pe] is the key and whose first
// kv_lora_rank floats are the value.
#include <cmath>

#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace fathom::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kTile = kAttentionTile;  // positions scored per step
constexpr int kValuesPerThread = static_cast<int>(kAttentionMaxValueDim / kThreads);
static_assert((kAttentionMaxQueryDim + kTile) * sizeof(float) <= 48 * 1024, "past 48 KiB of shared memory a kernel must opt in");

// Dynamic shared memory: the query [width_a + width_b], then the tile's scores [kTile].
__global__ void attention_kernel(AttentionArgs a) {
  extern __shared__ float shared[];
  const int64_t head_dim_k = a.width_a + a.width_b;
  float* q = shared;
  float* scores = shared + head_dim_k;
  const int64_t t = blockIdx.x / a.n_head, h = blockIdx.x % a.n_head, kv_head = h / a.group;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % kWarpSize, warp = tid / kWarpSize;
  const float* q_a = a.q_a + (t * a.n_head + h) * a.width_a;
  for (int64_t i = tid; i < a.width_a; i += kThreads) q[i] = q_a[i];
  if (a.q_b) {
    const float* q_b = a.q_b + (t * a.n_head + h) * a.width_b;
    for (int64_t i = tid; i < a.width_b; i += kThreads) q[a.width_a + i] = q_b[i];
  }
  __syncthreads();

  const int32_t* table = a.tables + static_cast<int64_t>(a.token_table[t]) * a.max_blocks;
  const int64_t n_kv = static_cast<int64_t>(a.positions[t]) + 1;
  const PositionRange range = attention_split_range(n_kv, a.n_splits, static_cast<int>(blockIdx.y));
  const float* k_head = a.k + kv_head * head_dim_k;
  const float* v_head = a.v + kv_head * a.head_dim_v;
  float max_score = -INFINITY, denom = 0.0f, acc[kValuesPerThread] = {};
  for (int64_t tile = range.begin; tile < range.end; tile += kTile) {
    const int n_here = static_cast<int>(range.end - tile < kTile ? range.end - tile : kTile);
    for (int j = warp; j < kTile; j += kWarps) {
      float s = -INFINITY;
      if (j < n_here) {
        const float* k = k_head + kv_row_index(table, tile + j, a.block_size) * a.k_stride;
        float dot = 0.0f;
        for (int64_t i = lane; i < head_dim_k; i += kWarpSize) dot += q[i] * k[i];
        s = warp_sum(dot) * a.scale;
      }
      if (lane == 0) scores[j] = s;
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int j = 0; j < n_here; ++j) tile_max = fmaxf(tile_max, scores[j]);
    const float new_max = fmaxf(max_score, tile_max);
    const float correction = expf(max_score - new_max);  // 0 on the first tile
    __syncthreads();  // every thread has its maximum before the scores become weights
    if (tid < kTile) scores[tid] = tid < n_here ? expf(scores[tid] - new_max) : 0.0f;
    __syncthreads();
    denom *= correction;
    #pragma unroll
    for (int k = 0; k < kValuesPerThread; ++k) acc[k] *= correction;
    for (int j = 0; j < n_here; ++j) {
      const float p = scores[j];
      denom += p;
      const float* v = v_head + kv_row_index(table, tile + j, a.block_size) * a.v_stride;
      #pragma unroll
      for (int k = 0; k < kValuesPerThread; ++k) {
        const int64_t d = tid + static_cast<int64_t>(k) * kThreads;
        if (d < a.head_dim_v) acc[k] += p * v[d];
      }
    }
    max_score = new_max;
    __syncthreads();  // the weights are read before the next tile's scores replace them
  }
  if (a.n_splits == 1) {
    float* o = a.out + (t * a.n_head + h) * a.head_dim_v;
    #pragma unroll
    for (int k = 0; k < kValuesPerThread; ++k) {
      const int64_t d = tid + static_cast<int64_t>(k) * kThreads;
      if (d < a.head_dim_v) o[d] = acc[k] / denom;
    }
    return;
  }
  const int64_t stride = a.head_dim_v + 2;
  float* part = a.parts + ((t * a.n_head + h) * a.n_splits + blockIdx.y) * stride;
  if (tid == 0) {
    part[0] = max_score;  // -inf and 0 for an empty part, which the merge skips
    part[1] = denom;
  }
  #pragma unroll
  for (int k = 0; k < kValuesPerThread; ++k) {
    const int64_t d = tid + static_cast<int64_t>(k) * kThreads;
    if (d < a.head_dim_v) part[2 + d] = acc[k];
  }
}

// One block per query: out = the merge of its n_splits parts.
__global__ void merge_parts_kernel(AttentionArgs a) {
  const int64_t query = blockIdx.x, stride = a.head_dim_v + 2;
  const float* parts = a.parts + query * a.n_splits * stride;
  float* o = a.out + query * a.head_dim_v;
  for (int64_t d = threadIdx.x; d < a.head_dim_v; d += kThreads) o[d] = merge_attention_parts(parts, a.n_splits, stride, d);
}

}  // namespace

cudaError_t launch_attention(const AttentionArgs& a, cudaStream_t stream) {
  const size_t shared_bytes = static_cast<size_t>(a.width_a + a.width_b + kTile) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(a.n_tokens * a.n_head), static_cast<unsigned>(a.n_splits));
  attention_kernel<<<grid, kThreads, shared_bytes, stream>>>(a);
  if (a.n_splits == 1) return cudaGetLastError();
  if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
  merge_parts_kernel<<<static_cast<unsigned>(a.n_tokens * a.n_head), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace fathom::cuda
