// Device helpers shared by the CUDA kernel files (nvcc only).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_layout.h"

namespace fathom::cuda {

// Sum over the 32 lanes of a warp; every lane gets the result.
__device__ inline float warp_sum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Blocks of `threads` covering n items.
inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace fathom::cuda
