// Matmul kernels: the matvec kernels read the GGUF blocks directly (decode and small batches),
// the f16 conversions feed cuBLAS (larger batches; see CudaBackend::Impl::matmul).
#include <cuda_fp16.h>

#include "backend/cuda/cuda_blocks.h"
#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace fathom::cuda {

namespace {

constexpr int kConvertThreads = 256;

// One warp per output row (matvec_work), lanes striding over the row's 8-value groups; each
// decoded group is used for every token of the pass, so W is read once per kTokens tokens.
template <DType T, int kTokens>
__global__ void __launch_bounds__(kWarpSize * kMatvecWarps)
    matvec_kernel(const uint8_t* w, size_t row_bytes, int64_t n_in, int64_t n_out, const float* x, int64_t n_tokens, float* y) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const MatvecWork work = matvec_work(blockIdx.x, blockIdx.y, static_cast<int>(threadIdx.x) / kWarpSize, kTokens, n_tokens);
  if (work.row >= n_out) return;  // the whole warp leaves together
  const uint8_t* row = w + work.row * row_bytes;
  const float* xs = x + work.token_begin * n_in;
  float acc[kTokens] = {};
  for (int64_t g = lane; g < n_in / kGroupValues; g += kWarpSize) {
    float wv[kGroupValues];
    decode_group<T>(row, g, wv);
    for (int t = 0; t < kTokens; ++t) {
      if (t >= work.n_tokens) break;
      const float4* xv = reinterpret_cast<const float4*>(xs + t * n_in + g * kGroupValues);
      const float4 a = xv[0], b = xv[1];
      acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
    }
  }
  for (int t = 0; t < kTokens; ++t) {
    if (t >= work.n_tokens) break;
    const float sum = warp_sum(acc[t]);
    if (lane == 0) y[(work.token_begin + t) * n_out + work.row] = sum;
  }
}

// One thread per 8-value group of the n_rows rows.
template <DType T>
__global__ void dequantize_f16_kernel(const uint8_t* w, size_t row_bytes, int64_t groups_per_row, int64_t n_groups, __half* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_groups) return;
  float v[kGroupValues];
  decode_group<T>(w + (i / groups_per_row) * row_bytes, i % groups_per_row, v);
  for (int k = 0; k < kGroupValues; ++k) out[i * kGroupValues + k] = __float2half_rn(v[k]);
}

__global__ void f32_to_f16_kernel(const float* x, int64_t n, __half* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2half_rn(x[i]);
}

template <DType T>
cudaError_t matvec(const void* w, size_t row_bytes, int64_t n_in, int64_t n_out, const float* x, int64_t n_tokens, float* y,
                   cudaStream_t stream) {
  const MatvecGrid grid = matvec_grid(n_out, n_tokens);
  const dim3 blocks(static_cast<unsigned>(grid.blocks_x), static_cast<unsigned>(grid.blocks_y));
  const auto* wb = static_cast<const uint8_t*>(w);
  if (grid.tokens_per_pass == 1)
    matvec_kernel<T, 1><<<blocks, kWarpSize * kMatvecWarps, 0, stream>>>(wb, row_bytes, n_in, n_out, x, n_tokens, y);
  else
    matvec_kernel<T, kMatvecTokens><<<blocks, kWarpSize * kMatvecWarps, 0, stream>>>(wb, row_bytes, n_in, n_out, x, n_tokens, y);
  return cudaGetLastError();
}

template <DType T>
cudaError_t dequantize_f16(const void* w, size_t row_bytes, int64_t n_in, int64_t n_rows, uint16_t* out, cudaStream_t stream) {
  const int64_t groups_per_row = n_in / kGroupValues, n_groups = groups_per_row * n_rows;
  dequantize_f16_kernel<T><<<blocks_for(n_groups, kConvertThreads), kConvertThreads, 0, stream>>>(
      static_cast<const uint8_t*>(w), row_bytes, groups_per_row, n_groups, reinterpret_cast<__half*>(out));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_matvec(DType type, const void* w, size_t row_bytes, int64_t n_in, int64_t n_out, const float* x,
                          int64_t n_tokens, float* y, cudaStream_t stream) {
  switch (type) {
    case DType::F32: return matvec<DType::F32>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::F16: return matvec<DType::F16>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::BF16: return matvec<DType::BF16>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::Q4_0: return matvec<DType::Q4_0>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::Q8_0: return matvec<DType::Q8_0>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::Q4_K: return matvec<DType::Q4_K>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::Q5_K: return matvec<DType::Q5_K>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::Q6_K: return matvec<DType::Q6_K>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::IQ4_NL: return matvec<DType::IQ4_NL>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    case DType::IQ4_XS: return matvec<DType::IQ4_XS>(w, row_bytes, n_in, n_out, x, n_tokens, y, stream);
    default: return cudaErrorNotSupported;
  }
}

cudaError_t launch_dequantize_f16(DType type, const void* w, size_t row_bytes, int64_t n_in, int64_t n_rows, uint16_t* out,
                                  cudaStream_t stream) {
  switch (type) {
    case DType::BF16: return dequantize_f16<DType::BF16>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::Q4_0: return dequantize_f16<DType::Q4_0>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::Q8_0: return dequantize_f16<DType::Q8_0>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::Q4_K: return dequantize_f16<DType::Q4_K>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::Q5_K: return dequantize_f16<DType::Q5_K>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::Q6_K: return dequantize_f16<DType::Q6_K>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::IQ4_NL: return dequantize_f16<DType::IQ4_NL>(w, row_bytes, n_in, n_rows, out, stream);
    case DType::IQ4_XS: return dequantize_f16<DType::IQ4_XS>(w, row_bytes, n_in, n_rows, out, stream);
    default: return cudaErrorNotSupported;
  }
}

cudaError_t launch_f32_to_f16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream) {
  f32_to_f16_kernel<<<blocks_for(n, kConvertThreads), kConvertThreads, 0, stream>>>(x, n, reinterpret_cast<__half*>(out));
  return cudaGetLastError();
}

}  // namespace fathom::cuda
