// Attention over the device mirror of the paged KV cache: one CUDA block per (token, head, part).
// The block walks its part of the token's positions in tiles of kTile: its warps score the
// tile's keys (one position per warp at a time, lanes splitting the dot product), then every
// thread rescales its share of the output by the online-softmax correction and adds the tile's
// weighted values. With one part the block writes the output; with several (flash-decoding,
// cuda_layout.h) it writes its softmax statistics and a second kernel merges the parts.
// MLA is the same walk with one KV head whose row [latent | k_pe] is the key and whose first
// kv_lora_rank values are the value. Rows are read in the cache's stored types (kv_value,
// cuda_blocks.h): one kernel per pair of K and V types.
#include <cmath>

#include <cuda_fp16.h>

#include "backend/cuda/cuda_blocks.h"
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
template <DType K, DType V>
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
  const int64_t k_first = kv_head * head_dim_k, v_first = kv_head * a.head_dim_v;  // the head's first value in a row
  float max_score = -INFINITY, denom = 0.0f, acc[kValuesPerThread] = {};
  for (int64_t tile = range.begin; tile < range.end; tile += kTile) {
    const int n_here = static_cast<int>(range.end - tile < kTile ? range.end - tile : kTile);
    for (int j = warp; j < kTile; j += kWarps) {
      float s = -INFINITY;
      if (j < n_here) {
        const uint8_t* k = a.k + kv_row_index(table, tile + j, a.block_size) * a.k_row_bytes;
        float dot = 0.0f;
        for (int64_t i = lane; i < head_dim_k; i += kWarpSize) dot += q[i] * kv_value<K>(k, k_first + i);
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
      const uint8_t* v = a.v + kv_row_index(table, tile + j, a.block_size) * a.v_row_bytes;
      #pragma unroll
      for (int k = 0; k < kValuesPerThread; ++k) {
        const int64_t d = tid + static_cast<int64_t>(k) * kThreads;
        if (d < a.head_dim_v) acc[k] += p * kv_value<V>(v, v_first + d);
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

// Row t of src converted to the stored type T into dst row rows[t] and packed row t; one CUDA
// block per row. q8_0: a thread per 32-value block, quantized as the host's reference does.
template <DType T>
__global__ void store_kv_rows_kernel(const float* src, int64_t width, const int64_t* rows, size_t row_bytes, uint8_t* dst,
                                     uint8_t* packed) {
  const float* s = src + static_cast<int64_t>(blockIdx.x) * width;
  uint8_t* d = dst + rows[blockIdx.x] * row_bytes;
  uint8_t* p = packed + blockIdx.x * row_bytes;
  if constexpr (T == DType::F32) {
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
      reinterpret_cast<float*>(d)[i] = reinterpret_cast<float*>(p)[i] = s[i];
  } else if constexpr (T == DType::F16) {
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
      const uint16_t h = __half_as_ushort(__float2half_rn(s[i]));
      reinterpret_cast<uint16_t*>(d)[i] = reinterpret_cast<uint16_t*>(p)[i] = h;
    }
  } else {
    static_assert(T == DType::Q8_0, "attention_reads(T)");
    for (int64_t b = threadIdx.x; b < width / quant::kQK8_0; b += blockDim.x) {
      quant::block_q8_0 block;
      block.d = __half_as_ushort(__float2half_rn(quantize_q8_0_block(s + b * quant::kQK8_0, block.qs)));
      // Blocks are 2-byte aligned (34 bytes): copied as 17 halves.
      const uint16_t* from = reinterpret_cast<const uint16_t*>(&block);
      uint16_t* to_d = reinterpret_cast<uint16_t*>(d + b * sizeof(quant::block_q8_0));
      uint16_t* to_p = reinterpret_cast<uint16_t*>(p + b * sizeof(quant::block_q8_0));
      for (size_t i = 0; i < sizeof(quant::block_q8_0) / 2; ++i) to_d[i] = to_p[i] = from[i];
    }
  }
}

template <DType K, DType V>
void launch_attention_kernel(const AttentionArgs& a, dim3 grid, size_t shared_bytes, cudaStream_t stream) {
  attention_kernel<K, V><<<grid, kThreads, shared_bytes, stream>>>(a);
}

template <DType K>
cudaError_t launch_attention_for_k(const AttentionArgs& a, dim3 grid, size_t shared_bytes, cudaStream_t stream) {
  switch (a.v_type) {
    case DType::F32: launch_attention_kernel<K, DType::F32>(a, grid, shared_bytes, stream); return cudaSuccess;
    case DType::F16: launch_attention_kernel<K, DType::F16>(a, grid, shared_bytes, stream); return cudaSuccess;
    case DType::Q8_0: launch_attention_kernel<K, DType::Q8_0>(a, grid, shared_bytes, stream); return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t launch_store_kv_rows(DType type, const float* src, int64_t width, const int64_t* rows, int64_t n_rows,
                                 size_t row_bytes, uint8_t* dst, uint8_t* packed, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(n_rows);
  switch (type) {
    case DType::F32:
      store_kv_rows_kernel<DType::F32><<<blocks, kThreads, 0, stream>>>(src, width, rows, row_bytes, dst, packed);
      break;
    case DType::F16:
      store_kv_rows_kernel<DType::F16><<<blocks, kThreads, 0, stream>>>(src, width, rows, row_bytes, dst, packed);
      break;
    case DType::Q8_0:
      store_kv_rows_kernel<DType::Q8_0><<<blocks, kThreads, 0, stream>>>(src, width, rows, row_bytes, dst, packed);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_attention(const AttentionArgs& a, cudaStream_t stream) {
  const size_t shared_bytes = static_cast<size_t>(a.width_a + a.width_b + kTile) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(a.n_tokens * a.n_head), static_cast<unsigned>(a.n_splits));
  cudaError_t launched = cudaErrorInvalidValue;
  switch (a.k_type) {
    case DType::F32: launched = launch_attention_for_k<DType::F32>(a, grid, shared_bytes, stream); break;
    case DType::F16: launched = launch_attention_for_k<DType::F16>(a, grid, shared_bytes, stream); break;
    case DType::Q8_0: launched = launch_attention_for_k<DType::Q8_0>(a, grid, shared_bytes, stream); break;
    default: break;
  }
  if (launched != cudaSuccess) return launched;
  if (a.n_splits == 1) return cudaGetLastError();
  if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
  merge_parts_kernel<<<static_cast<unsigned>(a.n_tokens * a.n_head), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace fathom::cuda
