// Element-wise and per-row kernels: RMSNorm, RoPE, SwiGLU, add, bias, strided copies and the KV row scatter.
#include <cmath>
#include <cstdint>

#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace fathom::cuda {

namespace {

constexpr int kThreads = 256;

// One block per row: the sum of squares is reduced over the block, then the row is scaled.
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __shared__ float partial[kThreads / kWarpSize];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* o = out + static_cast<int64_t>(blockIdx.x) * n;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) sum += xr[i] * xr[i];
  sum = warp_sum(sum);
  if (threadIdx.x % kWarpSize == 0) partial[threadIdx.x / kWarpSize] = sum;
  __syncthreads();
  sum = 0.0f;
  for (int w = 0; w < kThreads / kWarpSize; ++w) sum += partial[w];
  const float scale = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += kThreads) o[i] = xr[i] * scale * weight[i];
}

// One thread per (token, head, pair); pairs (2i, 2i + 1) or, neox, (i, i + n_pairs).
__global__ void rope_kernel(float* x, int64_t n_items, int64_t n_heads, int64_t head_dim, int64_t n_pairs, bool neox,
                            const float* cos_sin) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_items) return;
  const int64_t pair = i % n_pairs, head = i / n_pairs, token = head / n_heads;
  float* v = x + head * head_dim;
  const int64_t a = neox ? pair : 2 * pair, b = neox ? pair + n_pairs : 2 * pair + 1;
  const float c = cos_sin[(token * n_pairs + pair) * 2], s = cos_sin[(token * n_pairs + pair) * 2 + 1];
  const float x0 = v[a], x1 = v[b];
  v[a] = x0 * c - x1 * s;
  v[b] = x0 * s + x1 * c;
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t n_items, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_items) x[i] += bias[i % n];
}

// One thread per float copied: item = (o * n_inner + i) * width + j.
__global__ void copy_strided_kernel(const float* src, float* dst, int64_t n_items, int64_t n_inner, int64_t width,
                                    int64_t src_outer, int64_t src_inner, int64_t dst_outer, int64_t dst_inner) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= n_items) return;
  const int64_t j = item % width, run = item / width, i = run % n_inner, o = run / n_inner;
  dst[o * dst_outer + i * dst_inner + j] = src[o * src_outer + i * src_inner + j];
}

// (va, ia) ranks before (vb, ib): larger value, or equal value and lower id.
__device__ bool ranks_before(float va, int32_t ia, float vb, int32_t ib) { return va > vb || (va == vb && ia < ib); }

// One block per row, k rounds: each picks the best value ranked after the previous pick (a
// block-wide arg-max), so the picks come out in order with no sort. NaN ranks as -inf.
__global__ void __launch_bounds__(kThreads)
    top_candidates_kernel(const float* logits, int64_t n_vocab, int64_t k, int32_t* ids, float* values) {
  __shared__ float warp_value[kThreads / kWarpSize];
  __shared__ int32_t warp_id[kThreads / kWarpSize];
  __shared__ float prev_value;
  __shared__ int32_t prev_id;
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * n_vocab;
  if (threadIdx.x == 0) {
    prev_value = INFINITY;
    prev_id = -1;
  }
  __syncthreads();
  for (int64_t j = 0; j < k; ++j) {
    const float pv = prev_value;
    const int32_t pi = prev_id;
    float best = -INFINITY;
    int32_t best_id = INT32_MAX;  // ranks after everything
    for (int64_t i = threadIdx.x; i < n_vocab; i += kThreads) {
      const float v = isnan(row[i]) ? -INFINITY : row[i];
      const int32_t id = static_cast<int32_t>(i);
      if (ranks_before(pv, pi, v, id) && ranks_before(v, id, best, best_id)) {
        best = v;
        best_id = id;
      }
    }
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      const float v = __shfl_down_sync(0xffffffffu, best, offset);
      const int32_t id = __shfl_down_sync(0xffffffffu, best_id, offset);
      if (ranks_before(v, id, best, best_id)) {
        best = v;
        best_id = id;
      }
    }
    if (threadIdx.x % kWarpSize == 0) {
      warp_value[threadIdx.x / kWarpSize] = best;
      warp_id[threadIdx.x / kWarpSize] = best_id;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kThreads / kWarpSize; ++w)
        if (ranks_before(warp_value[w], warp_id[w], best, best_id)) {
          best = warp_value[w];
          best_id = warp_id[w];
        }
      ids[static_cast<int64_t>(blockIdx.x) * k + j] = best_id;
      values[static_cast<int64_t>(blockIdx.x) * k + j] = best;
      prev_value = best;
      prev_id = best_id;
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t check_kernel_image() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, add_kernel);
}

cudaError_t launch_rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps, float* out,
                            cudaStream_t stream) {
  rms_norm_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, stream>>>(x, weight, n, eps, out);
  return cudaGetLastError();
}

cudaError_t launch_rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_pairs, bool neox,
                        const float* cos_sin, cudaStream_t stream) {
  const int64_t n_items = n_tokens * n_heads * n_pairs;
  rope_kernel<<<blocks_for(n_items, kThreads), kThreads, 0, stream>>>(x, n_items, n_heads, head_dim, n_pairs, neox, cos_sin);
  return cudaGetLastError();
}

cudaError_t launch_swiglu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  swiglu_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  return cudaGetLastError();
}

cudaError_t launch_add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  add_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t launch_add_bias(float* x, const float* bias, int64_t n_rows, int64_t n, cudaStream_t stream) {
  const int64_t n_items = n_rows * n;
  add_bias_kernel<<<blocks_for(n_items, kThreads), kThreads, 0, stream>>>(x, bias, n_items, n);
  return cudaGetLastError();
}

cudaError_t launch_copy_strided(const float* src, float* dst, int64_t n_outer, int64_t n_inner, int64_t width, int64_t src_outer,
                                int64_t src_inner, int64_t dst_outer, int64_t dst_inner, cudaStream_t stream) {
  const int64_t n_items = n_outer * n_inner * width;
  copy_strided_kernel<<<blocks_for(n_items, kThreads), kThreads, 0, stream>>>(src, dst, n_items, n_inner, width, src_outer,
                                                                              src_inner, dst_outer, dst_inner);
  return cudaGetLastError();
}

cudaError_t launch_top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values,
                                  cudaStream_t stream) {
  top_candidates_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, stream>>>(logits, n_vocab, k, ids, values);
  return cudaGetLastError();
}

}  // namespace fathom::cuda
